/**
 * S-28 / L-02: a sign-in flood at the production cost cannot take the service
 * down. At most BCRYPT_MAX_CONCURRENCY comparisons run, BCRYPT_MAX_QUEUE wait,
 * the rest are refused at once with 503; the event loop stays free, so cheap
 * routes keep answering while the flood lasts.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import bcrypt from 'bcrypt'
import type { LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { type App } from '@tollgate/common'
import * as testing from '@tollgate/common/testing'
import { asUser, build, inject, PASSWORD, signin, signup } from './helper.js'

const { percentile, timed } = testing
// The file's bound is a liveness bound: up to three floods of cost-12 hashes took 105 s on a loaded 2-core machine.
t.setTimeout(300_000)
const BURST = 60
const CONCURRENCY = 4
const QUEUE = 16
const round = (ms: number) => Math.round(ms * 10) / 10

interface Flood {
  results: Array<{ ms: number; value: LightMyRequestResponse }>
  /** Event-loop delay p99 during the flood, ms (monitorEventLoopDelay, 10 ms resolution included). */
  loopP99: number
  health: number[]
  me: number[]
  cheapStatuses: Set<number>
  figures: Record<string, number>
}

async function flood(app: App, user: { id: string; email: string }): Promise<Flood> {
  const delay = monitorEventLoopDelay({ resolution: 10 })
  const health: number[] = []
  const me: number[] = []
  const cheapStatuses = new Set<number>()
  let flooding = true
  // Cheap requests all through the flood, one after another, as a client would.
  const prober = (async () => {
    while (flooding) {
      const h = await timed(() => app.inject({ method: 'GET', url: '/health' }))
      health.push(h.ms)
      cheapStatuses.add(h.value.statusCode)
      const m = await timed(() => inject(app, { method: 'GET', url: '/api/auth/me', identity: asUser(user.id) }))
      me.push(m.ms)
      cheapStatuses.add(m.value.statusCode)
      await new Promise((r) => setTimeout(r, 10))
    }
  })()

  delay.enable()
  const started = performance.now()
  // Arriving as from sockets, one per turn of the loop, not all inside one tick.
  const pending: Array<Promise<{ ms: number; value: LightMyRequestResponse }>> = []
  for (let i = 0; i < BURST; i++) {
    pending.push(timed(() => signin(app, user.email, PASSWORD)))
    await new Promise((r) => setImmediate(r))
  }
  const results = await Promise.all(pending)
  const burstMs = performance.now() - started
  flooding = false
  await prober
  delay.disable()

  const loopP99 = delay.percentile(99) / 1e6
  const shedMs = results.filter((r) => r.value.statusCode === 503).map((r) => r.ms)
  const figures = {
    burstMs: round(burstMs),
    admitted: results.filter((r) => r.value.statusCode === 200).length,
    shed: shedMs.length,
    shedP50Ms: round(percentile(shedMs, 50)),
    shedMaxMs: round(Math.max(...shedMs)),
    admittedMaxMs: round(Math.max(...results.filter((r) => r.value.statusCode === 200).map((r) => r.ms))),
    eventLoopP99Ms: round(loopP99),
    eventLoopMaxMs: round(delay.max / 1e6),
    healthP99Ms: round(percentile(health, 99)),
    meP99Ms: round(percentile(me, 99)),
    cheapSamples: health.length,
  }
  return { results, loopP99, health, me, cheapStatuses, figures }
}

/** The median of three synchronous cost-12 comparisons: how long one hash holds a loop it runs on. */
async function syncCompareMs(): Promise<number> {
  const hash = await bcrypt.hash('x', 12)
  const ms: number[] = []
  for (let i = 0; i < 3; i++) {
    const started = performance.now()
    bcrypt.compareSync('x', hash) // on purpose: the measure of what the flood must not do
    ms.push(performance.now() - started)
  }
  return percentile(ms, 50)
}

