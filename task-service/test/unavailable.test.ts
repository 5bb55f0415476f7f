import { createServer, type Socket } from 'node:net'
import t from 'tap'
import { asUser, build, newUserId } from './helper.js'

const UNAVAILABLE = { detail: 'Database unavailable', error_code: 'SERVICE_UNAVAILABLE', status_code: 503 }

t.test('database refusing connections: every route is a quick 503, /ready is 503', async (t) => {
  const app = await build(t, { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x', DB_CONNECT_TIMEOUT_MS: 300 }, false)
  const u = asUser(app, newUserId())
  const id = '6f0c1f0e-4d3a-4c1b-9a57-2b1f1c0e9d11'
  const started = Date.now()
  const responses = [
    await u.list(),
    await u.create({ title: 'x' }),
    await u.get(id),
    await u.update(id, { title: 'x' }),
    await u.toggle(id),
    await u.remove(id),
  ]
  t.ok(Date.now() - started < 5000, 'answers without waiting out any long timeout')
  for (const res of responses) {
    t.equal(res.statusCode, 503, `${res.raw.req.method} answered 503`)
    t.equal(res.body, JSON.stringify(UNAVAILABLE), 'envelope, nothing internal')
    t.notMatch(res.body, /127\.0\.0\.1|ECONNREFUSED|postgres|select|at .*:\d+/i)
    t.equal(res.headers['retry-after'], '2')
    t.equal(res.headers['cache-control'], 'no-store')
  }

  const ready = await app.inject({ method: 'GET', url: '/ready' })
  t.equal(ready.statusCode, 503)
  t.equal(ready.json().error_code, 'SERVICE_UNAVAILABLE')
  t.same(ready.json().checks, { database: 'unavailable' })
  t.notMatch(ready.body, /127\.0\.0\.1|ECONNREFUSED/)

  const health = await app.inject({ method: 'GET', url: '/health' })
  t.equal(health.statusCode, 200, 'alive even when the database is not')
})

t.test('database accepting but never answering: 503 after the connect timeout, not a hang', async (t) => {
  const sockets = new Set<Socket>()
  const blackhole = createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
  })
  await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    blackhole.close()
  })
  const port = (blackhole.address() as { port: number }).port
  const app = await build(t, { DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/x`, DB_CONNECT_TIMEOUT_MS: 300 }, false)
  const started = Date.now()
  const res = await asUser(app, newUserId()).list()
  const elapsed = Date.now() - started
  t.equal(res.statusCode, 503)
  t.equal(res.body, JSON.stringify(UNAVAILABLE))
  t.ok(elapsed >= 250 && elapsed < 3000, `gave up after the connect timeout (${elapsed} ms)`)
})

t.test('a healthy database: /ready is 200, every response is no-store', async (t) => {
  const app = await build(t)
  const ready = await app.inject({ method: 'GET', url: '/ready' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'ready', checks: { database: 'ok' } })
  t.equal(ready.headers['cache-control'], 'no-store')
  const missing = await app.inject({ method: 'GET', url: '/nope' })
  t.equal(missing.statusCode, 404)
  t.equal(missing.json().error_code, 'NOT_FOUND')
  t.equal(missing.headers['cache-control'], 'no-store')
})
