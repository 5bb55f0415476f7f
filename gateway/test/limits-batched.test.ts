/**
 * The batched counters by themselves, on a controlled clock, with a shared
 * total standing in for Redis's (the Redis side is tested through real
 * gateways in rate-limit-batched.test.ts): windows, read-back, failed syncs.
 */
import t from 'tap'
import { createBatchedCounters, type SyncItem, type SyncResult } from '../src/limits/batched.js'
import type { CounterStore } from '../src/limits/store.js'

function fleet() {
  const totals = new Map<string, { count: number; end: number }>()
  let clock = 1_000_000
  let failing = false
  const calls: SyncItem[][] = []
  const sync = async (items: SyncItem[]): Promise<SyncResult> => {
    calls.push(items)
    if (failing) throw new Error('unreachable')
    return items.map((item) => {
      let total = totals.get(item.key)
      if (!total || total.end <= clock) totals.set(item.key, (total = { count: 0, end: clock + item.windowMs }))
      total.count += item.delta
      return { count: total.count, ttl: total.end - clock }
    })
  }
  return {
    totals,
    calls,
    now: () => clock,
    advance: (ms: number) => (clock += ms),
    fail: (value: boolean) => (failing = value),
    sync,
  }
}

const incr = (store: CounterStore, key: string, windowMs = 60_000) => {
  let out: { current: number; ttl: number } | undefined
  store.incr(key, (_err, res) => (out = res), windowMs, 10)
  return out!
}

t.test('answers at once from local counts; one sync carries every key; the fleet total drives the next answers', async (t) => {
  const f = fleet()
  const errors: Error[] = []
  const a = createBatchedCounters({ syncMs: 100_000, sync: f.sync, canSync: () => true, onSyncError: (e) => errors.push(e), now: f.now })
  const b = createBatchedCounters({ syncMs: 100_000, sync: f.sync, canSync: () => true, onSyncError: (e) => errors.push(e), now: f.now })
  t.teardown(async () => {
    await a.close()
    await b.close()
  })
  t.same(incr(a.store, 'user:x'), { current: 1, ttl: 60_000 }, 'answered synchronously')
  incr(a.store, 'user:x')
  incr(a.store, 'ip:1')
  for (let i = 0; i < 5; i++) incr(b.store, 'user:x')
  a.kick()
  await new Promise((r) => setImmediate(r))
  t.same(f.calls.at(-1)?.map((i) => [i.key, i.delta]), [
    ['user:x', 2],
    ['ip:1', 1],
  ])
  b.kick()
  await new Promise((r) => setImmediate(r))
  t.equal(incr(b.store, 'user:x').current, 8, 'b read back the fleet total (2 + 5) and adds its own')
  t.equal(incr(a.store, 'user:x').current, 3, 'a has not synced since: its last total (2) and its own since')
  a.kick()
  await new Promise((r) => setImmediate(r))
  t.equal(incr(a.store, 'user:x').current, 9, 'after its sync, a sees the fleet total (5 synced by b, 3 by a: 8) and adds its own')
  t.same(errors, [])
})

t.test('windows: aligned to the shared expiry read back, counts restart when it passes', async (t) => {
  const f = fleet()
  const a = createBatchedCounters({ syncMs: 100_000, sync: f.sync, canSync: () => true, onSyncError: () => {}, now: f.now })
  t.teardown(() => a.close())
  f.totals.set('user:y', { count: 4, end: f.now() + 30_000 }) // another replica opened the window 30 s ago
  incr(a.store, 'user:y')
  a.kick()
  await new Promise((r) => setImmediate(r))
  const after = incr(a.store, 'user:y')
  t.same(after, { current: 6, ttl: 30_000 }, 'the fleet total and the shared window end')
  f.advance(30_000)
  t.same(incr(a.store, 'user:y'), { current: 1, ttl: 60_000 }, 'a new window once the shared one ended')
})

t.test('a failed sync keeps its increments for the next one; nothing is sent while the store is away', async (t) => {
  const f = fleet()
  let up = true
  const errors: Error[] = []
  const a = createBatchedCounters({ syncMs: 100_000, sync: f.sync, canSync: () => up, onSyncError: (e) => errors.push(e), now: f.now })
  t.teardown(() => a.close())
  incr(a.store, 'k')
  incr(a.store, 'k')
  f.fail(true)
  a.kick()
  await new Promise((r) => setImmediate(r))
  t.equal(errors.length, 1, 'the failure is reported (the caller falls back)')
  t.equal(incr(a.store, 'k').current, 3, 'still counted locally: the whole limit enforced here')
  up = false
  const calls = f.calls.length
  a.kick()
  await new Promise((r) => setImmediate(r))
  t.equal(f.calls.length, calls, 'no call while away')
  up = true
  f.fail(false)
  a.kick()
  await new Promise((r) => setImmediate(r))
  t.equal(f.totals.get('k')?.count, 3, 'every increment reached the shared total once it was back')
})

t.test('refund: one count back, sent with the next sync; never below zero', async (t) => {
  const f = fleet()
  const a = createBatchedCounters({ syncMs: 100_000, sync: f.sync, canSync: () => true, onSyncError: () => {}, now: f.now })
  t.teardown(() => a.close())
  incr(a.store, 'r')
  incr(a.store, 'r')
  a.store.refund('r', () => {})
  a.kick()
  await new Promise((r) => setImmediate(r))
  t.equal(f.totals.get('r')?.count, 1)
  a.store.refund('r', () => {})
  a.store.refund('r', () => {})
  let current = -1
  a.store.read('r', (_e, res) => (current = res!.current), 60_000, 10)
  t.equal(current, 0)
})

t.test('bounded memory: past the cap the oldest keys go', async (t) => {
  const f = fleet()
  const a = createBatchedCounters({ syncMs: 100_000, sync: f.sync, canSync: () => false, onSyncError: () => {}, now: f.now, maxEntries: 100 })
  t.teardown(() => a.close())
  for (let i = 0; i < 1000; i++) incr(a.store, `key:${i}`)
  t.equal(incr(a.store, 'key:999').current, 2, 'a recent key keeps its count')
  t.equal(incr(a.store, 'key:0').current, 1, 'the oldest was dropped')
})
