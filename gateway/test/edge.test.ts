/** The edge's own behaviour: envelope everywhere, upstream failures, limits, CORS, request ids. */
import t from 'tap'
import Fastify from 'fastify'
import { createClock } from '@sinonjs/fake-timers'
import { waitUntil } from '@tollgate/common/testing'
import { buildGateway, startUpstream, subOf, token } from './helper.js'

const isEnvelope = (body: unknown, status: number) => {
  const b = body as Record<string, unknown>
  return typeof b.detail === 'string' && typeof b.error_code === 'string' && b.status_code === status
}

t.test('unknown routes and methods are 404 in the envelope, never proxied', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url, AUTH_SERVICE_URL: up.url })
  for (const [method, url] of [
    ['GET', '/'],
    ['GET', '/api'],
    ['GET', '/api/auth/signup'],
    ['DELETE', '/api/auth/signin'],
    ['GET', '/api/auth/internal'],
    ['TRACE', '/api/auth/me'],
    ['GET', '/internal/revocations'],
    ['GET', '/api/u1/tasks/x/y/z'],
  ] as const) {
    const res = await gw.inject({ method, url })
    t.equal(res.statusCode, 404, `${method} ${url}`)
    t.ok(isEnvelope(res.json(), 404))
  }
  t.equal(up.seen.length, 0)
})

t.test('a dead upstream is a fast 502 in the envelope, without its address', async (t) => {
  const gw = await buildGateway(t, { TASK_SERVICE_URL: 'http://127.0.0.1:1' })
  const jwt = await token()
  const started = Date.now()
  const res = await gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } })
  t.ok(Date.now() - started < 1000, 'fast')
  t.equal(res.statusCode, 502)
  t.same(res.json(), { detail: 'Upstream service error', error_code: 'BAD_GATEWAY', status_code: 502 })
  t.notMatch(res.body, /127\.0\.0\.1|ECONNREFUSED/)
  // Readiness reports the dead upstream but stays green: every replica sees the same outage, and taking them all
  // out of the load balancer would also stop the routes that still work (sign-in, here).
  const ready = await gw.admin.inject({ url: '/ready' })
  t.equal(ready.statusCode, 200, 'still ready while one upstream is down')
  t.same(ready.json().checks, { 'auth-service': 'ok', 'task-service': 'unavailable', revocations: 'ok', 'rate-limit-counters': 'memory' })
  t.equal((await gw.inject({ method: 'POST', url: '/api/auth/signin', payload: { email: 'a@example.com', password: 'correct-horse-battery' } })).statusCode, 200, 'the working upstream keeps serving')
})

t.test('a slow upstream is a 504 at the configured timeout, not before', async (t) => {
  const up = await startUpstream(t)
  up.behave.hold = true
  // The deadline on a clock the test moves. Its length is far beyond any wait of this test, so undici's own
  // backstop (a second past it, on the real clock) cannot answer first on a busy machine.
  const clock = createClock()
  const timeoutMs = 60_000
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url, UPSTREAM_TIMEOUT_MS: timeoutMs }, { timers: { setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, now: () => clock.now } })
  const jwt = await token()
  let answered = false
  const pending = gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } }).finally(() => (answered = true))
  await waitUntil(async () => up.holding > 0, { what: 'the upstream holds the request' })
  clock.tick(timeoutMs - 1)
  // Anything the last millisecond before the deadline set off would be answered within these turns of the event loop.
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
  t.notOk(answered, 'no answer a millisecond before the deadline')
  clock.tick(1)
  const res = await pending
  t.equal(res.statusCode, 504)
  t.same(res.json(), { detail: 'Upstream service timed out', error_code: 'GATEWAY_TIMEOUT', status_code: 504 })
  // Not by waiting for the upstream: it still holds the request.
  t.ok(up.holding > 0, 'while the upstream still held the request')
})

t.test('a POST is never retried; a 503 from the service is passed through once', async (t) => {
  const up = await startUpstream(t)
  up.behave.status = 503
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url })
  const jwt = await token()
  const res = await gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } })
  t.equal(res.statusCode, 503)
  t.equal(up.seen.length, 1, 'GET answered 503 upstream is not retried')
})

