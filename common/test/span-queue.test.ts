/**
 * SpanQueue: the BatchSpanProcessor's rules for spans written as OTLP JSON
 * when they end (batch size, schedule, queue limit and its warning, one
 * export in flight, the export timeout, flush and shutdown), on a controlled
 * clock, each batch's bytes read back as JSON.
 */
import t from 'tap'
import { createClock } from '@sinonjs/fake-timers'
import { diag, DiagLogLevel, ROOT_CONTEXT } from '@opentelemetry/api'
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { RecordingTracer, type SpanSampling } from '../src/tracer.js'
import { SpanQueue, type BatchSender, type SpanQueueOptions } from '../src/span-queue.js'

/** A sender that answers when told to: batches in flight are visible. */
class Sender implements BatchSender {
  sent: { names: string[]; spans: number; done: (result: ExportResult) => void }[] = []
  shutdowns = 0
  send(body: Uint8Array, spans: number, done: (result: ExportResult) => void): void {
    const request = JSON.parse(Buffer.from(body).toString()) as { resourceSpans: { scopeSpans: { spans: { name: string }[] }[] }[] }
    const names = request.resourceSpans[0]!.scopeSpans[0]!.spans.map((s) => s.name)
    this.sent.push({ names, spans, done })
  }
  /** Answer the oldest unanswered batch. */
  answer(result: ExportResult = { code: ExportResultCode.SUCCESS }): void {
    const batch = this.sent.find((b) => !(b as { answered?: boolean }).answered)!
    ;(batch as { answered?: boolean }).answered = true
    batch.done(result)
  }
  forceFlush = async () => {
    // What is in flight is answered by the test; here, a turn for it to happen.
    await new Promise((resolve) => setImmediate(resolve))
  }
  shutdown = async () => {
    this.shutdowns++
  }
}

function setup(options: Partial<SpanQueueOptions> = {}) {
  const clock = createClock()
  const sender = new Sender()
  const queue = new SpanQueue(sender, {
    serviceName: 'queue',
    scopeName: 'tollgate',
    scheduledDelayMillis: 5000,
    timers: { setTimeout: (fn, ms) => clock.setTimeout(fn, ms), clearTimeout: (h) => clock.clearTimeout(h as number) },
    ...options,
  })
  let n = 0
  const sampling: SpanSampling = {
    withParent: () => true,
    newTrace: () => ({ traceId: (++n).toString(16).padStart(32, '0'), sampled: true }),
    spanId: () => (++n).toString(16).padStart(16, '0'),
  }
  const tracer = new RecordingTracer(sampling, queue)
  let named = 0
  const span = (attributes = {}) => tracer.startSpan(`s${named++}`, { attributes }, ROOT_CONTEXT).end()
  return { clock, sender, queue, span }
}

