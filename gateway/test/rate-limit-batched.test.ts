/**
 * Batched policies (ip and user by default): each replica counts locally,
 * answers without waiting for Redis and adds its increments to Redis in one
 * pipelined call per RATE_LIMIT_SYNC_MS. Across R replicas a policy of L per
 * window admits at most L + R x B, B being what one replica admits between
 * two of its syncs.
 */
import t from 'tap'
import { Redis } from 'ioredis'
import { waitUntil } from '@tollgate/common/testing'
import { buildGateway, startUpstream, subOf, token } from './helper.js'
import { startGatewayProcess } from './gateway-process.js'
import { startRedis } from './redis-server.js'

const BATCHED_KEY = (policyKey: string) => `tollgate:rlb:{${policyKey}}`

/** The deadline is a liveness bound (a loaded 2-core machine), not what a test proves. */
const until = (what: string, check: () => Promise<boolean>, timeoutMs = 30_000) => waitUntil(check, { what, timeoutMs, intervalMs: 20 })

async function commandCount(redis: Redis): Promise<number> {
  const info = await redis.info('commandstats')
  let total = 0
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) total += Number(m[2])
  return total
}

t.test('three gateway processes on one Redis: a batched limit of L admits between L and L + 3 x B', async (t) => {
  const redis = await startRedis(t)
  const upstream = await startUpstream(t)
  const L = 30
  const env = { AUTH_SERVICE_URL: upstream.url, TASK_SERVICE_URL: upstream.url, REDIS_URL: redis.url, RATE_LIMIT_USER_MAX: String(L), RATE_LIMIT_SYNC_MS: '50' }
  const replicas = await Promise.all([startGatewayProcess(t, env), startGatewayProcess(t, env), startGatewayProcess(t, env)])
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  const jwt = await token()
  const key = BATCHED_KEY(`user:${subOf(jwt)}`)

  // Rounds of B requests at each replica at once; between rounds, every replica's increments are in Redis
  // (so each replica synced, and read the fleet total back, between rounds: B per replica per sync interval).
  const B = 5
  let sent = 0
  let admitted = 0
  const headers: Array<string | null> = []
  for (let round = 0; round < 12; round++) {
    const statuses = await Promise.all(
      replicas.flatMap((url) =>
        Array.from({ length: B }, () =>
          fetch(`${url}/api/${subOf(jwt)}/tasks`, { headers: { authorization: `Bearer ${jwt}` } }).then(async (r) => {
            await r.arrayBuffer()
            headers.push(r.headers.get('ratelimit-policy'))
            if (r.status === 429) t.equal(Number(r.headers.get('retry-after')) >= 1, true, 'a 429 says when to come back')
            return r.status
          }),
        ),
      ),
    )
    sent += statuses.length
    admitted += statuses.filter((s) => s === 200).length
    t.ok(
      statuses.every((s) => s === 200 || s === 429),
      'every answer is the upstream or a 429',
    )
    await until('every replica synced', async () => Number(await client.get(key)) === sent)
    // The sync's reply reaches each replica a moment after Redis applied it.
    await new Promise((r) => setTimeout(r, 100))
  }
  t.ok(admitted >= L, `the whole limit is usable across the fleet (admitted ${admitted} of ${sent})`)
  t.ok(admitted <= L + 3 * B, `at most L + R x B = ${L + 3 * B} admitted (admitted ${admitted}; without sharing it would be ${3 * L})`)
  t.ok(
    headers.every((h) => h !== null && h.includes(`"user";q=${L};w=60`)),
    'every answer carries the RateLimit policy fields',
  )
  const ttl = await client.pttl(key)
  t.ok(ttl > 0 && ttl <= 60_000, `the window lives in Redis with its expiry (${ttl} ms)`)
})

