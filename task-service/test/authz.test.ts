import t from 'tap'
import { proofKey, signIdentity } from '@tollgate/common'
import { asUser, build, inject, KEY, newUserId, type Method } from './helper.js'

const FORBIDDEN = { detail: 'Access forbidden', error_code: 'FORBIDDEN', status_code: 403 }
const NOT_FOUND = { detail: 'Task not found', error_code: 'NOT_FOUND', status_code: 404 }

t.test('requests without a valid gateway proof are 401', async (t) => {
  const app = await build(t)
  const userId = newUserId()
  const url = `/api/${userId}/tasks`
  const unsigned = await app.inject({ method: 'GET', url })
  t.equal(unsigned.statusCode, 401)
  t.same(unsigned.json(), { detail: 'Requests must come through the gateway', error_code: 'UNAUTHORIZED', status_code: 401 })
  t.match(unsigned.headers['www-authenticate'], /^Bearer realm=/)
  t.equal(unsigned.headers['cache-control'], 'no-store')

  const bare = await app.inject({ method: 'GET', url, headers: { 'x-user-id': userId } })
  t.equal(bare.statusCode, 401, 'a bare x-user-id header is not an identity')

  const cases: Array<[string, Parameters<typeof inject>[1]]> = [
    ['wrong key', { method: 'GET', url, userId, key: proofKey('another-secret-of-at-least-32-characters!!') }],
    ['stale timestamp', { method: 'GET', url, userId, now: Date.now() - 120_000 }],
    ['future timestamp', { method: 'GET', url, userId, now: Date.now() + 120_000 }],
    ['service caller', { method: 'GET', url, userId, caller: 'service:auth-service' }],
    ['anonymous caller', { method: 'GET', url, caller: 'anonymous' }],
  ]
  for (const [name, opts] of cases) {
    const res = await inject(app, opts)
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().error_code, 'UNAUTHORIZED', name)
  }

  // A proof binds caller, user, method, path and request id: replaying it elsewhere fails.
  const requestId = 'req-1'
  const proof = signIdentity(KEY, { caller: 'user', userId }, 'GET', url, requestId)
  const replays: Array<[string, { method: Method; url: string; headers: Record<string, string> }]> = [
    ['other method', { method: 'POST', url, headers: { ...proof, 'x-request-id': requestId } }],
    ['other path', { method: 'GET', url: `${url}/${newUserId()}`, headers: { ...proof, 'x-request-id': requestId } }],
    ['no request id', { method: 'GET', url, headers: { ...proof } }],
    ['other request id', { method: 'GET', url, headers: { ...proof, 'x-request-id': 'req-2' } }],
    ['other user id', { method: 'GET', url, headers: { ...proof, 'x-user-id': newUserId(), 'x-request-id': requestId } }],
  ]
  const control = await app.inject({ method: 'GET', url, headers: { ...proof, 'x-request-id': requestId } })
  t.equal(control.statusCode, 200, 'positive control: the untouched proof is accepted')
  for (const [name, req] of replays) {
    const res = await app.inject(req)
    t.equal(res.statusCode, 401, name)
  }

  for (const [method, path] of [
    ['POST', ''],
    ['GET', '/00000000-0000-0000-0000-000000000000'],
    ['PUT', '/00000000-0000-0000-0000-000000000000'],
    ['PATCH', '/00000000-0000-0000-0000-000000000000/complete'],
    ['DELETE', '/00000000-0000-0000-0000-000000000000'],
  ] as const) {
    const res = await app.inject({ method, url: `${url}${path}`, payload: method === 'POST' || method === 'PUT' ? { title: 'x' } : undefined })
    t.equal(res.statusCode, 401, `${method} ${path || '/'} without proof`)
  }
})

