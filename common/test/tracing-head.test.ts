/**
 * The head decision (tracing-runtime.ts): a request's sampling is decided before
 * any span exists, so an unsampled one costs no SDK call and no span object.
 * It must be the configured sampler's decision exactly, for every sampler and
 * ratio (a new trace's decided from its id's words, not its text), and a
 * sampled new trace must be started under the very id that was decided on.
 */
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { isValidTraceId, ROOT_CONTEXT, SamplingDecision, SpanKind, trace, TraceFlags, type Context, type Span } from '@opentelemetry/api'
import { Type } from 'typebox'
import { loadConfig, startTracing, TRACES_SAMPLERS, tracingConfig } from '../src/index.js'
import { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler, TraceIdRatioBasedSampler, type Sampler } from '@opentelemetry/sdk-trace'
import { headDecision, NewTraces, writeHex32 } from '../src/tracing-runtime.js'

const schema = Type.Object(tracingConfig)
const hex = (bytes: number) => randomBytes(bytes).toString('hex')

/** What TraceIdRatioBasedSampler accumulates from an id's text: its four 8-digit words XORed. */
const accumulated = (traceId: string) =>
  [0, 8, 16, 24].reduce((acc, i) => (acc ^ Number.parseInt(traceId.slice(i, i + 8), 16)) >>> 0, 0)
/** A word's 8 hex digits as Buffer writes them. */
const hex32 = (w: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(w)
  return b.toString('hex')
}
const idOf = (words: number[]) => words.map(hex32).join('')
/** The OpenTelemetry SDK's sampler of each OTEL_TRACES_SAMPLER name (its environment configuration's). */
function sampler(name: string, ratio: number): Sampler {
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler()
    case 'always_off':
      return new AlwaysOffSampler()
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio)
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() })
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) })
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() })
  }
}

const traceIdOf = (span: Span | string) => (typeof span === 'string' ? span.split('-')[1]! : span.spanContext().traceId)

t.test("the head decision is the SDK sampler's, for every sampler, ratio and parent", async (t) => {
  let compared = 0
  const ratios = [0, 1e-9, 0.01, 0.5, 0.999999, 1]
  for (const name of TRACES_SAMPLERS) {
    for (const ratio of ratios) {
      const decide = headDecision(name, ratio)
      const sdk = sampler(name, ratio)
      const says = (traceId: string, context: Context) =>
        sdk.shouldSample(context, traceId, 'GET /x', SpanKind.SERVER, {}, []).decision === SamplingDecision.RECORD_AND_SAMPLED
      // Random ids, and ids whose accumulation sits on either side of the ratio's threshold.
      const bound = Math.floor(ratio * 0xffffffff)
      const edges = [bound - 1, bound, bound + 1].filter((b) => b >= 0 && b <= 0xffffffff)
      const ids = [
        ...Array.from({ length: 500 }, () => hex(16)),
        ...edges.flatMap((b) => [idOf([b, 0, 0, 0]), idOf([0, 0, 0, b]), idOf([(b ^ 0xdeadbeef) >>> 0, 0xdeadbeef, 0x12345678, 0x12345678])]),
        idOf([0xffffffff, 0, 0, 0]),
        idOf([0, 0, 0, 1]),
      ].filter((id) => id !== '0'.repeat(32)) // never made (a new trace's all-zero id gets a last byte of 1), never a parent
      for (const traceId of ids) {
        if (decide.root(accumulated(traceId)) !== says(traceId, ROOT_CONTEXT)) {
          t.fail(`${name} ${ratio}, no parent, ${traceId}: head says ${!says(traceId, ROOT_CONTEXT)}`)
          return
        }
        // The client's span (remote) for a request; a span of this process (local) for its children.
        for (const parent of [true, false]) {
          for (const isRemote of [true, false]) {
            const context = trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: hex(8), traceFlags: parent ? TraceFlags.SAMPLED : TraceFlags.NONE, isRemote })
            if (decide.withParent(traceId, parent) !== says(traceId, context)) {
              t.fail(`${name} ${ratio}, parent ${parent} (remote ${isRemote}), ${traceId}: head says ${!says(traceId, context)}`)
              return
            }
          }
        }
        compared++
      }
    }
  }
  t.ok(compared > TRACES_SAMPLERS.length * ratios.length * 500, `${compared} ids compared, each without a parent and under every kind of parent`)
})

