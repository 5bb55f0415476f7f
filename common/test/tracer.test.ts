/**
 * The tracer of tracer.ts against the OpenTelemetry SDK it stands in for:
 * the same calls on its spans and on the SDK's give the same OTLP JSON, byte
 * for byte (JsonTraceSerializer's for the SDK's spans, SpanQueue's batch for
 * ours), the same diagnostics, and the same sampling and context.
 */
import t from 'tap'
import { context, diag, DiagLogLevel, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Attributes, type HrTime, type Link, type Span, type SpanContext, type SpanOptions, type Tracer } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { suppressTracing, TraceState, type ExportResult } from '@opentelemetry/core'
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { InMemorySpanExporter, ParentBasedSampler, AlwaysOnSampler, SimpleSpanProcessor, TracerProvider, type IdGenerator } from '@opentelemetry/sdk-trace'
import { RecordingTracer, type SpanSampling } from '../src/tracer.js'
import { SpanQueue, type BatchSender } from '../src/span-queue.js'
import { headDecision } from '../src/tracing-runtime.js'

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())

/** A seeded generator (mulberry32): each scenario the same on both sides, and again on a rerun. */
function random(seed: number) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let r = Math.imul(a ^ (a >>> 15), 1 | a)
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number) => Math.floor(next() * n)
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!
  const hex = (digits: number) => Array.from({ length: digits }, () => '0123456789abcdef'[int(16)]).join('')
  return { next, int, pick, hex }
}

/** Ids handed out in the same order to both tracers (each asks for the span id first, then a new trace's id). */
class Ids {
  constructor(private readonly r: ReturnType<typeof random>) {}
  spanIds: string[] = []
  traceIds: string[] = []
  span(): string {
    return this.spanIds.shift() ?? this.r.hex(16)
  }
  trace(): string {
    return this.traceIds.shift() ?? this.r.hex(32)
  }
}

class Capture implements BatchSender {
  bodies: Uint8Array[] = []
  counts: number[] = []
  send(body: Uint8Array, spans: number, done: (result: ExportResult) => void): void {
    this.bodies.push(body)
    this.counts.push(spans)
    done({ code: 0 })
  }
  forceFlush = () => Promise.resolve()
  shutdown = () => Promise.resolve()
}

const circular: Record<string, unknown> = {}
circular.self = circular
const VALUES: unknown[] = [
  'a', '', 'ünïcødé ✓ 𝄞', '\u0000"\\\n</script>', '\ud800 lone', 0, -1, 1.5, -0, NaN, Infinity, 2 ** 53, 2 ** 64, true, false, null, undefined,
  [1, 2, 3], ['a', null, 'b'], [1, 'a'], [], [true, undefined], { nested: { x: 1, y: [1, 'z'] } }, new Uint8Array([1, 2, 250]),
  () => 1, 10n, circular, new Date(0), Symbol('s'),
]
const STATUS = [SpanStatusCode.UNSET, SpanStatusCode.OK, SpanStatusCode.ERROR]
const KINDS = [undefined, SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER]

