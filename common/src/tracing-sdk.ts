/**
 * The OpenTelemetry SDK behind startTracing (tracing.ts), imported only when
 * tracing is on: a tracer provider with the configured sampler and a batch
 * processor exporting OTLP/HTTP (JSON) from a worker thread (trace-export.ts),
 * the AsyncLocalStorage context manager and the W3C trace-context propagator
 * (registered once per process).
 */
import { context, propagation, ROOT_CONTEXT, SamplingDecision, SpanKind, TraceFlags } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { parseTraceParent, W3CTraceContextPropagator } from '@opentelemetry/core'
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  RandomIdGenerator,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type IdGenerator,
  type Sampler,
} from '@opentelemetry/sdk-trace'
import { extractContext, type Tracing, type TracingSettings } from './tracing.js'
import { WorkerSpanExporter } from './trace-export.js'

let registered = false

export function createTracing(config: TracingSettings, url: string, serviceName: string): Tracing {
  // One per process, shared by every app built in it (tests build several).
  if (!registered) {
    registered = true
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
    propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  }
  const samplerName = config.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on'
  const ratio = config.OTEL_TRACES_SAMPLER_ARG ?? 1
  const ids = new HeadIdGenerator()
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName }),
    idGenerator: ids,
    sampler: sampler(samplerName, ratio),
    spanProcessors: [
      new BatchSpanProcessor({ exporter: new WorkerSpanExporter(url), scheduledDelayMillis: config.OTEL_BSP_SCHEDULE_DELAY ?? 5000 }),
    ],
  })
  const tracer = provider.getTracer('tollgate')
  const head = headDecision(samplerName, ratio)
  return {
    tracer,
    serviceName,
    requestSpan(headers, name) {
      const parent = parseTraceparent(headers.traceparent)
      if (parent !== null) {
        // Not sampled: the client's context goes on as it came (an intermediary may leave it unchanged, W3C trace-context).
        if (!head.withParent(parent.traceId, parent.sampled)) return `00-${parent.traceId}-${parent.spanId}-00`
        return tracer.startSpan(name(), SERVER, extractContext(headers))
      }
      // A new trace: its id as four random words, decided on before any text or span is made.
      const w0 = randomWord()
      const w1 = randomWord()
      const w2 = randomWord()
      let w3 = randomWord()
      if ((w0 | w1 | w2 | w3) === 0) w3 = 1 // never the invalid all-zero id (RandomIdGenerator's rule)
      const traceId = hex32(w0) + hex32(w1) + hex32(w2) + hex32(w3)
      if (!head.root((w0 ^ w1 ^ w2 ^ w3) >>> 0)) return `00-${traceId}-${randomSpanId()}-00`
      // The SDK starts the trace with the id just decided on, so its sampler (the same one) agrees.
      ids.next = traceId
      try {
        return tracer.startSpan(name(), SERVER, ROOT_CONTEXT)
      } finally {
        ids.next = null
      }
    },
    flush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  }
}

export function sampler(name: string, ratio: number): Sampler {
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

const SERVER = { kind: SpanKind.SERVER }

/** New traces' ids: the one a request's head decision drew, for the span started right after it; random otherwise. */
class HeadIdGenerator implements IdGenerator {
  readonly random = new RandomIdGenerator()
  next: string | null = null
  generateTraceId(): string {
    return this.next ?? this.random.generateTraceId()
  }
  generateSpanId(): string {
    return this.random.generateSpanId()
  }
}

/** A request's sampling, decided before any span exists (see headDecision). */
export interface HeadDecision {
  /** For a trace the client started: from its trace id and its sampled flag. */
  withParent(traceId: string, parentSampled: boolean): boolean
  /**
   * For a new trace: from its id's four 32-bit words XORed (what TraceIdRatioBasedSampler computes from the
   * id's text, each 8 hex digits a word), so the id need not be parsed back.
   */
  root(accumulated: number): boolean
}

/**
 * The configured sampler's decision for a request, taken before any span
 * exists, from the trace id and the client's sampled flag: exactly what
 * sampler() decides for these samplers, whose decisions depend on nothing
 * else. A request not sampled then costs no SDK call at all (most of them at
 * a low ratio): no context, no span object, no sampler result.
 */
export function headDecision(name: string, ratio: number): HeadDecision {
  const byRatio = new TraceIdRatioBasedSampler(ratio)
  const ratioSays = (traceId: string) => byRatio.shouldSample(ROOT_CONTEXT, traceId).decision === SamplingDecision.RECORD_AND_SAMPLED
  const bound = ratioBound(ratio)
  const ratioRoot = (accumulated: number) => accumulated < bound
  switch (name) {
    case 'always_on':
      return { withParent: () => true, root: () => true }
    case 'always_off':
      return { withParent: () => false, root: () => false }
    case 'traceidratio':
      return { withParent: ratioSays, root: ratioRoot }
    case 'parentbased_always_off':
      return { withParent: (_, parentSampled) => parentSampled, root: () => false }
    case 'parentbased_traceidratio':
      return { withParent: (_, parentSampled) => parentSampled, root: ratioRoot }
    default:
      return { withParent: (_, parentSampled) => parentSampled, root: () => true }
  }
}

/** TraceIdRatioBasedSampler's threshold for a ratio (its constructor's, @opentelemetry/sdk-trace 2.x). */
function ratioBound(ratio: number): number {
  const r = typeof ratio !== 'number' || Number.isNaN(ratio) || ratio <= 0 ? 0 : ratio >= 1 ? 1 : ratio
  return r === 1 ? 2 ** 32 : Math.floor(r * 0xffffffff)
}

/**
 * Ids as RandomIdGenerator makes them (Math.random, 32 bits at a time), written as text by a table: its
 * Buffer and hex encoding took about twice as long (microbenchmark: 450 against 250 ns a new trace's
 * ids, decision and traceparent).
 */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))
const randomWord = () => (Math.random() * 2 ** 32) >>> 0
export const hex32 = (w: number): string => HEX[w >>> 24]! + HEX[(w >>> 16) & 255]! + HEX[(w >>> 8) & 255]! + HEX[w & 255]!
function randomSpanId(): string {
  const w0 = randomWord()
  let w1 = randomWord()
  if ((w0 | w1) === 0) w1 = 1
  return hex32(w0) + hex32(w1)
}

/** The client's traceparent as the W3C propagator reads it (the first, when repeated), or null where it finds none. */
function parseTraceparent(header: unknown): { traceId: string; spanId: string; sampled: boolean } | null {
  const value = Array.isArray(header) ? header[0] : header
  const parsed = typeof value === 'string' ? parseTraceParent(value) : null
  return parsed === null ? null : { traceId: parsed.traceId, spanId: parsed.spanId, sampled: (parsed.traceFlags & TraceFlags.SAMPLED) !== 0 }
}
