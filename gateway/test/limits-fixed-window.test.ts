/**
 * The fixed-window stores (src/limits/fixed-window.ts): the semantics of
 * @fastify/rate-limit's LocalStore and RedisStore, which they replace. In memory
 * with a controlled clock; in Redis against a real redis-server (windows end
 * by PEXPIRE or by waiting for the key to go, never by a timed assertion).
 * Refund is covered in limits-store.test.ts.
 */
import t from 'tap'
import { Redis } from 'ioredis'
import { LocalStore, RedisStore, type CounterStore } from '../src/limits/fixed-window.js'
import { testRedisUrl } from './redis-server.js'

type State = { current: number; ttl: number }
const incr = (store: CounterStore, key: string, windowMs: number) =>
  new Promise<State>((resolve, reject) => store.incr(key, (err, res) => (err ? reject(err) : resolve({ current: res!.current, ttl: res!.ttl })), windowMs, 10))
const read = (store: CounterStore, key: string, windowMs: number) =>
  new Promise<State>((resolve, reject) => store.read(key, (err, res) => (err ? reject(err) : resolve({ current: res!.current, ttl: res!.ttl })), windowMs, 10))

t.test('in memory, with a controlled clock', async (t) => {
  t.test('a window opens at the first count and counts add up inside it', async (t) => {
    let now = 1_000_000
    const store = new LocalStore({ now: () => now })
    t.same(await incr(store, 'a', 1000), { current: 1, ttl: 1000 })
    now += 300
    t.same(await incr(store, 'a', 1000), { current: 2, ttl: 700 }, 'ttl is what is left of the window')
    now += 699
    t.same(await incr(store, 'a', 1000), { current: 3, ttl: 1 }, 'still inside at 999 ms')
    t.same(await incr(store, 'b', 1000), { current: 1, ttl: 1000 }, 'keys are counted apart')
  })

  t.test('the first count at the end of the window opens a new one', async (t) => {
    let now = 0
    const store = new LocalStore({ now: () => now })
    for (let i = 0; i < 5; i++) await incr(store, 'k', 1000)
    now = 1000
    t.same(await incr(store, 'k', 1000), { current: 1, ttl: 1000 }, 'exactly at the end: a new window')
    now = 1500
    t.same(await incr(store, 'k', 1000), { current: 2, ttl: 500 }, 'the new window runs from its own first count')
    now = 10_000
    t.same(await incr(store, 'k', 1000), { current: 1, ttl: 1000 }, 'long after: a new window too')
  })

  t.test('read reports without touching', async (t) => {
    let now = 0
    const store = new LocalStore({ now: () => now })
    t.same(await read(store, 'k', 1000), { current: 0, ttl: 0 }, 'nothing counted: a clean state')
    t.same(await incr(store, 'k', 1000), { current: 1, ttl: 1000 }, 'and read created nothing')
    await incr(store, 'k', 1000)
    now = 400
    t.same(await read(store, 'k', 1000), { current: 2, ttl: 600 })
    t.same(await read(store, 'k', 1000), { current: 2, ttl: 600 }, 'reading twice changes nothing')
    now = 1000
    t.same(await read(store, 'k', 1000), { current: 0, ttl: 0 }, 'an ended window reads as clean')
    t.same(await incr(store, 'k', 1000), { current: 1, ttl: 1000 })
  })

  t.test('memory is bounded: the least recently counted key goes first', async (t) => {
    const store = new LocalStore({ maxEntries: 2, now: () => 0 })
    await incr(store, 'a', 1000)
    await incr(store, 'b', 1000)
    await incr(store, 'a', 1000) // a is now the most recent
    await incr(store, 'c', 1000) // evicts b
    t.same(await read(store, 'a', 1000), { current: 2, ttl: 1000 })
    t.same(await read(store, 'b', 1000), { current: 0, ttl: 0 }, 'b was evicted')
    t.same(await read(store, 'c', 1000), { current: 1, ttl: 1000 })
  })
})