/** One scenario's calls, made on whichever tracer is passed: the same sequence for the same seed. */
function scenario(seed: number, tracer: Tracer, ids: Ids): void {
  const r = random(seed)
  const t0 = 1_700_000_000 + r.int(1_000_000)
  let clock = r.int(1e9)
  const at = (): HrTime => {
    clock += r.int(5_000_000)
    return [t0 + Math.floor(clock / 1e9), clock % 1e9]
  }
  const key = () => (r.next() < 0.03 ? '' : `k${r.int(r.next() < 0.1 ? 200 : 12)}`)
  const value = () => r.pick(VALUES)
  const attributes = (n: number): Attributes => {
    const a: Record<string, unknown> = {}
    for (let i = 0; i < n; i++) a[key()] = value()
    return a as Attributes
  }
  const spanContext = (): SpanContext => ({
    traceId: r.hex(32),
    spanId: r.hex(16),
    traceFlags: r.pick([TraceFlags.NONE, TraceFlags.SAMPLED]),
    isRemote: r.pick([true, false, undefined]),
    ...(r.next() < 0.5 ? { traceState: new TraceState(`v${r.int(9)}=${r.hex(4)},other=x`) } : {}),
  })
  const link = (): Link => ({ context: spanContext(), ...(r.next() < 0.7 ? { attributes: attributes(r.int(r.next() < 0.1 ? 140 : 4)) } : {}) })
  const spans = 1 + r.int(4)
  for (let s = 0; s < spans; s++) {
    const parentKind = r.int(4)
    const parent = parentKind === 0 ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, { ...spanContext(), traceFlags: TraceFlags.SAMPLED, isRemote: parentKind === 1 })
    const options: SpanOptions = { startTime: at() }
    const kind = r.pick(KINDS)
    if (kind !== undefined) options.kind = kind
    if (r.next() < 0.6) options.attributes = attributes(r.int(r.next() < 0.1 ? 150 : 6))
    if (r.next() < 0.3) options.links = Array.from({ length: r.next() < 0.1 ? 130 : r.int(3) }, link)
    if (parentKind !== 0 && r.next() < 0.1) options.root = true
    ids.spanIds.push(r.hex(16))
    ids.traceIds.push(r.hex(32))
    const span = tracer.startSpan(`span ${r.hex(3)}`, options, parent)
    const operations = r.int(r.next() < 0.1 ? 200 : 12)
    for (let i = 0; i < operations; i++) call(span)
    if (r.next() < 0.1) {
      span.end(r.next() < 0.5 ? at() : ([t0 - 10, 0] as HrTime)) // the second: before its start
    } else {
      span.end(at())
    }
    // After the end: ignored, with a warning each; a second end an error.
    if (r.next() < 0.2) {
      call(span)
      span.end(at())
    }
  }

  function call(span: Span): void {
    switch (r.int(10)) {
      case 0:
      case 1:
        span.setAttribute(key(), value() as string)
        break
      case 2:
        span.setAttributes(attributes(r.int(5)))
        break
      case 3: {
        const which = r.int(3)
        if (which === 0) span.addEvent(`event ${r.int(5)}`, at())
        else if (which === 1) span.addEvent(`event ${r.int(5)}`, attributes(r.int(r.next() < 0.1 ? 140 : 4)), at())
        else span.addEvent(`event ${r.int(5)}`, attributes(r.int(3)), [t0, r.int(1e9)])
        break
      }
      case 4:
        // Past 128 events the oldest go.
        if (r.next() < 0.05) for (let i = 0; i < 130; i++) span.addEvent('many', at())
        else span.addEvent('one', at())
        break
      case 5:
        if (r.next() < 0.5) span.addLink(link())
        else span.addLinks(Array.from({ length: r.next() < 0.05 ? 130 : r.int(3) }, link))
        break
      case 6: {
        const message = r.pick(['failed', '', undefined, 42 as unknown as string])
        span.setStatus(message === undefined ? { code: r.pick(STATUS) } : { code: r.pick(STATUS), message })
        break
      }
      case 7:
        span.updateName(`renamed ${r.int(9)}`)
        break
      case 8: {
        const e = r.pick<unknown>([
          // Stacks fixed: each side's own would name its own call sites.
          Object.assign(new Error('boom'), { code: 'ECONNRESET', stack: 'Error: boom\n    at here (x.js:1:1)' }),
          Object.assign(new TypeError('bad'), { stack: 'TypeError: bad' }),
          'just text',
          { message: 'plain' },
          {},
          Object.assign(new Error('coded'), { code: 503, stack: undefined }),
        ])
        span.recordException(e as Error, at())
        break
      }
      default:
        span.setAttribute(`k${r.int(3)}`, r.pick(['x', 1, true]))
    }
  }
}