t.test(`${BURST} concurrent sign-ins at cost 12: bounded, shed fast, event loop free`, async (t) => {
  const app = await build(t, {
    BCRYPT_COST: '12',
    BCRYPT_MAX_CONCURRENCY: String(CONCURRENCY),
    BCRYPT_MAX_QUEUE: String(QUEUE),
  })
  const user = await signup(app)
  t.equal((await signin(app, user.email, PASSWORD)).statusCode, 200, 'warm: one sign-in works')

  // Latency on a shared machine is noisy: other processes can starve any event
  // loop for a while. A loop that hashing blocks fails every attempt (a
  // cost-12 hash holds it ~250 ms, see the control below); noise does not.
  // So: up to three floods, every one checked for correctness, the quietest
  // one for latency.
  // What a hash on the loop would cost, measured under the same load as the floods: a loaded machine slows
  // them and this alike, so the latency bounds scale with it (never below the idle machine's).
  const blockedMs = await syncCompareMs()
  t.comment(`one synchronous cost-12 comparison: ${round(blockedMs)} ms`)
  const shedBound = Math.max(1000, 2 * blockedMs) // queueing behind QUEUE / CONCURRENCY hashes would be 4 x or more
  const attempts: Flood[] = []
  for (let i = 0; i < 3; i++) {
    const f = await flood(app, user)
    attempts.push(f)
    t.comment(`attempt ${i + 1}: ${JSON.stringify(f.figures)}`)

    const statuses = f.results.map((r) => r.value.statusCode)
    t.same(statuses.filter((s) => s !== 200 && s !== 503), [], `attempt ${i + 1}: only 200 or 503, never a 500`)
    const { admitted, shed } = f.figures as { admitted: number; shed: number }
    t.ok(admitted >= CONCURRENCY && admitted <= CONCURRENCY + QUEUE + CONCURRENCY, `admitted about concurrency + queue (${admitted})`)
    t.ok(shed >= BURST - (CONCURRENCY + QUEUE + CONCURRENCY), `the excess was shed (${shed})`)
    const shedOne = f.results.find((r) => r.value.statusCode === 503)!.value
    t.same(shedOne.json(), { detail: 'Server is busy, retry later', error_code: 'SERVICE_UNAVAILABLE', status_code: 503 })
    t.equal(shedOne.headers['retry-after'], '1', 'Retry-After on the 503')
    t.same([...f.cheapStatuses], [200], '/health and /me answered 200 throughout')
    t.ok(f.health.length >= 5, `/health was probed through the flood (${f.health.length} times)`)
    if (f.loopP99 < 50 && percentile(f.me, 99) < 100) break
  }

  const best = attempts.reduce((a, b) => (b.loopP99 < a.loopP99 ? b : a))
  // Bounds that fail hard if hashing ran on the loop: each hash would block it for blockedMs (p99 about that),
  // and a cheap request would wait behind a queue of them (several times that).
  const loopBound = Math.max(100, blockedMs / 2)
  const healthBound = Math.max(250, blockedMs)
  const meBound = Math.max(300, blockedMs)
  // A latency, so judged on the quietest flood too (a stalled machine stalls a 503 as much as anything).
  t.ok(best.figures.shedMaxMs! < shedBound, `503s answered without queueing (max ${best.figures.shedMaxMs} ms < ${round(shedBound)}, p50 ${best.figures.shedP50Ms} ms)`)
  t.ok(best.loopP99 < loopBound, `event-loop delay p99 < ${round(loopBound)} ms (${best.figures.eventLoopP99Ms} ms)`)
  t.ok(percentile(best.health, 99) < healthBound, `/health p99 < ${round(healthBound)} ms (${best.figures.healthP99Ms} ms)`)
  t.ok(percentile(best.me, 99) < meBound, `/me p99 < ${round(meBound)} ms (${best.figures.meP99Ms} ms)`)

  // Over as soon as the flood is: the next sign-in is admitted.
  t.equal((await signin(app, user.email, PASSWORD)).statusCode, 200, 'admitted again after the flood')
})

t.test('control: the instrument sees a loop that hashing blocks', async (t) => {
  const hash = await bcrypt.hash('x', 12)
  const delay = monitorEventLoopDelay({ resolution: 10 })
  delay.enable()
  for (let i = 0; i < 3; i++) {
    bcrypt.compareSync('x', hash) // the anti-pattern S-28 forbids, here on purpose
    await new Promise((r) => setTimeout(r, 20))
  }
  delay.disable()
  t.ok(delay.max / 1e6 > 100, `a synchronous cost-12 comparison stalls the loop (${round(delay.max / 1e6)} ms)`)
})

t.test('sign-up is bounded by the same limit', async (t) => {
  const app = await build(t, { BCRYPT_COST: '12', BCRYPT_MAX_CONCURRENCY: '1', BCRYPT_MAX_QUEUE: '0' })
  const results = await Promise.all(
    Array.from({ length: 4 }, (_, i) =>
      inject(app, {
        method: 'POST',
        url: '/api/auth/signup',
        payload: { email: `flood-${i}-${Date.now()}@example.com`, password: PASSWORD },
      }),
    ),
  )
  t.same(results.map((r) => r.statusCode).sort(), [201, 503, 503, 503], 'one hash at a time, nothing waits')
})