t.test('batched counting makes no Redis call per request: one pipelined sync per interval at most', async (t) => {
  const redis = await startRedis(t)
  const upstream = await startUpstream(t)
  const syncMs = 200
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: upstream.url, TASK_SERVICE_URL: upstream.url, REDIS_URL: redis.url, RATE_LIMIT_SYNC_MS: syncMs })
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  await until('counting in Redis', async () => (await gw.admin.inject({ url: '/ready' })).json().checks['rate-limit-counters'] === 'redis')
  const jwt = await token()
  const req = { url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } }

  const before = await commandCount(client)
  const started = Date.now()
  const n = 300
  let ok = 0
  for (let i = 0; i < n; i++) if ((await gw.inject(req)).statusCode === 200) ok++
  const elapsed = Date.now() - started
  t.equal(ok, n, 'all admitted')
  await until('the last sync', async () => Number(await client.get(BATCHED_KEY(`user:${subOf(jwt)}`))) === n)
  const used = (await commandCount(client)) - before - 1 // this INFO itself
  // Each sync: per key (ip, user) EVALSHA + INCRBY + PTTL (+ PEXPIRE when new), plus a SCRIPT LOAD once, plus our GETs.
  const intervals = Math.ceil(elapsed / syncMs) + 2
  t.ok(used <= intervals * 2 * 4 + 4 + 200, `Redis commands ${used} for ${n} requests in ${elapsed} ms: bounded by the intervals, not the requests`)
  const evalsha = Number((await client.info('commandstats')).match(/cmdstat_evalsha:calls=(\d+)/)?.[1] ?? 0)
  t.ok(evalsha <= intervals * 2, `${evalsha} sync scripts for ${n} requests (at most 2 keys x ${intervals} intervals)`)
})

t.test('batched counting, Redis killed mid-traffic: memory fallback at once, the local count kept, back by itself', async (t) => {
  const redis = await startRedis(t)
  const upstream = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: upstream.url, TASK_SERVICE_URL: upstream.url, REDIS_URL: redis.url, RATE_LIMIT_USER_MAX: 5 })
  const backend = async () => (await gw.admin.inject({ url: '/ready' })).json().checks['rate-limit-counters']
  await until('counting in Redis', async () => (await backend()) === 'redis')
  const jwt = await token()
  const req = { url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } }
  t.equal((await gw.inject(req)).statusCode, 200)
  t.equal((await gw.inject(req)).statusCode, 200)

  await redis.stop()
  await until('the fallback', async () => (await backend()) === 'memory-fallback', 2000)
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) statuses.push((await gw.inject(req)).statusCode)
  t.same(statuses, [200, 200, 200, 429, 429], 'the replica enforces the whole limit locally, its count so far included')
  const ready = await gw.admin.inject({ url: '/ready' })
  t.equal(ready.statusCode, 200, 'still ready')
  t.match((await gw.admin.inject({ url: '/metrics' })).body, /gateway_rate_limit_backend\{backend="memory-fallback"[^}]*\} 1/)

  await redis.start()
  await until('back in Redis', async () => (await backend()) === 'redis')
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  // The increments counted while Redis was away reach the fleet total once it is back.
  await until('the held increments synced', async () => Number(await client.get(BATCHED_KEY(`user:${subOf(jwt)}`))) >= 5)
  t.pass('the counts kept during the outage were added to Redis')
})

t.test('batched counting, Redis that stalls: the sync times out, memory fallback, back by itself', async (t) => {
  const redis = await startRedis(t)
  t.teardown(() => redis.resume())
  const upstream = await startUpstream(t)
  // The first sync goes out a second after the request: until then nothing has asked the stalled Redis.
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: upstream.url, TASK_SERVICE_URL: upstream.url, REDIS_URL: redis.url, RATE_LIMIT_SYNC_MS: 1000 })
  const backend = async () => (await gw.admin.inject({ url: '/ready' })).json().checks['rate-limit-counters']
  await until('counting in Redis', async () => (await backend()) === 'redis')
  const jwt = await token()
  const req = { url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } }

  redis.pause()
  t.equal((await gw.inject(req)).statusCode, 200, 'answered from local counts')
  t.equal(await backend(), 'redis', 'no Redis command timed out in the request path (exact counting would have failed over here)')
  await until('the fallback at the next sync', async () => (await backend()) === 'memory-fallback', 10_000)
  t.equal((await gw.inject(req)).statusCode, 200)
  redis.resume()
  await until('back in Redis', async () => (await backend()) === 'redis')
  t.pass('counting in Redis again without a reconnect')
})

t.test('the sign-in failure budgets cannot be batched', async (t) => {
  await t.rejects(buildGateway(t, { RATE_LIMIT_BATCHED: 'ip,signin-email' }), /RATE_LIMIT_BATCHED/)
})
