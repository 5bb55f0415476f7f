/**
 * The head decision (tracing-sdk.ts): a request's sampling is decided before
 * any span exists, so an unsampled one costs no SDK call. It must be the
 * configured sampler's decision exactly, for every sampler and ratio, and a
 * sampled new trace must be started under the very id that was decided on.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { ROOT_CONTEXT, SamplingDecision, SpanKind, trace, TraceFlags } from '@opentelemetry/api'
import { Type } from 'typebox'
import { loadConfig, startTracing, TRACES_SAMPLERS, tracingConfig } from '../src/index.js'
import { headDecision, sampler } from '../src/tracing-sdk.js'

const schema = Type.Object(tracingConfig)
const hex = (bytes: number) => randomBytes(bytes).toString('hex')

t.test("the head decision is the SDK sampler's, for every sampler, ratio and parent", async (t) => {
  let compared = 0
  for (const name of TRACES_SAMPLERS) {
    for (const ratio of [0, 0.01, 0.5, 1]) {
      const decide = headDecision(name, ratio)
      const sdk = sampler(name, ratio)
      for (let i = 0; i < 500; i++) {
        const traceId = hex(16)
        for (const parent of [null, true, false]) {
          const context =
            parent === null
              ? ROOT_CONTEXT
              : trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: hex(8), traceFlags: parent ? TraceFlags.SAMPLED : TraceFlags.NONE, isRemote: true })
          const expected = sdk.shouldSample(context, traceId, 'GET /x', SpanKind.SERVER, {}, []).decision === SamplingDecision.RECORD_AND_SAMPLED
          if (decide(traceId, parent) !== expected) {
            t.fail(`${name} ${ratio}, parent ${parent}: head says ${!expected}, the SDK ${expected}`)
            return
          }
          compared++
        }
      }
    }
  }
  t.equal(compared, TRACES_SAMPLERS.length * 4 * 500 * 3)
})

t.test('a request span: sampled ones from the SDK under the decided id, others non-recording with their ids', async (t) => {
  const tracing = (await startTracing(
    loadConfig(schema, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.5' }),
    'test',
  ))!
  t.teardown(() => tracing.shutdown().catch(() => undefined))
  const decide = headDecision('parentbased_traceidratio', 0.5)
  let named = 0
  const name = () => {
    named++
    return 'GET /x'
  }
  let sampledRoots = 0
  let unsampledRoots = 0
  for (let i = 0; i < 200; i++) {
    const span = tracing.requestSpan({}, name)
    const ids = span.spanContext()
    t.ok(trace.isSpanContextValid(ids), 'valid ids')
    t.equal(decide(ids.traceId, null), span.isRecording(), 'recorded exactly when its trace id is sampled')
    t.equal(ids.traceFlags, span.isRecording() ? TraceFlags.SAMPLED : TraceFlags.NONE)
    if (span.isRecording()) sampledRoots++
    else unsampledRoots++
    span.end()
  }
  t.ok(sampledRoots > 50 && unsampledRoots > 50, `about half sampled (${sampledRoots} of 200)`)
  t.equal(named, sampledRoots, 'the name is asked for only when a span is recorded')

  // After a sampled new trace, an unrelated span gets an id of its own.
  let root = tracing.requestSpan({}, name)
  while (!root.isRecording()) root = tracing.requestSpan({}, name)
  const other = tracing.tracer.startSpan('other', {}, ROOT_CONTEXT)
  t.not(other.spanContext().traceId, root.spanContext().traceId)

  // The client's context: an unsampled one passes on unchanged, a sampled one is the parent of a recorded span.
  const traceId = hex(16)
  const spanId = hex(8)
  const unsampled = tracing.requestSpan({ traceparent: `00-${traceId}-${spanId}-00` }, name)
  t.notOk(unsampled.isRecording())
  t.same([unsampled.spanContext().traceId, unsampled.spanContext().spanId, unsampled.spanContext().traceFlags], [traceId, spanId, TraceFlags.NONE])
  const sampled = tracing.requestSpan({ traceparent: [`00-${traceId}-${spanId}-01`, 'ignored'], tracestate: 'vendor=1' }, name)
  t.ok(sampled.isRecording())
  t.equal(sampled.spanContext().traceId, traceId)
  t.equal((sampled as unknown as { parentSpanContext?: { spanId: string } }).parentSpanContext?.spanId, spanId, "the client's span is the parent")
  t.equal(sampled.spanContext().traceState?.get('vendor'), '1', 'tracestate kept')
  // What the W3C propagator would not read is no parent: a new trace.
  for (const bad of ['00-' + '0'.repeat(32) + '-' + spanId + '-01', 'ff-' + traceId + '-' + spanId + '-01', `00-${traceId}-${spanId}-01-extra`, 'garbage']) {
    t.not(tracing.requestSpan({ traceparent: bad }, name).spanContext().traceId, traceId, `not a parent: ${bad}`)
  }
})
