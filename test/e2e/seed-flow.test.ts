/**
 * The seed quickstart's step 4 (docs/quickstart.md), exactly as written, against the real
 * processes: launcher, auth-service, task-service and gateway on free ports,
 * on the test database.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { call, startCluster } from './cluster.js'

const databaseUrl = process.env.TEST_DATABASE_URL
if (!databaseUrl) throw new Error('TEST_DATABASE_URL is required (npm test sets it)')

t.test('seed flow through the gateway', async (t) => {
  const cluster = await startCluster(t, { DATABASE_URL: databaseUrl })
  const { url } = cluster
  const email = `test-${randomUUID()}@Example.com`

  const signup = await call(url, 'POST', '/api/auth/signup', { email, password: 'SecurePass123!', name: 'Test User' })
  t.equal(signup.status, 201, 'signup 201')
  t.match(signup.json, { email: email.toLowerCase(), name: 'Test User' })
  t.match(signup.json.id, /^[0-9a-f-]{36}$/)
  t.ok(!Number.isNaN(Date.parse(signup.json.created_at)), 'created_at is a date')
  t.same(Object.keys(signup.json).sort(), ['created_at', 'email', 'id', 'name'])

  const signin = await call(url, 'POST', '/api/auth/signin', { email, password: 'SecurePass123!' })
  t.equal(signin.status, 200, 'signin 200')
  t.same(signin.json.user, { id: signup.json.id, email: email.toLowerCase(), name: 'Test User' })
  t.match(signin.json.token, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/)
  const days = (Date.parse(signin.json.expires_at) - Date.now()) / 86_400_000
  t.ok(days > 6.9 && days <= 7, `expires_at is 7 days ahead (${days.toFixed(3)})`)
  const token = signin.json.token as string

  const me = await call(url, 'GET', '/api/auth/me', undefined, token)
  t.equal(me.status, 200, 'me 200')
  t.match(me.json, { id: signup.json.id, email: email.toLowerCase(), name: 'Test User' })
  t.ok(me.json.updated_at, 'updated_at present')
  t.notOk('password_hash' in me.json)

  const other = await call(url, 'GET', `/api/${randomUUID()}/tasks`, undefined, token)
  t.equal(other.status, 403, 'another user: 403')
  t.equal(other.text, '{"detail":"Access forbidden","error_code":"FORBIDDEN","status_code":403}', 'exact body')

  // The task routes of docs/API.md, for their owner.
  const uid = signup.json.id as string
  const created = await call(url, 'POST', `/api/${uid}/tasks`, { title: 'Buy milk', description: 'semi-skimmed' }, token)
  t.equal(created.status, 201)
  t.match(created.json, { user_id: uid, title: 'Buy milk', description: 'semi-skimmed', completed: false })
  const id = created.json.id as string
  const list = await call(url, 'GET', `/api/${uid}/tasks?status=pending&sort=title&order=asc&limit=10`, undefined, token)
  t.equal(list.status, 200)
  t.same(list.json.map((x: { id: string }) => x.id), [id])
  const one = await call(url, 'GET', `/api/${uid}/tasks/${id}`, undefined, token)
  t.equal(one.status, 200)
  const put = await call(url, 'PUT', `/api/${uid}/tasks/${id}`, { title: 'Buy oat milk', description: null }, token)
  t.equal(put.status, 200)
  t.match(put.json, { title: 'Buy oat milk', description: null })
  const toggled = await call(url, 'PATCH', `/api/${uid}/tasks/${id}/complete`, undefined, token)
  t.equal(toggled.status, 200)
  t.equal(toggled.json.completed, true)
  const completed = await call(url, 'GET', `/api/${uid}/tasks?status=completed`, undefined, token)
  t.equal(completed.json.length, 1)
  const del = await call(url, 'DELETE', `/api/${uid}/tasks/${id}`, undefined, token)
  t.equal(del.status, 204)
  t.equal(del.text, '')
  const gone = await call(url, 'GET', `/api/${uid}/tasks/${id}`, undefined, token)
  t.equal(gone.status, 404)
  t.equal(gone.json.error_code, 'NOT_FOUND')

  const bad = await call(url, 'GET', `/api/${uid}/tasks/not-a-uuid`, undefined, token)
  t.equal(bad.status, 404, 'malformed id: 404')
  const noToken = await call(url, 'GET', `/api/${uid}/tasks`)
  t.equal(noToken.status, 401)
  t.equal(noToken.headers.get('www-authenticate'), 'Bearer realm="api"')
  t.ok(noToken.headers.get('x-request-id'), 'request id on every response')

  const signout = await call(url, 'POST', '/api/auth/signout', undefined, token)
  t.equal(signout.status, 204, 'signout 204')

  t.equal(await cluster.stop(), 0, 'SIGTERM stops the cluster cleanly (exit 0)')
})

t.test('services refuse requests that bypass the gateway', async (t) => {
  const cluster = await startCluster(t, { DATABASE_URL: databaseUrl, LOG_LEVEL: 'info' })
  // The launcher logs where each service listens.
  const ports = [...cluster.output().matchAll(/(auth|task)-service ready at (http:\/\/127\.0\.0\.1:\d+)/g)].map((m) => m[2]!)
  t.equal(ports.length, 2)
  for (const base of ports) {
    for (const path of ['/api/auth/me', `/api/${randomUUID()}/tasks`]) {
      const res = await fetch(base + path, { headers: { 'x-user-id': randomUUID(), 'x-tollgate-caller': 'user' } })
      if (res.status === 404) continue // the other service's route
      t.equal(res.status, 401, `${base}${path}: 401 without the gateway's proof`)
    }
  }
})
