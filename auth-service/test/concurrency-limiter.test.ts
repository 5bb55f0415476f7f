import t from 'tap'
import { HttpError } from '@tollgate/common'
import { createConcurrencyLimiter } from '../src/credentials/concurrency-limiter.js'

/** A task that finishes when the test says so. */
function gate() {
  let open!: () => void
  const opened = new Promise<void>((resolve) => (open = resolve))
  return { open, task: () => opened }
}

t.test('at most maxConcurrent run, at most maxQueue wait, the rest is a 503 at once', async (t) => {
  const limiter = createConcurrencyLimiter({ maxConcurrent: 2, maxQueue: 3 })
  const gates = Array.from({ length: 5 }, gate)
  const order: number[] = []
  const admitted = gates.map((g, i) => limiter.run(async () => {
    order.push(i)
    await g.task()
    return i
  }))
  await new Promise((r) => setImmediate(r))
  t.same(limiter.stats(), { running: 2, queued: 3, rejected: 0, peakRunning: 2 })
  t.same(order, [0, 1], 'only two started')

  const refused = limiter.run(async () => 'never')
  // Settled before the next turn of the event loop, with every admitted task still running: it waited for nothing.
  const settled = await Promise.race([refused.then(() => 'admitted', () => 'refused'), new Promise((r) => setImmediate(() => r('waiting')))])
  t.equal(settled, 'refused', 'refused without waiting')
  await t.rejects(refused, HttpError)
  const err = await refused.catch((e: HttpError) => e)
  t.equal((err as HttpError).statusCode, 503)
  t.equal((err as HttpError).errorCode, 'SERVICE_UNAVAILABLE')
  t.same((err as HttpError).headers, { 'retry-after': '1' })
  t.equal(limiter.stats().rejected, 1)

  // Finishing one lets the first in line start, never a newcomer.
  gates[1]!.open()
  await admitted[1]
  await new Promise((r) => setImmediate(r))
  t.same(order, [0, 1, 2], 'first come, first served')
  t.equal(limiter.stats().running, 2)
  t.equal(limiter.stats().queued, 2)

  for (const g of gates) g.open()
  t.same(await Promise.all(admitted), [0, 1, 2, 3, 4])
  t.same(order, [0, 1, 2, 3, 4])
  t.same(limiter.stats(), { running: 0, queued: 0, rejected: 1, peakRunning: 2 })
})

t.test('a failing task frees its slot', async (t) => {
  const limiter = createConcurrencyLimiter({ maxConcurrent: 1, maxQueue: 0 })
  await t.rejects(limiter.run(async () => { throw new Error('boom') }), /boom/)
  t.equal(await limiter.run(async () => 'ok'), 'ok')
  t.equal(limiter.stats().running, 0)
})

t.test('maxQueue 0: only the running slots, nothing waits', async (t) => {
  const limiter = createConcurrencyLimiter({ maxConcurrent: 1, maxQueue: 0 })
  const g = gate()
  const first = limiter.run(g.task)
  await t.rejects(limiter.run(async () => 'second'), new HttpError(503, 'SERVICE_UNAVAILABLE', 'Server is busy, retry later'))
  g.open()
  await first
})