/** The diagnostics a run emits, by level, in order. */
function captureDiagnostics(run: () => void | Promise<void>): Promise<string[]> {
  const messages: string[] = []
  const logger = (level: string) => (message: string) => messages.push(`${level}: ${message}`)
  diag.setLogger({ error: logger('error'), warn: logger('warn'), info: logger('info'), debug: logger('debug'), verbose: () => {} }, DiagLogLevel.DEBUG)
  return Promise.resolve(run()).then(
    () => {
      diag.disable()
      return messages
    },
    (err: unknown) => {
      diag.disable()
      throw err
    },
  )
}

function sdkSide(ids: Ids) {
  const exporter = new InMemorySpanExporter()
  const idGenerator: IdGenerator = { generateSpanId: () => ids.span(), generateTraceId: () => ids.trace() }
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'parity' }),
    idGenerator,
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  })
  return {
    tracer: provider.getTracer('tollgate'),
    body: async () => {
      await provider.forceFlush()
      return Buffer.from(JsonTraceSerializer.serializeRequest(exporter.getFinishedSpans())!)
    },
  }
}

function ownSide(ids: Ids, bufferBytes?: number) {
  const capture = new Capture()
  const queue = new SpanQueue(capture, { serviceName: 'parity', scopeName: 'tollgate', scheduledDelayMillis: 60_000, ...(bufferBytes ? { bufferBytes } : {}) })
  const head = headDecision('parentbased_always_on', 1)
  const sampling: SpanSampling = {
    withParent: (traceId, sampled) => head.withParent(traceId, sampled),
    newTrace: () => ({ traceId: ids.trace(), sampled: true }),
    spanId: () => ids.span(),
  }
  return {
    tracer: new RecordingTracer(sampling, queue),
    bodies: async () => {
      await queue.forceFlush()
      return capture.bodies.map((b) => Buffer.from(b))
    },
  }
}

function firstDifference(a: string, b: string): string {
  let i = 0
  while (i < a.length && a[i] === b[i]) i++
  return `at ${i}:\n  sdk: ${a.slice(Math.max(0, i - 80), i + 80)}\n  own: ${b.slice(Math.max(0, i - 80), i + 80)}`
}

t.test("the same calls give the SDK's OTLP JSON, byte for byte, and its diagnostics", async (t) => {
  const scenarios = 400
  let spans = 0
  for (let seed = 1; seed <= scenarios; seed++) {
    const sdkIds = new Ids(random(seed * 7919))
    const ownIds = new Ids(random(seed * 7919))
    const sdk = sdkSide(sdkIds)
    const own = ownSide(ownIds)
    const sdkDiagnostics = await captureDiagnostics(() => scenario(seed, sdk.tracer, sdkIds))
    let ownBodies: Buffer[] = []
    const ownDiagnostics = await captureDiagnostics(async () => {
      scenario(seed, own.tracer, ownIds)
      ownBodies = await own.bodies()
    })
    const expected = await sdk.body()
    // One batch: a scenario's spans are fewer than a batch and fit the buffer.
    if (ownBodies.length !== 1 || !ownBodies[0]!.equals(expected)) {
      t.fail(`seed ${seed}: ${ownBodies.length} batches; ${firstDifference(expected.toString(), ownBodies.map((b) => b.toString()).join(' | '))}`)
      return
    }
    if (JSON.stringify(ownDiagnostics) !== JSON.stringify(sdkDiagnostics)) {
      t.same(ownDiagnostics, sdkDiagnostics, `seed ${seed}: the same diagnostics`)
      return
    }
    spans += (JSON.parse(expected.toString()) as { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] }).resourceSpans[0]!.scopeSpans[0]!.spans.length
  }
  t.ok(spans > scenarios, `${scenarios} scenarios, ${spans} spans, each body equal to JsonTraceSerializer's`)
})