t.test("an id's words as text: what Buffer's hex encoding writes", async (t) => {
  const words = [0, 1, 0xf, 0x10, 0xff, 0x100, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, ...Array.from({ length: 2000 }, () => randomBytes(4).readUInt32BE(0))]
  const into = Buffer.from('xx' + '.'.repeat(8) + 'yy', 'latin1')
  for (const w of words) {
    writeHex32(into, 2, w)
    const text = into.toString('latin1')
    if (text !== `xx${hex32(w)}yy`) {
      t.fail(`${w}: ${text} against ${hex32(w)}`)
      return
    }
  }
  t.pass(`${words.length} words, nothing written outside their 8 digits`)
})

t.test('new traces drawn in batches: each its own valid ids, its slot holding its words XORed', async (t) => {
  const fresh = new NewTraces()
  const traceIds = new Set<string>()
  const spanIds = new Set<string>()
  const n = NewTraces.BATCH * 40 + 7 // several batches, and one begun
  for (let k = 0; k < n; k++) {
    const i = fresh.take()
    const traceparent = fresh.traceparents[i]!
    const [version, traceId, spanId, flags] = traceparent.split('-')
    if (!/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/.test(traceparent) || version !== '00' || flags !== '00') {
      t.fail(`not an unsampled traceparent: ${traceparent}`)
      return
    }
    if (fresh.traceId(i) !== traceId) {
      t.fail(`slot ${i}: traceId ${fresh.traceId(i)} against the traceparent's ${traceId}`)
      return
    }
    if (fresh.accumulated[i] !== accumulated(traceId!)) {
      t.fail(`slot ${i}: ${fresh.accumulated[i]} against ${accumulated(traceId!)} for ${traceId}`)
      return
    }
    if (!trace.isSpanContextValid({ traceId: traceId!, spanId: spanId!, traceFlags: TraceFlags.NONE })) {
      t.fail(`invalid ids: ${traceparent}`)
      return
    }
    traceIds.add(traceId!)
    spanIds.add(spanId!)
  }
  t.equal(traceIds.size, n, 'every trace id new')
  t.equal(spanIds.size, n, 'every span id new')
  // Random words of zero (Math.random answering 0) still give valid ids: never the all-zero trace or span id.
  const random = Math.random
  Math.random = () => 0
  try {
    const zero = new NewTraces()
    const i = zero.take()
    t.equal(zero.traceparents[i], `00-${'0'.repeat(31)}1-${'0'.repeat(15)}1-00`, 'the last word 1, as RandomIdGenerator makes it')
    t.equal(zero.accumulated[i], 1)
  } finally {
    Math.random = random
  }
})

