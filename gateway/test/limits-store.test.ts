/** The counter stores' refund (our own Lua script and its in-memory twin): one count back, never below 0, window kept. */
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { stores, type CounterStore } from '../src/limits/store.js'
import { testRedisUrl } from './redis-server.js'

const incr = (store: CounterStore, key: string, windowMs = 60_000) =>
  new Promise<{ current: number; ttl: number }>((resolve, reject) => store.incr(key, (err, res) => (err ? reject(err) : resolve(res!)), windowMs, 10))
const read = (store: CounterStore, key: string, windowMs = 60_000) =>
  new Promise<{ current: number; ttl: number }>((resolve, reject) => store.read(key, (err, res) => (err ? reject(err) : resolve(res!)), windowMs, 10))
const refund = (store: CounterStore, key: string) => new Promise<void>((resolve, reject) => store.refund(key, (err) => (err ? reject(err) : resolve())))

async function refundSemantics(t: Pick<Test, 'equal' | 'ok'>, store: CounterStore) {
  const key = `refund-${Math.random()}`
  for (let i = 0; i < 3; i++) await incr(store, key)
  await refund(store, key)
  const after = await read(store, key)
  t.equal(after.current, 2, 'one count given back')
  t.ok(after.ttl > 50_000 && after.ttl <= 60_000, `the window is kept (ttl ${after.ttl})`)
  t.equal((await incr(store, key)).current, 3, 'counting goes on from there')
  for (let i = 0; i < 5; i++) await refund(store, key)
  t.equal((await read(store, key)).current, 0, 'never below zero')
  const missing = `missing-${Math.random()}`
  await refund(store, missing)
  t.equal((await read(store, missing)).current, 0, 'a refund of nothing creates nothing')
  t.equal((await incr(store, missing)).current, 1, 'and does not leave credit behind')
}

t.test('in memory', async (t) => {
  await refundSemantics(t, stores.memory())
})

t.test('in Redis (a real redis-server)', async (t) => {
  const redis = new Redis(await testRedisUrl(t), { maxRetriesPerRequest: 1 })
  t.teardown(() => redis.disconnect())
  const store = stores.redis(redis)
  await refundSemantics(t, store)
  const key = `expiry-${Math.random()}`
  await incr(store, key)
  await refund(store, key)
  const pttl = await redis.pttl(`tollgate:rl:${key}`)
  t.ok(pttl > 0, `a refunded key keeps its expiry (pttl ${pttl}), so it never lives forever`)
  // Concurrent refunds and increments stay exact (each is one atomic script).
  const busy = `busy-${Math.random()}`
  await Promise.all(Array.from({ length: 20 }, () => incr(store, busy)))
  await Promise.all(Array.from({ length: 15 }, () => refund(store, busy)))
  t.equal((await read(store, busy)).current, 5)
})