t.test('path user id other than the caller is 403, before any validation', async (t) => {
  const app = await build(t)
  const me = newUserId()
  const victim = newUserId()
  const task = (await asUser(app, victim).create({ title: 'victim task' })).json()
  const base = `/api/${victim}/tasks`
  const attempts: Array<[Method, string, unknown?]> = [
    ['GET', base],
    ['GET', `${base}?limit=0&status=bogus`],
    ['POST', base, { title: 'injected' }],
    ['POST', base, '{"malformed'],
    ['POST', base, { title: '' }],
    ['GET', `${base}/${task.id}`],
    ['GET', `${base}/not-a-uuid`],
    ['PUT', `${base}/${task.id}`, { title: 'hijacked' }],
    ['PATCH', `${base}/${task.id}/complete`],
    ['DELETE', `${base}/${task.id}`],
  ]
  for (const [method, url, payload] of attempts) {
    const res = await inject(app, {
      method,
      url,
      userId: me,
      payload,
      ...(typeof payload === 'string' ? { headers: { 'content-type': 'application/json' } } : {}),
    })
    t.equal(res.statusCode, 403, `${method} ${url}`)
    t.equal(res.body, JSON.stringify(FORBIDDEN), 'exact body')
    t.equal(res.headers['cache-control'], 'no-store')
  }
  // Ids compare exactly: no case folding, no trimming.
  const upper = newUserId()
  const res = await inject(app, { method: 'GET', url: `/api/${upper.toUpperCase()}/tasks`, userId: upper })
  t.equal(res.statusCode, 403, 'an upper-cased id is another id')

  const victimView = asUser(app, victim)
  t.same((await victimView.get(task.id)).json(), task, 'the victim task is untouched')
  t.same((await victimView.list()).json().map((x: { id: string }) => x.id), [task.id], 'nothing was created for the victim')
})

t.test('another user\'s task is 404 for GET/PUT/PATCH/DELETE, identical to a random id, row unchanged', async (t) => {
  const app = await build(t)
  const alice = asUser(app, newUserId())
  const bob = asUser(app, newUserId())
  const task = (await alice.create({ title: 'alice only', description: 'private' })).json()
  const random = '3b241101-e2bb-4255-8caf-4136c566a962'

  for (const id of [task.id, random]) {
    const responses = [await bob.get(id), await bob.update(id, { title: 'pwned', completed: true }), await bob.toggle(id), await bob.remove(id)]
    for (const res of responses) {
      t.equal(res.statusCode, 404, `${res.raw.req.method} ${id === random ? 'random' : 'foreign'} id`)
      t.equal(res.body, JSON.stringify(NOT_FOUND), 'same body for a foreign and a random id')
    }
  }
  t.same((await alice.get(task.id)).json(), task, 'alice\'s row is unchanged')
  t.notOk((await bob.list()).json().some((x: { id: string }) => x.id === task.id), 'bob\'s list never shows it')
})

t.test('mass assignment: id, user_id, completed, timestamps in a body are ignored', async (t) => {
  const app = await build(t)
  const alice = newUserId()
  const mallory = newUserId()
  const u = asUser(app, alice)
  const existing = (await asUser(app, mallory).create({ title: 'mallory' })).json()
  const forgedId = '11111111-1111-4111-8111-111111111111'
  const forged = {
    id: forgedId,
    user_id: mallory,
    completed: true,
    created_at: '2000-01-01T00:00:00.000Z',
    updated_at: '2000-01-01T00:00:00.000Z',
  }
  const created = await u.create({ title: 'mine', ...forged })
  t.equal(created.statusCode, 201)
  const task = created.json()
  t.not(task.id, forgedId)
  t.equal(task.user_id, alice)
  t.equal(task.completed, false, 'completed cannot be set at creation')
  t.not(task.created_at, forged.created_at)
  t.not(task.updated_at, forged.updated_at)

  const put = await u.update(task.id, { title: 'still mine', ...forged, id: existing.id, completed: false })
  t.equal(put.statusCode, 200)
  t.equal(put.json().id, task.id)
  t.equal(put.json().user_id, alice)
  t.equal(put.json().created_at, task.created_at)
  t.not(put.json().updated_at, forged.updated_at)
  t.same((await asUser(app, mallory).get(existing.id)).json(), existing, 'the other user\'s task is untouched')
  t.equal((await asUser(app, mallory).list()).json().length, 1)
})

t.test('a path user id longer than 128 characters is refused, never stored', async (t) => {
  const app = await build(t)
  const long = 'x'.repeat(129)
  const res = await inject(app, { method: 'POST', url: `/api/${long}/tasks`, userId: long, payload: { title: 'x' } })
  t.equal(res.statusCode, 400)
  t.match(res.json().detail, /params\/user_id/)
})