t.test('bodies over the limit are 413 before reaching the service', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url })
  const jwt = await token()
  const res = await gw.inject({
    method: 'POST',
    url: `/api/${subOf(jwt)}/tasks`,
    headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' },
    payload: JSON.stringify({ title: 'x'.repeat(1024 * 1024) }),
  })
  t.equal(res.statusCode, 413)
  t.same(res.json(), { detail: 'Request body is too large', error_code: 'PAYLOAD_TOO_LARGE', status_code: 413 })
  t.equal(up.seen.length, 0)
})

t.test('request ids: a sane client id is kept, anything else replaced, and forwarded', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: up.url })
  const signin = { email: 'a@example.com', password: 'secret' }
  const kept = await gw.inject({ method: 'POST', url: '/api/auth/signin', headers: { 'x-request-id': 'abc-123' }, payload: signin })
  t.equal(kept.headers['x-request-id'], 'abc-123')
  t.equal(up.seen[0]!.headers['x-request-id'], 'abc-123')
  const replaced = await gw.inject({ method: 'POST', url: '/api/auth/signin', headers: { 'x-request-id': 'bad id\u00e9<script>' }, payload: signin })
  t.match(replaced.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  const none = await gw.inject({ url: '/nowhere' })
  t.match(none.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'errors carry one too')
})

// SECURITY.md S-48: only a genuine preflight (OPTIONS + Origin + Access-Control-Request-Method) skips the
// token check; any other OPTIONS is refused on a protected path and never proxied.
t.test('S-48: only a genuine preflight skips the token check', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url, AUTH_SERVICE_URL: up.url, CORS_ORIGINS: 'https://app.example.com' })
  const jwt = await token()
  const sub = subOf(jwt)
  const origin = 'https://app.example.com'
  const cases: [string, string, Record<string, string>, number][] = [
    ['genuine preflight', `/api/${sub}/tasks`, { origin, 'access-control-request-method': 'POST' }, 204],
    ['genuine preflight, foreign origin', `/api/${sub}/tasks`, { origin: 'https://evil.example', 'access-control-request-method': 'GET' }, 204],
    ['bare OPTIONS', `/api/${sub}/tasks`, {}, 401],
    ['OPTIONS with Origin, no request method', `/api/${sub}/tasks`, { origin }, 401],
    ['OPTIONS with a request method, no Origin', `/api/${sub}/tasks`, { 'access-control-request-method': 'GET' }, 401],
    ['OPTIONS with an empty Origin', `/api/${sub}/tasks`, { origin: '', 'access-control-request-method': 'GET' }, 401],
    ['OPTIONS with an empty request method', `/api/${sub}/tasks`, { origin, 'access-control-request-method': '' }, 401],
    ['bare OPTIONS, one task', `/api/${sub}/tasks/1`, {}, 401],
    ['bare OPTIONS, another user', '/api/someone-else/tasks', { authorization: `Bearer ${jwt}` }, 403],
    ['bare OPTIONS with a token', `/api/${sub}/tasks`, { authorization: `Bearer ${jwt}` }, 404],
    ['bare OPTIONS, me', '/api/auth/me', {}, 401],
    ['bare OPTIONS, anonymous sign-in', '/api/auth/signin', {}, 404],
    ['bare OPTIONS, unknown path', '/nope', {}, 404],
    ['genuine preflight, unknown path', '/nope', { origin, 'access-control-request-method': 'GET' }, 204],
  ]
  for (const [name, url, headers, status] of cases) {
    const res = await gw.inject({ method: 'OPTIONS', url, headers })
    t.equal(res.statusCode, status, `${name}: ${status}`)
    if (status === 204) {
      t.equal(res.body, '', `${name}: no body`)
      t.ok(res.headers['access-control-allow-methods'], `${name}: answered as a preflight`)
    } else {
      t.ok(isEnvelope(res.json(), status), `${name}: in the envelope`)
      t.notOk(res.headers['access-control-allow-methods'], `${name}: not answered as a preflight`)
    }
    if (status === 401) t.match(String(res.headers['www-authenticate']), /^Bearer/, `${name}: the Bearer challenge`)
  }
  t.equal(up.seen.length, 0, 'no OPTIONS reached a service')
})

