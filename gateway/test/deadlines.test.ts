/**
 * The forwarder's upstream deadlines on one timer (proxy/deadlines.ts), on a
 * controlled clock: every request that has not left by its deadline expires
 * exactly then (never a millisecond early, never missed), in order, once; one
 * that left never does; an empty list holds no timer; and under steady load
 * the timer is set about once per timeout rather than once per request.
 */
import t from 'tap'
import { createClock } from '@sinonjs/fake-timers'
import { Deadlines, type DeadlineTimers, type Due } from '../src/proxy/deadlines.js'

function clockTimers() {
  const clock = createClock(1_000_000)
  let sets = 0
  const timers: DeadlineTimers = {
    setTimeout: (callback, ms) => {
      sets++
      return clock.setTimeout(callback, ms)
    },
    clearTimeout: (handle) => clock.clearTimeout(handle as never),
    now: () => clock.now,
  }
  return { clock, timers, sets: () => sets }
}

class Request implements Due {
  dueAt = 0
  prevDue: Due | null = null
  nextDue: Due | null = null
  waiting = false
  expiredAt: number[] = []
  constructor(
    readonly name: string,
    private readonly now: () => number,
    private readonly onExpire: (r: Request) => void = () => {},
  ) {}
  expire(): void {
    this.expiredAt.push(this.now())
    this.onExpire(this)
  }
}

t.test('a request expires at its deadline, not a millisecond before', async (t) => {
  const { clock, timers } = clockTimers()
  const deadlines = new Deadlines(500, timers)
  const r = new Request('r', timers.now)
  deadlines.add(r)
  clock.tick(499)
  t.same(r.expiredAt, [], 'not at 499 ms')
  clock.tick(1)
  t.same(r.expiredAt, [1_000_500], 'at 500 ms')
  t.equal(r.waiting, false, 'it left the list')
  t.equal(deadlines.size, 0)
  clock.tick(10_000)
  t.equal(r.expiredAt.length, 1, 'once')
  t.equal(clock.countTimers(), 0, 'no timer left behind')
})

t.test('a request that left (answered) never expires; an empty list holds no timer', async (t) => {
  const { clock, timers } = clockTimers()
  const deadlines = new Deadlines(500, timers)
  const r = new Request('r', timers.now)
  deadlines.add(r)
  clock.tick(200)
  deadlines.remove(r)
  t.equal(clock.countTimers(), 0, 'the timer was cleared with the last request')
  deadlines.remove(r)
  clock.tick(10_000)
  t.same(r.expiredAt, [])
  t.equal(r.prevDue, null)
  t.equal(r.nextDue, null, 'its links are cut (nothing it held stays reachable through the list)')
})

t.test('the first leaving early: the later ones still expire at their own deadlines', async (t) => {
  const { clock, timers } = clockTimers()
  const deadlines = new Deadlines(1000, timers)
  const a = new Request('a', timers.now)
  const b = new Request('b', timers.now)
  const c = new Request('c', timers.now)
  deadlines.add(a)
  clock.tick(100)
  deadlines.add(b)
  clock.tick(100)
  deadlines.add(c)
  deadlines.remove(a)
  clock.tick(799) // 999 ms after a started: the timer armed for a fires, finds b not due, arms again
  t.same([b.expiredAt, c.expiredAt], [[], []])
  clock.tick(101) // b's deadline, 1,000 ms after it started
  t.same(b.expiredAt, [1_001_100])
  t.same(c.expiredAt, [])
  deadlines.remove(c) // the one in the middle of nothing: the list empties
  clock.tick(5_000)
  t.same(c.expiredAt, [])
})

t.test('random arrivals and answers: every request left waiting expires exactly at its deadline, in order', async (t) => {
  const { clock, timers } = clockTimers()
  const timeoutMs = 250
  const deadlines = new Deadlines(timeoutMs, timers)
  let seed = 7
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
  const order: string[] = []
  const all: Array<{ r: Request; startedAt: number; answeredAt: number | null }> = []
  const open: typeof all = []
  for (let i = 0; i < 20_000; i++) {
    clock.tick(Math.floor(random() * 3))
    if (open.length > 0 && random() < 0.45) {
      // An answer arrives for some open request (not necessarily the oldest).
      const entry = open.splice(Math.floor(random() * open.length), 1)[0]!
      if (entry.r.waiting) {
        deadlines.remove(entry.r)
        entry.answeredAt = clock.now
      }
    } else {
      const r = new Request(`r${i}`, timers.now, (x) => order.push(x.name))
      const entry = { r, startedAt: clock.now, answeredAt: null }
      deadlines.add(r)
      all.push(entry)
      open.push(entry)
    }
  }
  clock.tick(timeoutMs + 1)
  let early = 0
  let late = 0
  let missed = 0
  let twice = 0
  let expiredAfterAnswer = 0
  for (const { r, startedAt, answeredAt } of all) {
    if (answeredAt !== null) {
      if (r.expiredAt.length > 0) expiredAfterAnswer++
      continue
    }
    if (r.expiredAt.length === 0) missed++
    else if (r.expiredAt.length > 1) twice++
    else if (r.expiredAt[0]! < startedAt + timeoutMs) early++
    else if (r.expiredAt[0]! > startedAt + timeoutMs) late++
  }
  t.same({ early, late, missed, twice, expiredAfterAnswer }, { early: 0, late: 0, missed: 0, twice: 0, expiredAfterAnswer: 0 })
  const expected = all.filter((e) => e.answeredAt === null).map((e) => e.r.name)
  t.ok(expected.length > 1000, `${expected.length} requests expired`)
  t.same(order, expected, 'in the order they started')
  t.equal(deadlines.size, 0)
  t.equal(clock.countTimers(), 0)
})

t.test('under steady load the timer is set about once per timeout, not once per request', async (t) => {
  const { clock, timers, sets } = clockTimers()
  const deadlines = new Deadlines(1000, timers)
  const inFlight: Request[] = []
  // 50 requests open at any time, each answered 5 ms after it started: 10,000 requests over one second.
  for (let i = 0; i < 100_000; i++) {
    const r = new Request(`r${i}`, timers.now)
    deadlines.add(r)
    inFlight.push(r)
    if (inFlight.length > 50) deadlines.remove(inFlight.shift()!)
    if (i % 10 === 0) clock.tick(1)
  }
  t.ok(sets() <= 20, `${sets()} timers set for 100,000 requests over ${100_000 / 10_000} s`)
  t.ok(inFlight.every((r) => r.expiredAt.length === 0), 'none expired')
})

t.test('a request added while others expire (an expiry that starts another) gets its own full deadline', async (t) => {
  const { clock, timers } = clockTimers()
  const deadlines = new Deadlines(100, timers)
  let retry: Request | null = null
  const first = new Request('first', timers.now, () => {
    retry = new Request('retry', timers.now)
    deadlines.add(retry)
  })
  deadlines.add(first)
  clock.tick(100)
  t.same(first.expiredAt, [1_000_100])
  t.ok(retry)
  clock.tick(99)
  t.same(retry!.expiredAt, [])
  clock.tick(1)
  t.same(retry!.expiredAt, [1_000_200])
})