t.test('in Redis (a real redis-server)', async (t) => {
  const url = await testRedisUrl(t)
  const redis = new Redis(url, { maxRetriesPerRequest: 1 })
  const ns = `tollgate:test-fw:${process.pid}:${Math.random()}:`
  const store = new RedisStore(redis, ns)
  let n = 0
  const fresh = () => `k${n++}`

  t.test('the first count sets the expiry; later ones report what is left and do not extend it', async (t) => {
    const key = fresh()
    t.same(await incr(store, key, 60_000), { current: 1, ttl: 60_000 })
    const pttl = await redis.pttl(ns + key)
    t.ok(pttl > 0 && pttl <= 60_000, `the key expires with the window (pttl ${pttl})`)
    // As if 55 s had passed: 5 s left.
    await redis.pexpire(ns + key, 5000)
    const second = await incr(store, key, 60_000)
    t.equal(second.current, 2)
    t.ok(second.ttl > 0 && second.ttl <= 5000, `ttl is what is left (${second.ttl}), not a new window`)
    const after = await redis.pttl(ns + key)
    t.ok(after > 0 && after <= 5000, `the expiry is unchanged (pttl ${after})`)
    t.equal(await redis.get(ns + key), '2', 'the count is a plain Redis integer under namespace + key')
  })

  t.test('when the window ends the key goes, and the next count opens a new window', async (t) => {
    const key = fresh()
    for (let i = 0; i < 3; i++) await incr(store, key, 60_000)
    await redis.pexpire(ns + key, 1) // the window ends now
    while ((await redis.exists(ns + key)) === 1) await new Promise((r) => setImmediate(r))
    t.same(await read(store, key, 60_000), { current: 0, ttl: 0 }, 'an ended window reads as clean')
    t.same(await incr(store, key, 60_000), { current: 1, ttl: 60_000 }, 'a new window at 1')
  })

  t.test('a real (short) window ends by itself', async (t) => {
    const key = fresh()
    t.same(await incr(store, key, 50), { current: 1, ttl: 50 })
    // Waits for Redis to expire the key: an event, whatever the machine's load.
    while ((await redis.exists(ns + key)) === 1) await new Promise((r) => setTimeout(r, 10))
    t.same(await incr(store, key, 50), { current: 1, ttl: 50 })
  })

  t.test('read reports the count and PTTL without touching the key', async (t) => {
    const key = fresh()
    t.same(await read(store, key, 60_000), { current: 0, ttl: 0 }, 'missing: a clean state')
    t.equal(await redis.exists(ns + key), 0, 'read created nothing')
    await incr(store, key, 60_000)
    await incr(store, key, 60_000)
    await redis.pexpire(ns + key, 30_000)
    const state = await read(store, key, 60_000)
    t.equal(state.current, 2)
    t.ok(state.ttl > 0 && state.ttl <= 30_000, `ttl from PTTL (${state.ttl})`)
    t.equal(await redis.get(ns + key), '2', 'count unchanged')
    const pttl = await redis.pttl(ns + key)
    t.ok(pttl <= 30_000, 'expiry unchanged')
  })

  t.test('a key found without an expiry gets the window (never counts forever)', async (t) => {
    const key = fresh()
    await redis.set(ns + key, '5')
    t.same(await read(store, key, 60_000), { current: 5, ttl: 0 }, 'read reports no active window')
    const state = await incr(store, key, 60_000)
    t.same(state, { current: 6, ttl: 60_000 })
    const pttl = await redis.pttl(ns + key)
    t.ok(pttl > 0 && pttl <= 60_000, `it expires now (pttl ${pttl})`)
  })

  t.test('namespaces keep stores apart', async (t) => {
    const other = new RedisStore(redis, `${ns}other:`)
    const key = fresh()
    await incr(store, key, 60_000)
    await incr(store, key, 60_000)
    t.same(await incr(other, key, 60_000), { current: 1, ttl: 60_000 })
  })

  t.test('counts from many clients at once are exact (each is one atomic script)', async (t) => {
    // Two connections, as two gateway replicas.
    const second = new Redis(url, { maxRetriesPerRequest: 1 })
    t.teardown(() => second.disconnect())
    const stores = [store, new RedisStore(second, ns)]
    const key = fresh()
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => incr(stores[i % 2]!, key, 60_000)))
    t.same(
      results.map((r) => r.current).sort((a, b) => a - b),
      Array.from({ length: 200 }, (_, i) => i + 1),
      'every count saw a distinct value: none lost, none doubled',
    )
    t.ok(
      results.every((r) => r.ttl > 0 && r.ttl <= 60_000),
      'every count saw the one window',
    )
    t.equal(await redis.get(ns + key), '200')
  })

  t.test('after SCRIPT FLUSH (a restarted or failed-over Redis) the scripts are sent again', async (t) => {
    const key = fresh()
    await incr(store, key, 60_000)
    await redis.script('FLUSH')
    t.equal((await incr(store, key, 60_000)).current, 2)
    t.equal((await read(store, key, 60_000)).current, 2)
  })

  t.test('a connection that is gone fails the call (the failover in store.ts takes over)', async (t) => {
    const gone = new Redis(url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true })
    const dead = new RedisStore(gone, ns)
    await t.rejects(incr(dead, fresh(), 60_000))
    await t.rejects(read(dead, fresh(), 60_000))
    await t.rejects(new Promise<void>((resolve, reject) => dead.refund(fresh(), (err) => (err ? reject(err) : resolve()))))
    gone.disconnect()
  })

  t.teardown(async () => {
    const keys = await redis.keys(`${ns}*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  })
})
