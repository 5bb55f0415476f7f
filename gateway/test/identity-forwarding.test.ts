/** Identity reaches services only from the gateway: spoofed headers are stripped, the verified one is signed. */
import t from 'tap'
import { proofKey, verifyIdentity } from '@tollgate/common'
import { buildGateway, SECRET, startUpstream, subOf, token } from './helper.js'

t.test('client identity headers never reach the service', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url, AUTH_SERVICE_URL: up.url })
  const jwt = await token()
  const sub = subOf(jwt)
  const spoofs: Array<Record<string, string>> = [
    { 'x-user-id': 'victim' },
    { 'X-User-Id': 'victim' },
    { x_user_id: 'victim' },
    { 'x-user-email': 'victim@example.com' },
    { 'x-tollgate-caller': 'service:auth-service' },
    { 'x-tollgate-signature': 'v1=forged' },
    { 'x-internal-secret': 'guess' },
    { connection: 'close, x-user-id', 'x-user-id': 'victim' },
    { connection: 'x-tollgate-signature' },
  ]
  for (const spoof of spoofs) {
    up.seen.length = 0
    const res = await gw.inject({ method: 'GET', url: `/api/${sub}/tasks`, headers: { authorization: `Bearer ${jwt}`, ...spoof } })
    t.equal(res.statusCode, 200, `${JSON.stringify(spoof)}: 200`)
    const seen = up.seen[0]!
    t.equal(seen.headers['x-user-id'], sub, `${JSON.stringify(spoof)}: the verified id, not the spoofed one`)
    t.notOk(seen.headers['x_user_id'] ?? seen.headers['x-user-email'] ?? seen.headers['x-internal-secret'], 'no other reserved header')
    const id = verifyIdentity(proofKey(SECRET), seen.headers, seen.method, seen.url, seen.headers['x-request-id'] as string, 30_000)
    t.same(id, { caller: 'user', userId: sub }, 'the proof verifies at the service')
  }
})

t.test('anonymous routes carry an anonymous proof; spoofed identity is stripped there too', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: up.url })
  const res = await gw.inject({
    method: 'POST',
    url: '/api/auth/signin',
    headers: { 'content-type': 'application/json', 'x-user-id': 'victim', 'x-tollgate-caller': 'user' },
    payload: { email: 'a@example.com', password: 'whatever1' },
  })
  t.equal(res.statusCode, 200)
  const seen = up.seen[0]!
  t.equal(seen.headers['x-tollgate-caller'], 'anonymous')
  t.equal(seen.headers['x-user-id'], '')
  t.same(JSON.parse(seen.body as string), { email: 'a@example.com', password: 'whatever1' }, 'body forwarded intact')
})

t.test('Authorization is forwarded only where the service needs it', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: up.url, TASK_SERVICE_URL: up.url })
  const jwt = await token()
  const headers = { authorization: `Bearer ${jwt}` }
  await gw.inject({ method: 'GET', url: `/api/${subOf(jwt)}/tasks`, headers })
  await gw.inject({ method: 'GET', url: '/api/auth/me', headers })
  await gw.inject({ method: 'POST', url: '/api/auth/signout', headers })
  t.equal(up.seen.length, 3)
  t.notOk(up.seen[0]!.headers.authorization, 'tasks: token not forwarded')
  t.notOk(up.seen[1]!.headers.authorization, 'me: token not forwarded')
  t.equal(up.seen[2]!.headers.authorization, `Bearer ${jwt}`, 'signout: token forwarded to be revoked')
})

t.test('ownership is checked at the edge', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url })
  const jwt = await token()
  for (const [method, url] of [
    ['GET', '/api/someone-else/tasks'],
    ['POST', '/api/someone-else/tasks'],
    ['GET', '/api/someone-else/tasks/0b5f1e7e-1d3c-4c57-9d1a-6f5a5b0a4d11'],
    ['PATCH', '/api/someone-else/tasks/0b5f1e7e-1d3c-4c57-9d1a-6f5a5b0a4d11/complete'],
    ['DELETE', '/api/someone-else/tasks/0b5f1e7e-1d3c-4c57-9d1a-6f5a5b0a4d11'],
  ] as const) {
    const res = await gw.inject({ method, url, headers: { authorization: `Bearer ${jwt}` } })
    t.equal(res.statusCode, 403, `${method} ${url}`)
    t.equal(res.body, '{"detail":"Access forbidden","error_code":"FORBIDDEN","status_code":403}')
  }
  t.equal(up.seen.length, 0)
})