t.test("a batch split for the buffer's room is still the SDK's text, in two requests", async (t) => {
  const seed = 12
  const sdk = sdkSide(new Ids(random(1)))
  const own = ownSide(new Ids(random(1)), 600)
  for (let i = 0; i < 3; i++) {
    const attributes = { 'db.query.text': 'SELECT ' + 'x'.repeat(i === 1 ? 2000 : 60) }
    for (const side of [sdk, own]) side.tracer.startSpan(`q${i}`, { attributes, startTime: [seed, 0] }, ROOT_CONTEXT).end([seed, 5])
  }
  const bodies = await own.bodies()
  t.equal(bodies.length, 3, 'the span larger than the buffer went alone, after the one before it')
  const spansOf = (b: Buffer) => (JSON.parse(b.toString()) as { resourceSpans: { scopeSpans: { spans: { name: string }[] }[] }[] }).resourceSpans[0]!.scopeSpans[0]!.spans
  t.same(bodies.flatMap(spansOf), spansOf(await sdk.body()), 'the same spans, in order')
})

t.test('sampling and context: as the SDK decides, without a recorded span when not sampled', async (t) => {
  const ids = new Ids(random(5))
  const own = ownSide(ids)
  const tracer = own.tracer
  const traceId = 'a'.repeat(32)
  const traceState = new TraceState('vendor=1')
  // A parent not sampled: a context to pass on, recording nothing, with a span id of its own and the parent's trace state.
  const unsampled = tracer.startSpan('child', {}, trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: 'b'.repeat(16), traceFlags: TraceFlags.NONE, traceState }))
  t.notOk(unsampled.isRecording())
  t.equal(unsampled.spanContext().traceId, traceId)
  t.equal(unsampled.spanContext().traceFlags, TraceFlags.NONE)
  t.not(unsampled.spanContext().spanId, 'b'.repeat(16))
  t.equal(unsampled.spanContext().traceState, traceState)
  unsampled.end()
  // Tracing suppressed (an export's own calls): the invalid context.
  const suppressed = tracer.startSpan('x', {}, suppressTracing(ROOT_CONTEXT))
  t.notOk(suppressed.isRecording())
  t.notOk(trace.isSpanContextValid(suppressed.spanContext()))
  // A sampled parent: a recorded child in its trace.
  const parentContext = { traceId, spanId: 'c'.repeat(16), traceFlags: TraceFlags.SAMPLED, isRemote: true, traceState }
  const child = tracer.startSpan('child', {}, trace.setSpanContext(ROOT_CONTEXT, parentContext))
  t.ok(child.isRecording())
  t.equal(child.spanContext().traceId, traceId)
  t.equal(child.spanContext().traceFlags, TraceFlags.SAMPLED)
  t.equal(child.spanContext().traceState, traceState, "the parent's trace state")
  // root: true ignores the parent.
  const root = tracer.startSpan('root', { root: true }, trace.setSpanContext(ROOT_CONTEXT, parentContext))
  t.not(root.spanContext().traceId, traceId)
  // A trace id decided ahead (a request's head decision) is used once, by the next new trace.
  tracer.nextTraceId = 'd'.repeat(32)
  t.equal(tracer.startSpan('first', {}, ROOT_CONTEXT).spanContext().traceId, 'd'.repeat(32))
  t.not(tracer.startSpan('second', {}, ROOT_CONTEXT).spanContext().traceId, 'd'.repeat(32))
  // startActiveSpan: the span is active inside, with each of its call forms.
  t.equal(tracer.startActiveSpan('a', (span) => trace.getActiveSpan() === span), true)
  t.equal(tracer.startActiveSpan('b', { kind: SpanKind.CLIENT }, (span) => trace.getActiveSpan() === span), true)
  t.equal(
    tracer.startActiveSpan('c', {}, trace.setSpan(ROOT_CONTEXT, child), (span) => trace.getActiveSpan() === span && span.spanContext().traceId === traceId),
    true,
  )
})

