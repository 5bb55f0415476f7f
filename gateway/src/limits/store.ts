/**
 * Rate-limit counters: in Redis (or a Redis Cluster) when REDIS_URL is set, so
 * every replica shares them; in memory otherwise. Per policy, exact (an atomic
 * Redis operation per count) or batched (local counts synced in batches, see
 * batched.ts). When Redis fails, counting falls back to memory at once (never
 * unlimited, never a 500, never a wait for Redis), the change is logged once
 * and shown in metrics and readiness, and counting returns to Redis by itself
 * when it is back.
 */
import { createRequire } from 'node:module'
import type { Redis as RedisClient } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { createBatchedCounters, type SyncItem, type SyncResult } from './batched.js'
import { LocalStore, RedisStore, type Callback, type CounterStore } from './fixed-window.js'

export type { Callback, CounterStore }
const require = createRequire(import.meta.url)
// ioredis's own slot function (CRC16 with {hash tags}), to group a Cluster sync per node.
const calculateSlot: (key: string) => number = require('cluster-key-slot')

const NAMESPACE = 'tollgate:rl:'
const LOCAL_ENTRIES = 50_000
/** How often a failed-over store asks a still-connected Redis whether it answers again. */
const PROBE_MS = 1000

const localStore = (): CounterStore => new LocalStore({ maxEntries: LOCAL_ENTRIES })
const redisStore = (redis: RedisClient): CounterStore => new RedisStore(redis, NAMESPACE)

/** The stores by themselves (no failover), for tests of their semantics. */
export const stores = {
  memory: localStore,
  redis: redisStore,
}

/** Batched keys: their own prefix (never mixed with an exact counter of the same policy), hash-tagged for Redis Cluster. */
const BATCHED_NAMESPACE = 'tollgate:rlb:'
export const batchedKey = (key: string) => `${BATCHED_NAMESPACE}{${key}}`

/** Adds a delta to a key's window and reads back the total and the window's remaining ms (opening it if new). */
const SYNC_LUA = `
  local total = redis.call('INCRBY', KEYS[1], ARGV[1])
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return { total, ttl }
`

type SyncingRedis = RedisClient & { tollgateSync(key: string, delta: number, windowMs: number): Promise<[number, number]> }

type SyncPipeline = { tollgateSync(key: string, delta: number, windowMs: number): void; exec(): Promise<Array<[Error | null, unknown]> | null> }

async function syncPipeline(client: SyncingRedis, items: SyncItem[]): Promise<SyncResult> {
  const pipeline = client.pipeline() as unknown as SyncPipeline
  for (const item of items) pipeline.tollgateSync(batchedKey(item.key), item.delta, item.windowMs)
  const replies = (await pipeline.exec()) ?? []
  if (replies.length !== items.length) throw new Error('rate limits: incomplete sync reply')
  return replies.map(([err, reply]) => {
    if (err) throw err
    const [count, ttl] = reply as [number, number]
    return { count, ttl }
  })
}

/**
 * One pipeline (one round trip) for every key of the interval; on a Redis
 * Cluster one per node, each holding the keys whose slots that node serves.
 */
export async function syncBatch(redis: RedisClient, items: SyncItem[]): Promise<SyncResult> {
  const client = redis as SyncingRedis
  if (!client.tollgateSync) client.defineCommand('tollgateSync', { numberOfKeys: 1, lua: SYNC_LUA })
  if (!(redis as { isCluster?: boolean }).isCluster) return syncPipeline(client, items)
  const slots = (redis as unknown as { slots: string[][] }).slots
  const groups = new Map<string, number[]>()
  items.forEach((item, i) => {
    const node = slots[calculateSlot(batchedKey(item.key))]?.join(',') ?? ''
    const group = groups.get(node)
    if (group) group.push(i)
    else groups.set(node, [i])
  })
  const result: SyncResult = new Array(items.length)
  await Promise.all(
    [...groups.values()].map(async (indexes) => {
      const replies = await syncPipeline(
        client,
        indexes.map((i) => items[i]!),
      )
      indexes.forEach((i, j) => (result[i] = replies[j]!))
    }),
  )
  return result
}