/** Tracing on (to an endpoint nothing listens on), half of the new traces sampled; shut down after the test. */
async function halfSampled(t: Test) {
  const tracing = (await startTracing(
    loadConfig(schema, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.5' }),
    'test',
  ))!
  t.teardown(() => tracing.shutdown().catch(() => undefined))
  return tracing
}

t.test('a request span: sampled ones recorded under the decided id, others only a traceparent with their ids', async (t) => {
  const tracing = await halfSampled(t)
  const decide = headDecision('parentbased_traceidratio', 0.5)
  let named = 0
  const name = () => {
    named++
    return 'GET /x'
  }
  let sampledRoots = 0
  const unsampledIds = new Set<string>()
  for (let i = 0; i < 400; i++) {
    const span = tracing.requestSpan({}, name)
    const traceId = traceIdOf(span)
    t.equal(decide.root(accumulated(traceId)), typeof span !== 'string', 'a span exactly when its trace id is sampled')
    if (typeof span === 'string') {
      t.match(span, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/, 'a traceparent, not sampled')
      const [, tid, sid] = span.split('-')
      t.ok(trace.isSpanContextValid({ traceId: tid!, spanId: sid!, traceFlags: TraceFlags.NONE }), 'valid ids')
      unsampledIds.add(tid!)
      continue
    }
    t.ok(span.isRecording(), 'recorded')
    t.equal(span.spanContext().traceFlags, TraceFlags.SAMPLED)
    sampledRoots++
    span.end()
  }
  t.ok(sampledRoots > 120 && sampledRoots < 280, `about half sampled (${sampledRoots} of 400)`)
  t.equal(unsampledIds.size, 400 - sampledRoots, 'every new trace its own id')
  t.equal(named, sampledRoots, 'the name is asked for only when a span is recorded')

  // After a sampled new trace, an unrelated span gets an id of its own.
  let root = tracing.requestSpan({}, name)
  while (typeof root === 'string') root = tracing.requestSpan({}, name)
  const other = tracing.tracer.startSpan('other', {}, ROOT_CONTEXT)
  t.not(other.spanContext().traceId, root.spanContext().traceId)

  // The client's context: an unsampled one passes on unchanged, a sampled one is the parent of a recorded span.
  const traceId = hex(16)
  const spanId = hex(8)
  t.equal(tracing.requestSpan({ traceparent: `00-${traceId}-${spanId}-00` }, name), `00-${traceId}-${spanId}-00`)
  const sampled = tracing.requestSpan({ traceparent: [`00-${traceId}-${spanId}-01`, 'ignored'], tracestate: 'vendor=1' }, name)
  if (typeof sampled === 'string') throw new Error('a sampled parent gave no span')
  t.ok(sampled.isRecording())
  t.equal(sampled.spanContext().traceId, traceId)
  t.equal((sampled as unknown as { parentSpanContext?: { spanId: string } }).parentSpanContext?.spanId, spanId, "the client's span is the parent")
  t.equal(sampled.spanContext().traceState?.get('vendor'), '1', 'tracestate kept')
  // What the W3C propagator would not read is no parent: a new trace.
  for (const bad of ['00-' + '0'.repeat(32) + '-' + spanId + '-01', 'ff-' + traceId + '-' + spanId + '-01', `00-${traceId}-${spanId}-01-extra`, 'garbage']) {
    t.not(traceIdOf(tracing.requestSpan({ traceparent: bad }, name)), traceId, `not a parent: ${bad}`)
  }
})

t.test('a request id the service mints is the id of the trace the request starts; a client id never takes one', async (t) => {
  const tracing = await halfSampled(t)
  const name = () => 'GET /x'
  const ids = new Set<string>()
  let sampled = 0
  for (let i = 0; i < 300; i++) {
    const id = tracing.requestId(undefined)
    t.match(id, /^[0-9a-f]{32}$/, 'minted: 32 hex digits')
    t.ok(isValidTraceId(id), 'a valid trace id')
    ids.add(id)
    const span = tracing.requestSpan({}, name, id)
    if (typeof span !== 'string') {
      sampled++
      span.end()
    }
    t.equal(traceIdOf(span), id, 'its new trace has the request id as its id, sampled or not')
  }
  t.equal(ids.size, 300, 'every minted id its own')
  t.ok(sampled > 90 && sampled < 210, `sampled from the minted ids as from any (${sampled} of 300)`)

  // A client that continues its own trace: its trace, and the minted id is no trace's.
  const clientTrace = hex(16)
  const own = tracing.requestId(undefined)
  const continued = tracing.requestSpan({ traceparent: `00-${clientTrace}-${hex(8)}-00` }, name, own)
  t.equal(traceIdOf(continued), clientTrace, "the client's trace goes on")
  // ...and that id is not used again for the next request's trace, even if that request carries it.
  const next = tracing.requestSpan({}, name, own)
  t.not(traceIdOf(next), own, 'a minted slot serves one request at most')

  // A client's id (one it saw in an earlier answer, say) is kept as it is and never takes a minted trace.
  const minted = tracing.requestId(undefined)
  t.equal(tracing.requestId(minted), minted, "the client's id kept")
  t.not(traceIdOf(tracing.requestSpan({}, name, minted)), minted, "a client's id is not the trace id, even when it repeats a minted one")

  // A minted id whose request never asked for its span (the router refused it): the next request draws its own.
  tracing.requestId(undefined)
  const other = tracing.requestId('client-1')
  t.equal(other, 'client-1')
  t.match(traceIdOf(tracing.requestSpan({}, name, other)), /^[0-9a-f]{32}$/, 'a new trace of its own')
})
