/**
 * Rate-limit counters: in Redis when REDIS_URL is set, so every replica shares
 * them; in memory otherwise. When Redis fails, counting falls back to memory
 * at once (never unlimited, never a 500, never a wait for Redis), the change
 * is logged once and shown in metrics and readiness, and counting returns to
 * Redis by itself when it is back.
 */
import { createRequire } from 'node:module'
import type { Redis as RedisClient } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'

// The plugin's own stores, so the Lua script and window semantics are exactly its.
const require = createRequire(import.meta.url)
export type Callback = (err: Error | null, res?: { current: number; ttl: number }) => void
/** @fastify/rate-limit's store contract: count (incr) or peek (read) a key's fixed window. */
export interface CounterStore {
  incr(key: string, cb: Callback, timeWindow: number, max: number): void
  read(key: string, cb: Callback, timeWindow: number, max: number): void
}
type StoreCtor = new (...args: unknown[]) => CounterStore
const LocalStore: StoreCtor = require('@fastify/rate-limit/store/LocalStore')
const RedisStore: StoreCtor = require('@fastify/rate-limit/store/RedisStore')

export type CounterBackend = 'redis' | 'memory' | 'memory-fallback'

export interface CounterState {
  backend(): CounterBackend
  close(): Promise<void>
  /** A store for one policy (its keys are prefixed with the policy's name). */
  newStore(): CounterStore
}

const NAMESPACE = 'tollgate:rl:'
const LOCAL_ENTRIES = 50_000

export async function createCounterStore(redisUrl: string | undefined, log: FastifyBaseLogger, onChange: (b: CounterBackend) => void): Promise<CounterState> {
  if (!redisUrl) {
    onChange('memory')
    return { backend: () => 'memory', close: async () => {}, newStore: () => new LocalStore(false, false, LOCAL_ENTRIES) }
  }

  // Loaded only when configured: a gateway without Redis never pays for the client.
  const { Redis } = await import('ioredis')
  const redis: RedisClient = new Redis(redisUrl, {
    // Fail fast instead of queueing: a command while Redis is away errors at once.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 500,
    commandTimeout: 300,
    retryStrategy: (times) => Math.min(100 * times, 2000),
    lazyConnect: false,
  })
  let healthy: boolean | undefined // unknown until the first event, so an unreachable Redis at start is logged too
  const setHealthy = (value: boolean, why: string) => {
    if (value === healthy) return
    healthy = value
    if (value) log.info('rate limits: counting in Redis again')
    else log.warn({ reason: why }, 'rate limits: Redis unavailable, counting in memory until it is back')
    onChange(value ? 'redis' : 'memory-fallback')
  }
  onChange('memory-fallback')
  redis.on('ready', () => setHealthy(true, 'ready'))
  redis.on('error', (err) => setHealthy(false, err.message))
  redis.on('close', () => setHealthy(false, 'connection closed'))
  redis.on('end', () => setHealthy(false, 'connection ended'))

  class FailoverStore implements CounterStore {
    private readonly shared: CounterStore = new RedisStore(false, false, redis, NAMESPACE)
    private readonly local: CounterStore = new LocalStore(false, false, LOCAL_ENTRIES)
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
  }

  return {
    backend: () => (healthy ? 'redis' : 'memory-fallback'),
    close: async () => {
      redis.disconnect()
    },
    newStore: () => new FailoverStore(),
  }
}