t.test("times without inputs: the SDK's way, a wall-clock start and monotonic durations", async (t) => {
  const own = ownSide(new Ids(random(9)))
  const before = Date.now()
  const span = own.tracer.startSpan('timed', {}, ROOT_CONTEXT)
  const after = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 20))
  span.addEvent('mid')
  span.end()
  const [body] = await own.bodies()
  const s = (JSON.parse(body!.toString()) as { resourceSpans: { scopeSpans: { spans: { startTimeUnixNano: string; endTimeUnixNano: string; events: { timeUnixNano: string }[] }[] }[] }[] })
    .resourceSpans[0]!.scopeSpans[0]!.spans[0]!
  const start = BigInt(s.startTimeUnixNano)
  const mid = BigInt(s.events[0]!.timeUnixNano)
  const end = BigInt(s.endTimeUnixNano)
  t.ok(start >= BigInt(before) * 1_000_000n && start <= BigInt(after) * 1_000_000n, 'the start is the wall clock then')
  t.ok(mid >= start + 15_000_000n && end >= mid, 'the event and the end after it, by the monotonic clock')
})

t.test('the limits and the edges of the fast paths: as the SDK records and writes them', async (t) => {
  const sdk = sdkSide(new Ids(random(21)))
  const own = ownSide(new Ids(random(21)))
  const calls = (tracer: Tracer) => {
    // Set one by one past the 128-attribute limit (12 dropped, one warning), then one overwritten at it (kept), and an
    // empty key (invalid, not counted as dropped).
    const many = tracer.startSpan('many', { startTime: [1_700_000_000, 1] }, ROOT_CONTEXT)
    for (let i = 0; i < 140; i++) many.setAttribute(`k${i}`, i % 3 === 0 ? `v${i}` : i % 3 === 1 ? i + 0.5 : i % 2 === 0)
    many.setAttribute('k5', 'overwritten at the limit')
    many.setAttribute('', 'an empty key')
    many.end([1_700_000_001, 999_999_999])
    // Starting attributes: exactly at the limit (undefined ones left out), one over it, and with values not simple (an
    // array, null: kept) under an empty key (dropped). Times at the edges of the nanoseconds' text.
    const at = Object.fromEntries(Array.from({ length: 128 }, (_, i) => [`a${i}`, i]))
    tracer.startSpan('at the limit', { attributes: { ...at, skipped: undefined }, startTime: [1, 0] }, ROOT_CONTEXT).end([1, 1])
    tracer.startSpan('over it', { attributes: { ...at, over: 'x' }, startTime: [0, 5] }, ROOT_CONTEXT).end([0, 6])
    tracer.startSpan('mixed', { attributes: { s: 's', list: [1, 2], '': 'empty key', n: null } as unknown as Attributes, startTime: [2, 1e9 - 1] }, ROOT_CONTEXT).end([3, 0])
  }
  const sdkDiagnostics = await captureDiagnostics(() => calls(sdk.tracer))
  let ownBodies: Buffer[] = []
  const ownDiagnostics = await captureDiagnostics(async () => {
    calls(own.tracer)
    ownBodies = await own.bodies()
  })
  const expected = await sdk.body()
  t.equal(ownBodies.length, 1)
  t.ok(ownBodies[0]!.equals(expected), `the SDK's bytes; ${firstDifference(expected.toString(), ownBodies[0]!.toString())}`)
  t.same(ownDiagnostics, sdkDiagnostics, 'the same diagnostics')
  const spans = (JSON.parse(expected.toString()) as { resourceSpans: { scopeSpans: { spans: { attributes: unknown[]; droppedAttributesCount: number }[] }[] }[] }).resourceSpans[0]!
    .scopeSpans[0]!.spans
  t.same(
    spans.map((s) => [s.attributes.length, s.droppedAttributesCount]),
    [
      [128, 12],
      [128, 0],
      [128, 1],
      [3, 1],
    ],
    'the limits were reached',
  )
})
