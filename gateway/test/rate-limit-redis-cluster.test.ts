/**
 * REDIS_CLUSTER=true: the counters live on a Redis Cluster (three local
 * redis-server masters). Batched keys are hash-tagged (`{policy:key}`), so a
 * key's window stays on one shard, and each sync sends one pipeline per node.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { Cluster, Redis } from 'ioredis'
import { waitUntil } from '@tollgate/common/testing'
import { buildGateway, logCapture, startUpstream, subOf, token } from './helper.js'
import { startRedisCluster } from './redis-server.js'

/** The deadline is a liveness bound (a loaded 2-core machine), not what a test proves. */
const until = (what: string, check: () => Promise<boolean>, timeoutMs = 30_000) => waitUntil(check, { what, timeoutMs, intervalMs: 20 })
/** A user's batched counter key as stored in Redis (the wire format, spelled out: a test of it, not a call of it). */
const userKey = (jwt: string) => `tollgate:rlb:{user:${subOf(jwt)}}`

t.test('two gateways on a three-node Redis Cluster: batched and exact limits shared, keys spread over the shards', async (t) => {
  const cluster = await startRedisCluster(t)
  const upstream = await startUpstream(t)
  const L = 10
  const config = {
    AUTH_SERVICE_URL: upstream.url,
    TASK_SERVICE_URL: upstream.url,
    REDIS_URL: cluster.url,
    REDIS_CLUSTER: true,
    RATE_LIMIT_SYNC_MS: 50,
    RATE_LIMIT_USER_MAX: L,
    RATE_LIMIT_SIGNUP_IP_MAX: 3,
  }
  const gateways = [await buildGateway(t, config), await buildGateway(t, config)]
  for (const gw of gateways) await until('counting in Redis', async () => (await gw.admin.inject({ url: '/ready' })).json().checks['rate-limit-counters'] === 'redis')
  const client = new Cluster([{ host: '127.0.0.1', port: cluster.ports[0]! }])
  t.teardown(() => client.disconnect())

  // Many users at once: their keys hash to different slots, so one sync spans every node.
  const users = await Promise.all(Array.from({ length: 12 }, () => token()))
  const B = 3
  const admitted = new Map<string, number>()
  let sentPerUser = 0
  for (let round = 0; round < 6; round++) {
    await Promise.all(
      users.flatMap((jwt) =>
        gateways.flatMap((gw) =>
          Array.from({ length: B }, async () => {
            const res = await gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } })
            if (res.statusCode === 200) admitted.set(jwt, (admitted.get(jwt) ?? 0) + 1)
          }),
        ),
      ),
    )
    sentPerUser += 2 * B
    await until('both gateways synced', async () => {
      const counts = await Promise.all(users.map((jwt) => client.get(userKey(jwt))))
      return counts.every((c) => Number(c) === sentPerUser)
    })
    await new Promise((r) => setTimeout(r, 100))
  }
  for (const jwt of users) {
    const n = admitted.get(jwt) ?? 0
    t.ok(n >= L && n <= L + 2 * B, `user admitted ${n}: between L = ${L} and L + 2 x ${B}`)
  }

  // The keys really are spread over the shards (each node holds some).
  const perNode = await Promise.all(
    cluster.ports.map(async (port) => {
      const node = new Redis(port, '127.0.0.1')
      try {
        return (await node.keys('tollgate:rlb:*')).length
      } finally {
        node.disconnect()
      }
    }),
  )
  t.ok(perNode.filter((n) => n > 0).length >= 2, `batched keys on several nodes (${perNode.join(', ')})`)

  // An exact policy (sign-up per address) on the cluster: atomic, across both gateways.
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) {
    const res = await gateways[i % 2]!.inject({ method: 'POST', url: '/api/auth/signup', payload: { email: `${randomUUID()}@example.com`, password: 'SecurePass123!' } })
    statuses.push(res.statusCode)
  }
  t.equal(statuses.filter((s) => s === 429).length, 2, `exactly the sign-up limit of 3 passed across both gateways (${statuses.join(', ')})`)
})

t.test('a cluster node killed mid-traffic: memory fallback at its next sync, still limiting, back by itself', async (t) => {
  const cluster = await startRedisCluster(t)
  const upstream = await startUpstream(t)
  const logs = logCapture()
  const gw = await buildGateway(t, {
    AUTH_SERVICE_URL: upstream.url,
    TASK_SERVICE_URL: upstream.url,
    REDIS_URL: cluster.url,
    REDIS_CLUSTER: true,
    RATE_LIMIT_SYNC_MS: 50,
    RATE_LIMIT_USER_MAX: 5,
    LOG_LEVEL: 'info',
  }, { logStream: logs.stream })
  const backend = async () => (await gw.admin.inject({ url: '/ready' })).json().checks['rate-limit-counters']
  await until('counting in Redis', async () => (await backend()) === 'redis')
  // Users whose keys live on the node that goes away (a sync that reaches it fails) and on the others, chosen by
  // their keys' slots rather than left to chance: twelve random users all missed that node about once in 130 runs.
  const survivor = new Redis(cluster.ports[0]!, '127.0.0.1')
  t.teardown(() => survivor.disconnect())
  const ranges = (await survivor.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, ...unknown[]]][]
  const onStopped = (slot: number) => ranges.some(([from, to, [, port]]) => port === cluster.ports[1] && slot >= from && slot <= to)
  const users: string[] = []
  for (let stopped = 0, others = 0; stopped < 3 || others < 9; ) {
    const jwt = await token()
    const slot = Number(await survivor.call('CLUSTER', 'KEYSLOT', userKey(jwt)))
    if (onStopped(slot) ? stopped++ < 3 : others++ < 9) users.push(jwt)
  }
  const call = (jwt: string) => gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } })
  for (const jwt of users) t.equal((await call(jwt)).statusCode, 200)

  await cluster.stop(1)
  for (const jwt of users) await call(jwt) // a sync that reaches the dead node fails
  await until('the fallback', async () => (await backend()) === 'memory-fallback')
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) statuses.push((await call(users[0]!)).statusCode)
  t.same(statuses, [200, 200, 200, 429, 429], 'still limiting, on this replica, its count so far included')
  t.equal((await gw.admin.inject({ url: '/ready' })).statusCode, 200, 'still ready')
  // Once the cluster itself has noticed (cluster_state:fail), and for a few probe intervals (1 s each) after:
  // the other masters answer PING, yet counting stays in memory while a master is away.
  await until('the cluster marks the node failed', async () => /cluster_state:fail/.test(String(await survivor.call('CLUSTER', 'INFO'))))
  for (let i = 0; i < 15; i++) {
    await new Promise((r) => setTimeout(r, 200))
    await call(users[i % users.length]!)
  }
  t.equal(await backend(), 'memory-fallback', 'not back while a master is down')
  t.equal(logs.count('rate limits: Redis unavailable, counting in memory until it is back'), 1, 'logged once')
  t.equal(logs.count('rate limits: counting in Redis again'), 1, 'no flapping: only the first connection said so')

  await cluster.start(1)
  await until('back in Redis', async () => (await backend()) === 'redis')
  const client = new Cluster([{ host: '127.0.0.1', port: cluster.ports[0]! }])
  t.teardown(() => client.disconnect())
  await until('the counts kept during the outage synced', async () => Number(await client.get(userKey(users[0]!))) >= 7)
  t.pass('counting in the cluster again, the outage\'s counts added')
})