function diagnostics(t: { teardown(fn: () => void): void }): string[] {
  const messages: string[] = []
  const log = (level: string) => (message: string) => messages.push(`${level}: ${message}`)
  diag.setLogger({ error: log('error'), warn: log('warn'), info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.WARN)
  t.teardown(() => diag.disable())
  return messages
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `s${from + i}`)

t.test('a batch goes when 512 spans are in, the rest after the schedule delay', async (t) => {
  const { clock, sender, span } = setup()
  for (let i = 0; i < 511; i++) span()
  t.equal(sender.sent.length, 0, 'not yet: fewer than a batch, and the delay has not passed')
  span()
  t.equal(sender.sent.length, 1, 'the 512th span sends the batch')
  t.same(sender.sent[0]!.names, range(0, 512), 'every span, in the order they ended')
  t.equal(sender.sent[0]!.spans, 512)
  sender.answer()
  for (let i = 0; i < 3; i++) span()
  clock.tick(4999)
  t.equal(sender.sent.length, 1, 'the schedule delay has not passed')
  clock.tick(1)
  t.equal(sender.sent.length, 2)
  t.same(sender.sent[1]!.names, range(512, 515), 'the rest after the delay')
})

t.test('one export in flight: the next waits for its answer, then goes at once', async (t) => {
  const { sender, span } = setup()
  for (let i = 0; i < 512 * 2 + 10; i++) span()
  t.equal(sender.sent.length, 1, 'one in flight')
  sender.answer()
  t.equal(sender.sent.length, 2, 'the second full batch right after the answer')
  t.same(sender.sent[1]!.names, range(512, 1024))
  sender.answer()
  t.equal(sender.sent.length, 2, 'the last ten wait for the schedule')
})

t.test('at 2,048 spans waiting the rest are dropped, then counted in one warning', async (t) => {
  const messages = diagnostics(t)
  const { sender, span } = setup()
  for (let i = 0; i < 2048 + 512 + 5; i++) span() // one batch in flight (out of the queue), 2,048 waiting, 5 dropped
  t.equal(sender.sent.length, 1)
  t.same(messages, [], 'no warning yet')
  sender.answer() // 512 leave the queue
  span()
  t.same(messages, ['warn: Dropped 5 spans because maxQueueSize reached'], 'the warning when a span is taken again')
  const names = new Set(sender.sent.flatMap((b) => b.names))
  for (let i = 0; i < 3; i++) sender.answer()
  const all = sender.sent.flatMap((b) => b.names)
  t.equal(all.length, 2048 + 512, 'every span kept was sent')
  t.ok(names.has('s0'))
  t.notOk(all.includes(`s${2048 + 512}`), 'the first dropped span was not sent')
  t.notOk(all.includes(`s${2048 + 512 + 4}`), 'nor the last')
})

t.test('a failed export is a diagnostic, and later batches still go', async (t) => {
  const messages = diagnostics(t)
  const { clock, sender, span } = setup()
  span()
  clock.tick(5000)
  sender.answer({ code: ExportResultCode.FAILED, error: new Error('collector said no') })
  t.match(messages.join('\n'), /collector said no/)
  span()
  clock.tick(5000)
  t.equal(sender.sent.length, 2)
  t.same(sender.sent[1]!.names, ['s1'])
})

t.test('an export never answered fails after the export timeout, and the next batch goes', async (t) => {
  const messages = diagnostics(t)
  const { clock, sender, span } = setup({ exportTimeoutMillis: 30000 })
  for (let i = 0; i < 1024; i++) span()
  t.equal(sender.sent.length, 1)
  clock.tick(29999)
  t.equal(sender.sent.length, 1)
  clock.tick(1)
  t.equal(sender.sent.length, 2, 'the next batch after the timeout')
  t.match(messages.join('\n'), /Timeout/)
  sender.answer() // the late answer of the first changes nothing
  sender.answer()
  t.equal(sender.sent.length, 2)
})

t.test('a flush sends everything and waits for the answers; the shutdown then takes no more spans', async (t) => {
  const { sender, queue, span } = setup()
  for (let i = 0; i < 600; i++) span()
  let flushed = false
  const flush = queue.forceFlush().then(() => (flushed = true))
  await new Promise((resolve) => setImmediate(resolve))
  t.notOk(flushed, 'waiting for the batch in flight')
  sender.answer()
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(sender.sent.length, 2, 'the rest sent without waiting for the schedule')
  t.notOk(flushed)
  sender.answer()
  await flush
  t.same(sender.sent.flatMap((b) => b.names), range(0, 600))
  span()
  const shutdown = queue.shutdown()
  await new Promise((resolve) => setImmediate(resolve))
  sender.answer()
  await shutdown
  t.equal(sender.shutdowns, 1)
  t.same(sender.sent[2]!.names, ['s600'], 'the shutdown sent what was left')
  span()
  await queue.forceFlush()
  t.equal(sender.sent.length, 3, 'nothing after the shutdown')
  t.equal(queue.shutdown(), queue.shutdown(), 'once')
})

t.test("a span that would not fit the buffer's room starts the next batch; one larger than the buffer goes alone", async (t) => {
  const { clock, sender, span } = setup({ bufferBytes: 4096 })
  span({ text: 'a'.repeat(1000) }) // s0, about 1,300 characters: room for it at 3 bytes each
  span({ text: 'b'.repeat(300) }) // s1 fits after it
  span({ text: 'c'.repeat(2000) }) // s2 could need more than the whole buffer: s0 and s1 go, then s2 alone
  span({ text: 'ü€𝄞'.repeat(20) }) // s3 in the buffer again, after the schedule
  sender.answer()
  sender.answer()
  clock.tick(5000) // the schedule starts again once no export is in flight
  sender.answer()
  t.same(sender.sent.map((b) => b.names), [['s0', 's1'], ['s2'], ['s3']], 'every span once, in order, each body valid JSON')
})
