/**
 * With REDIS_URL, every replica shares the counters; when Redis goes away the
 * gateway keeps answering fast with in-memory limits, and goes back to Redis
 * by itself.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { waitUntil } from '@tollgate/common/testing'
import { buildGateway, startUpstream, subOf, token } from './helper.js'
import { startGatewayProcess } from './gateway-process.js'
import { startRedis, testRedisUrl } from './redis-server.js'

type Gateway = Awaited<ReturnType<typeof buildGateway>>
const backendOf = async (gw: Gateway) => (await gw.admin.inject({ url: '/ready' })).json().checks['rate-limit-counters']
/** The deadline is a liveness bound (a loaded 2-core machine), not what the test proves. */
const untilBackend = (gw: Gateway, want: string) => waitUntil(async () => (await backendOf(gw)) === want, { timeoutMs: 30_000, what: `counting on ${want}` })

t.test('two gateway processes on one Redis share one limit', async (t) => {
  const redisUrl = await testRedisUrl(t)
  const upstream = await startUpstream(t)
  const env = {
    AUTH_SERVICE_URL: upstream.url,
    TASK_SERVICE_URL: upstream.url,
    REDIS_URL: redisUrl,
    RATE_LIMIT_USER_MAX: '20',
    // Exact counting (the user limit is batched by default: see rate-limit-batched.test.ts for that bound).
    RATE_LIMIT_BATCHED: 'none',
  }
  const [a, b] = await Promise.all([startGatewayProcess(t, env), startGatewayProcess(t, env)])
  const jwt = await token()
  const path = `/api/${subOf(jwt)}/tasks`
  const statuses = await Promise.all(
    Array.from({ length: 30 }, (_, i) => fetch(`${i % 2 ? a : b}${path}`, { headers: { authorization: `Bearer ${jwt}` } }).then((r) => r.status)),
  )
  t.equal(statuses.filter((s) => s === 200).length, 20, 'admitted across both replicas = the limit, not twice it')
  t.equal(statuses.filter((s) => s === 429).length, 10)
})

t.test('two gateway processes on one Redis: 25 concurrent wrong passwords on one email, at most the limit checked', async (t) => {
  const redisUrl = await testRedisUrl(t)
  const upstream = await startUpstream(t)
  // The per-address failure budget is keyed by 127.0.0.1 alone, which a shared Redis (TEST_REDIS_URL)
  // keeps across runs: out of the way here, so the fresh email's budget is what is measured.
  const env = { AUTH_SERVICE_URL: upstream.url, TASK_SERVICE_URL: upstream.url, REDIS_URL: redisUrl, RATE_LIMIT_SIGNIN_IP_FAILURES_MAX: '1000000' }
  const [a, b] = await Promise.all([startGatewayProcess(t, env), startGatewayProcess(t, env)])
  // Once both are ready (their readiness probes the upstream): every attempt fails, slowly enough to overlap.
  upstream.behave.status = 401
  upstream.behave.delayMs = 150
  const email = `burst-${randomUUID()}@example.com`
  const statuses = await Promise.all(
    Array.from({ length: 25 }, (_, i) =>
      fetch(`${i % 2 ? a : b}/api/auth/signin`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email, password: `guess-${i}` }),
      }).then((r) => r.status),
    ),
  )
  t.equal(upstream.seen.filter((s) => s.url === '/api/auth/signin').length, 10, 'exactly the limit reached the auth-service, across both replicas')
  t.equal(statuses.filter((s) => s === 401).length, 10)
  t.equal(statuses.filter((s) => s === 429).length, 15)
})

t.test('exact counting, Redis going away mid-traffic: fast answers, in-memory limits, back to Redis by itself', async (t) => {
  const redis = await startRedis(t)
  const upstream = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: upstream.url, TASK_SERVICE_URL: upstream.url, REDIS_URL: redis.url, RATE_LIMIT_USER_MAX: 5, RATE_LIMIT_BATCHED: 'none' })
  const waitFor = (backend: string) => untilBackend(gw, backend)
  await waitFor('redis')

  const jwt = await token()
  const req = { url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } }
  t.equal((await gw.inject(req)).statusCode, 200, 'counted in Redis')

  await redis.stop()
  const statuses: number[] = []
  let slowest = 0
  for (let i = 0; i < 8; i++) {
    const started = Date.now()
    statuses.push((await gw.inject(req)).statusCode)
    slowest = Math.max(slowest, Date.now() - started)
  }
  t.ok(slowest < 500, `every answer stayed fast while Redis was down (slowest ${slowest} ms)`)
  t.notOk(statuses.some((s) => s >= 500), 'never a 5xx')
  t.same(statuses.slice(0, 5), [200, 200, 200, 200, 200], 'counting restarted in memory')
  t.same(statuses.slice(5), [429, 429, 429], 'and still limits: never unlimited')
  const ready = await gw.admin.inject({ url: '/ready' })
  t.equal(ready.statusCode, 200, 'still ready: limits hold per replica')
  t.equal(ready.json().checks['rate-limit-counters'], 'memory-fallback')
  t.match((await gw.admin.inject({ url: '/metrics' })).body, /gateway_rate_limit_backend\{backend="memory-fallback"[^}]*\} 1/)

  await redis.start()
  await waitFor('redis')
  const other = await token()
  const back = await gw.inject({ url: `/api/${subOf(other)}/tasks`, headers: { authorization: `Bearer ${other}` } })
  t.equal(back.statusCode, 200, 'counting in Redis again')
})

t.test('exact counting, Redis that stalls (commands time out, the connection stays): back to Redis by itself', async (t) => {
  const redis = await startRedis(t)
  t.teardown(() => redis.resume())
  const upstream = await startUpstream(t)
  // Exact counting: a request's own Redis command times out (batched policies notice at their next sync).
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: upstream.url, TASK_SERVICE_URL: upstream.url, REDIS_URL: redis.url, RATE_LIMIT_BATCHED: 'none' })
  const backend = () => backendOf(gw)
  const waitFor = (want: string) => untilBackend(gw, want)
  await waitFor('redis')
  const jwt = await token()
  const req = { url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } }

  redis.pause()
  t.equal((await gw.inject(req)).statusCode, 200, 'answered from memory when a Redis command times out')
  t.equal(await backend(), 'memory-fallback')
  redis.resume()
  await waitFor('redis')
  t.pass('counting in Redis again without a reconnect')
  t.equal((await gw.inject(req)).statusCode, 200)
})
