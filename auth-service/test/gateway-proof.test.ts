import t from 'tap'
import { asUser, build, inject, PASSWORD, signup, uniqueEmail } from './helper.js'

const routes = [
  { method: 'POST', url: '/api/auth/signup' },
  { method: 'POST', url: '/api/auth/signin' },
  { method: 'GET', url: '/api/auth/me' },
  { method: 'POST', url: '/api/auth/signout' },
] as const

t.test('without a gateway proof every auth route is 401', async (t) => {
  const app = await build(t)
  for (const { method, url } of routes) {
    const res = await inject(app, {
      method,
      url,
      identity: null,
      ...(method === 'POST' ? { payload: { email: uniqueEmail(), password: PASSWORD } } : {}),
    })
    t.equal(res.statusCode, 401, `${method} ${url}`)
    t.same(res.json(), { detail: 'Requests must come through the gateway', error_code: 'UNAUTHORIZED', status_code: 401 })
    t.match(res.headers['www-authenticate'], /^Bearer realm=/)
    t.equal(res.headers['cache-control'], 'no-store', 'no-store on errors too')
  }
})

t.test('client-sent identity headers without a valid signature are refused', async (t) => {
  const app = await build(t)
  const { id } = await signup(app)
  const res = await app.inject({
    method: 'GET',
    url: '/api/auth/me',
    headers: { 'x-user-id': id, 'x-tollgate-caller': 'user', 'x-tollgate-timestamp': String(Date.now()), 'x-tollgate-signature': 'v1=AAAA' },
  })
  t.equal(res.statusCode, 401)
})

t.test('a proof for another path, method, user or time is refused', async (t) => {
  const app = await build(t)
  const { id } = await signup(app)
  const me = { method: 'GET', url: '/api/auth/me', identity: asUser(id) } as const

  t.equal((await inject(app, me)).statusCode, 200, 'positive control')
  t.equal((await inject(app, { ...me, sign: { url: '/api/auth/signout' } })).statusCode, 401, 'other path')
  t.equal((await inject(app, { ...me, sign: { method: 'POST' } })).statusCode, 401, 'other method')
  t.equal((await inject(app, { ...me, sign: { now: Date.now() - 60_000 } })).statusCode, 401, 'expired timestamp')
  t.equal((await inject(app, { ...me, sign: { now: Date.now() + 60_000 } })).statusCode, 401, 'future timestamp')

  // A valid proof for user A with the user header swapped to B.
  const other = await signup(app)
  const swapped = await inject(app, { ...me, headers: { 'x-user-id': other.id } })
  t.equal(swapped.statusCode, 401, 'user id swapped after signing')

  // A different request id than the one signed.
  const replay = await inject(app, { ...me, headers: { 'x-request-id': 'another-request-id' } })
  t.equal(replay.statusCode, 401, 'request id swapped')
})

t.test('service callers are not accepted on user routes', async (t) => {
  const app = await build(t)
  const { id } = await signup(app)
  const res = await inject(app, { method: 'GET', url: '/api/auth/me', identity: { caller: 'service:task-service', userId: id } })
  t.equal(res.statusCode, 401)
  const signupAsService = await inject(app, {
    method: 'POST',
    url: '/api/auth/signup',
    identity: { caller: 'service:task-service', userId: '' },
    payload: { email: uniqueEmail(), password: PASSWORD },
  })
  t.equal(signupAsService.statusCode, 401)
})

t.test('health and readiness need no proof', async (t) => {
  const app = await build(t)
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  const ready = await app.inject({ method: 'GET', url: '/ready' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'ready', checks: { database: 'ok' } })
})

t.test('an unknown auth route is a 404 envelope', async (t) => {
  const app = await build(t)
  const res = await inject(app, { method: 'GET', url: '/api/auth/nope' })
  t.equal(res.statusCode, 404)
  t.equal(res.json().error_code, 'NOT_FOUND')
})