t.test('CORS: listed origins only; preflight answered at the edge', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url, CORS_ORIGINS: 'http://localhost:3000, https://app.example.com' })
  const jwt = await token()
  const url = `/api/${subOf(jwt)}/tasks`
  const pre = await gw.inject({
    method: 'OPTIONS',
    url,
    headers: { origin: 'http://localhost:3000', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
  })
  t.equal(pre.statusCode, 204)
  t.equal(pre.headers['access-control-allow-origin'], 'http://localhost:3000')
  t.match(String(pre.headers['access-control-allow-headers']), /Authorization/i)
  const foreign = await gw.inject({
    method: 'OPTIONS',
    url,
    headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' },
  })
  t.notOk(foreign.headers['access-control-allow-origin'], 'no ACAO for a foreign origin')
  // An OPTIONS that is no preflight (no Origin): a request like any other, refused without a token (S-48).
  const bare = await gw.inject({ method: 'OPTIONS', url })
  t.equal(bare.statusCode, 401, 'a bare OPTIONS is no preflight: the route checks its token')
  t.ok(isEnvelope(bare.json(), 401))
  t.notOk(bare.headers['access-control-allow-origin'])
  const get = await gw.inject({ url, headers: { origin: 'https://app.example.com', authorization: `Bearer ${jwt}` } })
  t.equal(get.headers['access-control-allow-origin'], 'https://app.example.com')
  t.match(String(get.headers['access-control-expose-headers']), /WWW-Authenticate/)
  t.equal(up.seen.length, 1, 'only the real request was proxied')
})

t.test('health, readiness and metrics', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url, AUTH_SERVICE_URL: up.url })
  t.same((await gw.inject({ url: '/health' })).json(), { status: 'ok' })
  const ready = await gw.admin.inject({ url: '/ready' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json().checks, { 'auth-service': 'ok', 'task-service': 'ok', revocations: 'ok', 'rate-limit-counters': 'memory' })
  await gw.inject({ url: '/nowhere' })
  const metrics = await gw.admin.inject({ url: '/metrics' })
  t.match(metrics.body, /http_requests_total\{.*status="404"/)
})

t.test('authenticated responses are not cacheable', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url })
  const jwt = await token()
  const res = await gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } })
  t.equal(res.headers['cache-control'], 'no-store')
})

t.test("CORS is the gateway's: an upstream's Access-Control-* fields never reach the client (S-48)", async (t) => {
  // A service that answers every origin, with credentials: behind the gateway, its fields must not widen the allowlist.
  const up = Fastify()
  up.all('/*', async (_request, reply) => {
    reply.header('access-control-allow-origin', 'https://evil.example')
    reply.header('access-control-allow-credentials', 'true')
    reply.header('access-control-allow-methods', 'DELETE')
    reply.header('access-control-allow-headers', 'x-anything')
    reply.header('access-control-expose-headers', 'x-upstream-secret')
    reply.header('access-control-max-age', '86400')
    return { ok: true }
  })
  const upUrl = await up.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => up.close())
  const jwt = await token()
  const url = `/api/${subOf(jwt)}/tasks`
  const upstreamFields = ['access-control-allow-credentials', 'access-control-allow-methods', 'access-control-allow-headers', 'access-control-max-age']
  for (const CORS_ORIGINS of ['https://app.example.com', '']) {
    const gw = await buildGateway(t, { TASK_SERVICE_URL: upUrl, CORS_ORIGINS })
    for (const origin of ['https://evil.example', 'https://app.example.com', undefined]) {
      const res = await gw.inject({ url, headers: { authorization: `Bearer ${jwt}`, ...(origin ? { origin } : {}) } })
      const what = `CORS_ORIGINS '${CORS_ORIGINS}', Origin ${origin ?? 'none'}`
      t.equal(res.statusCode, 200, what)
      const listed = CORS_ORIGINS !== '' && origin === 'https://app.example.com'
      t.equal(res.headers['access-control-allow-origin'], listed ? origin : undefined, `${what}: only the gateway's allowlist speaks`)
      for (const name of upstreamFields) t.notOk(res.headers[name], `${what}: the upstream's ${name} dropped`)
      t.notMatch(String(res.headers['access-control-expose-headers'] ?? ''), /x-upstream-secret/, `${what}: the gateway's exposed list only`)
    }
  }
})