export type CounterBackend = 'redis' | 'memory' | 'memory-fallback'

/**
 * exact: every count is an atomic Redis operation (security-critical, low-rate policies);
 * batched: counted locally and added to Redis in batches (high-rate policies; see batched.ts).
 * Without Redis both are the same in-memory store.
 */
export type CountingMode = 'exact' | 'batched'

export interface CounterState {
  backend(): CounterBackend
  close(): Promise<void>
  /** A store for one policy (its keys are prefixed with the policy's name); exact unless asked. */
  newStore(mode?: CountingMode): CounterStore
}

export interface CounterOptions {
  /** Batched policies add their increments to Redis at most this often. */
  syncMs: number
  /** REDIS_URL names seed nodes of a Redis Cluster (comma-separated URLs; the other nodes are discovered). */
  cluster?: boolean
}

/** `redis://h1:p1,redis://h2:p2` (or `redis://h1:p1,h2:p2`) as ioredis Cluster seed nodes. */
function clusterSeeds(redisUrl: string): Array<{ host: string; port: number }> {
  return redisUrl.split(',').map((part) => {
    const url = new URL(/^rediss?:\/\//.test(part.trim()) ? part.trim() : `redis://${part.trim()}`)
    return { host: url.hostname, port: Number(url.port || 6379) }
  })
}

/** Credentials and TLS from the first seed URL, for every node. */
function clusterAuth(redisUrl: string): { username?: string; password?: string; tls?: object } {
  const url = new URL(redisUrl.split(',')[0]!.trim())
  return {
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  }
}

export async function createCounterStore(
  redisUrl: string | undefined,
  log: FastifyBaseLogger,
  onChange: (b: CounterBackend) => void,
  options: CounterOptions = { syncMs: 100 },
): Promise<CounterState> {
  if (!redisUrl) {
    onChange('memory')
    return { backend: () => 'memory', close: async () => {}, newStore: () => localStore() }
  }

  // Loaded only when configured: a gateway without Redis never pays for the client.
  const { Redis, Cluster } = await import('ioredis')
  const connection = {
    maxRetriesPerRequest: 1,
    connectTimeout: 500,
    commandTimeout: 300,
  }
  const retry = (times: number) => Math.min(100 * times, 2000)
  // Fail fast instead of queueing: a command while Redis is away errors at once.
  const redis: RedisClient = options.cluster
    ? (new Cluster(clusterSeeds(redisUrl), {
        enableOfflineQueue: false,
        clusterRetryStrategy: retry,
        redisOptions: { ...connection, ...clusterAuth(redisUrl) },
        lazyConnect: false,
      }) as unknown as RedisClient)
    : new Redis(redisUrl, { ...connection, enableOfflineQueue: false, retryStrategy: retry, lazyConnect: false })
  /**
   * Redis answers: PING; on a cluster, PING to the master of every slot (one node answering says
   * nothing about the others' slots, and a master that went away is no longer in the client's pool).
   */
  const answers = async (): Promise<boolean> => {
    if (!options.cluster) return (await redis.ping()) === 'PONG'
    const cluster = redis as unknown as { slots: string[][]; nodes(role: 'master'): RedisClient[]; refreshSlotsCache(): void }
    const owners = new Set<string>()
    for (let slot = 0; slot < 16384; slot++) {
      const owner = cluster.slots[slot]?.[0]
      if (owner === undefined) return false
      owners.add(owner)
    }
    const masters = new Map(cluster.nodes('master').map((node) => [`${node.options.host}:${node.options.port}`, node]))
    // The client drops a master whose connection ended; asking the cluster for its slots brings it back.
    if ([...owners].some((owner) => !masters.has(owner))) cluster.refreshSlotsCache()
    const replies = await Promise.all([...owners].map((owner) => masters.get(owner)?.ping() ?? 'missing'))
    return replies.every((r) => r === 'PONG')
  }
  let healthy: boolean | undefined // unknown until the first event, so an unreachable Redis at start is logged too
  // A command that timed out leaves the connection up, so no 'ready' event will
  // say Redis is back: while failed over on a live connection, ask it with PING.
  let probe: NodeJS.Timeout | null = null
  const stopProbe = () => {
    if (probe) clearInterval(probe)
    probe = null
  }
  const startProbe = () => {
    if (probe) return
    probe = setInterval(() => {
      if (redis.status !== 'ready') return // reconnecting: its 'ready' event will tell
      answers().then(
        (ok) => ok && setHealthy(true, 'ping'),
        () => {},
      )
    }, PROBE_MS)
    probe.unref()
  }
  const setHealthy = (value: boolean, why: string) => {
    if (value === healthy) return
    healthy = value
    if (value) log.info('rate limits: counting in Redis again')
    else log.warn({ reason: why }, 'rate limits: Redis unavailable, counting in memory until it is back')
    if (value) stopProbe()
    else startProbe()
    onChange(value ? 'redis' : 'memory-fallback')
    if (value) batched?.kick()
  }
  // One batcher for every batched policy (their keys carry the policy's name): one sync call per interval.
  let batched: ReturnType<typeof createBatchedCounters> | undefined
  onChange('memory-fallback')
  // A cluster is ready once its slot map is known, even with a master down: ask every master first.
  redis.on('ready', () => {
    if (!options.cluster) return setHealthy(true, 'ready')
    // Not yet: the probe asks again every second.
    answers().then(
      (ok) => setHealthy(ok, ok ? 'ready' : 'a master did not answer'),
      (err: Error) => setHealthy(false, err.message),
    )
  })
  redis.on('error', (err) => setHealthy(false, err.message))
  redis.on('close', () => setHealthy(false, 'connection closed'))
  redis.on('end', () => setHealthy(false, 'connection ended'))

  class FailoverStore implements CounterStore {
    private readonly shared: CounterStore = redisStore(redis)
    private readonly local: CounterStore = localStore()
    private run(op: 'incr' | 'read', key: string, cb: Callback, timeWindow: number, max: number) {
      if (!healthy) return this.local[op](key, cb, timeWindow, max)
      this.shared[op](
        key,
        (err, res) => {
          if (!err) return cb(null, res)
          setHealthy(false, err.message)
          this.local[op](key, cb, timeWindow, max)
        },
        timeWindow,
        max,
      )
    }
    incr(key: string, cb: Callback, timeWindow: number, max: number) {
      this.run('incr', key, cb, timeWindow, max)
    }
    read(key: string, cb: Callback, timeWindow: number, max: number) {
      this.run('read', key, cb, timeWindow, max)
    }
    refund(key: string, cb: (err: Error | null) => void) {
      // Given back where counting happens now: across a switch of backend a refund may land on the
      // other side, at most one per sign-in in flight at the switch.
      if (!healthy) return this.local.refund(key, cb)
      this.shared.refund(key, (err) => {
        if (err) setHealthy(false, err.message)
        cb(null)
      })
    }
  }

  batched = createBatchedCounters({
    syncMs: options.syncMs,
    sync: (items) => syncBatch(redis, items),
    canSync: () => healthy === true,
    onSyncError: (err) => setHealthy(false, err.message),
  })
  const batchedStore = batched.store

  return {
    backend: () => (healthy ? 'redis' : 'memory-fallback'),
    close: async () => {
      stopProbe()
      await batched!.close()
      redis.disconnect()
    },
    newStore: (mode = 'exact') => (mode === 'batched' ? batchedStore : new FailoverStore()),
  }
}
