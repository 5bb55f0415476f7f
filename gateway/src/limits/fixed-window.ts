/**
 * Fixed-window counters, our own: the semantics and Lua script of
 * @fastify/rate-limit 11's LocalStore and RedisStore (without their
 * continueExceeding and exponentialBackoff options, which the gateway never
 * used), plus a refund. Owned here so no release of the plugin can move them
 * from under us (the plugin has no exports map for its store files).
 *
 * A key's window opens at its first count and lasts `timeWindow` ms; counts
 * inside it add up; the first count after it ends opens a new window at 1.
 * `ttl` is what is left of the window, in ms.
 */
import { LruMap } from 'toad-cache'
import type { Redis as RedisClient } from 'ioredis'

export type Callback = (err: Error | null, res?: { current: number; ttl: number }) => void

/**
 * A store counts (incr) or peeks at (read) a key's fixed window, and gives one
 * count back (refund: a reservation that turned out not to be spent).
 * Same contract as @fastify/rate-limit's stores, plus refund.
 */
export interface CounterStore {
  incr(key: string, cb: Callback, timeWindow: number, max: number): void
  read(key: string, cb: Callback, timeWindow: number, max: number): void
  /** One count back; never below 0, window unchanged. */
  refund(key: string, cb: (err: Error | null) => void): void
}

interface LocalEntry {
  current: number
  ttl: number
  iterationStartMs: number
}

export interface LocalStoreOptions {
  /** Keys kept; the least recently counted goes first. */
  maxEntries?: number
  /** The clock, for tests. */
  now?: () => number
}

/** In memory, one replica's own counts (an LRU of `maxEntries` keys). */
export class LocalStore implements CounterStore {
  private readonly lru: LruMap<LocalEntry>
  private readonly now: () => number

  constructor(options: LocalStoreOptions = {}) {
    this.lru = new LruMap<LocalEntry>(options.maxEntries ?? 5000)
    // Date.now looked up at each call, so a test that replaces it controls this clock too.
    this.now = options.now ?? (() => Date.now())
  }

  incr(key: string, cb: Callback, timeWindow: number): void {
    const nowMs = this.now()
    let entry = this.lru.get(key)
    if (!entry) {
      entry = { current: 1, ttl: timeWindow, iterationStartMs: nowMs }
    } else if (entry.iterationStartMs + timeWindow <= nowMs) {
      // The window ended: a new one opens with this count.
      entry.current = 1
      entry.ttl = timeWindow
      entry.iterationStartMs = nowMs
    } else {
      entry.current += 1
      entry.ttl = timeWindow - (nowMs - entry.iterationStartMs)
    }
    this.lru.set(key, entry)
    cb(null, entry)
  }

  /** The key's state without touching it: `{0, 0}` when it has no open window. */
  read(key: string, cb: Callback, timeWindow: number): void {
    const nowMs = this.now()
    const entry = this.lru.get(key)
    if (!entry || entry.iterationStartMs + timeWindow <= nowMs) return cb(null, { current: 0, ttl: 0 })
    cb(null, { current: entry.current, ttl: timeWindow - (nowMs - entry.iterationStartMs) })
  }

  refund(key: string, cb: (err: Error | null) => void): void {
    // An expired entry may be decremented too: incr resets an expired window to 1 anyway.
    const entry = this.lru.get(key)
    if (entry && entry.current > 0) entry.current -= 1
    cb(null)
  }
}

/**
 * The plugin's increment (INCR; the first count sets the window's expiry,
 * later ones read what is left of it), with one guard added: a key found
 * without an expiry (PTTL -1, e.g. written by hand) gets the window again
 * instead of counting forever.
 */
const INCR_LUA = `
  local key = KEYS[1]
  local timeWindow = tonumber(ARGV[1])
  local current = redis.call('INCR', key)
  if current == 1 then
    redis.call('PEXPIRE', key, timeWindow)
  else
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      redis.call('PEXPIRE', key, timeWindow)
      ttl = timeWindow
    end
    timeWindow = ttl
  end
  return { current, timeWindow }
`

/** The plugin's read: the count and PTTL without touching the key; `{0, 0}` when it is missing. */
const READ_LUA = `
  local current = redis.call('GET', KEYS[1])
  if not current then
    return { 0, 0 }
  end
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    ttl = 0
  end
  return { tonumber(current), ttl }
`

/** DECR keeps the key's TTL; a missing or spent key is left alone (never negative, never without expiry). */
const REFUND_LUA = `
  local current = tonumber(redis.call('GET', KEYS[1]))
  if current and current > 0 then
    return redis.call('DECR', KEYS[1])
  end
  return 0
`

type Reply = (err: Error | null, res?: [number, number]) => void
type ScriptedRedis = RedisClient & {
  tollgateIncr(key: string, timeWindow: number, cb: Reply): void
  tollgateRead(key: string, cb: Reply): void
  tollgateRefund(key: string, cb: (err: Error | null, res?: number) => void): void
}

/** Defines the scripts once per client (ioredis sends EVALSHA, and the script itself when Redis does not know it yet). */
function scripted(redis: RedisClient): ScriptedRedis {
  const client = redis as ScriptedRedis
  if (!client.tollgateIncr) client.defineCommand('tollgateIncr', { numberOfKeys: 1, lua: INCR_LUA })
  if (!client.tollgateRead) client.defineCommand('tollgateRead', { numberOfKeys: 1, lua: READ_LUA })
  if (!client.tollgateRefund) client.defineCommand('tollgateRefund', { numberOfKeys: 1, lua: REFUND_LUA })
  return client
}

/**
 * In Redis (or a Redis Cluster: every script touches one key), shared by every
 * replica; each operation is one atomic script. Keys are `namespace + key`.
 */
export class RedisStore implements CounterStore {
  private readonly redis: ScriptedRedis

  constructor(
    redis: RedisClient,
    private readonly namespace: string,
  ) {
    this.redis = scripted(redis)
  }

  incr(key: string, cb: Callback, timeWindow: number): void {
    this.redis.tollgateIncr(this.namespace + key, timeWindow, (err, res) => (err ? cb(err) : cb(null, { current: res![0], ttl: res![1] })))
  }

  read(key: string, cb: Callback): void {
    this.redis.tollgateRead(this.namespace + key, (err, res) => (err ? cb(err) : cb(null, { current: res![0], ttl: res![1] })))
  }

  refund(key: string, cb: (err: Error | null) => void): void {
    this.redis.tollgateRefund(this.namespace + key, (err) => cb(err ?? null))
  }
}
