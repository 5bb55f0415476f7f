/**
 * The OpenTelemetry SDK behind startTracing (tracing.ts), imported only when
 * tracing is on: a tracer provider with the configured sampler and a batch
 * processor exporting OTLP/HTTP (JSON) from a worker thread (trace-export.ts),
 * the AsyncLocalStorage context manager and the W3C trace-context propagator
 * (registered once per process).
 */
import { context, propagation, ROOT_CONTEXT, SamplingDecision, SpanKind, trace, TraceFlags } from '@opentelemetry/api'
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
  const sampled = headDecision(samplerName, ratio)
  return {
    tracer,
    serviceName,
    requestSpan(headers, name) {
      const parent = parseTraceparent(headers.traceparent)
      if (parent !== null) {
        // Not sampled: the client's context goes on as it came (an intermediary may leave it unchanged, W3C trace-context).
        if (!sampled(parent.traceId, parent.sampled)) return trace.wrapSpanContext({ traceId: parent.traceId, spanId: parent.spanId, traceFlags: TraceFlags.NONE, isRemote: true })
        return tracer.startSpan(name(), SERVER, extractContext(headers))
      }
      const traceId = ids.random.generateTraceId()
      if (!sampled(traceId, null)) return trace.wrapSpanContext({ traceId, spanId: ids.random.generateSpanId(), traceFlags: TraceFlags.NONE })
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

/**
 * The configured sampler's decision for a request, taken before any span
 * exists, from the trace id and the client's sampled flag (null: no parent):
 * exactly what sampler() decides for these samplers, whose decisions depend on
 * nothing else. A request not sampled then costs no SDK call at all (most of
 * them at a low ratio): no context, no sampler result, no metrics record.
 */
export function headDecision(name: string, ratio: number): (traceId: string, parentSampled: boolean | null) => boolean {
  const byRatio = new TraceIdRatioBasedSampler(ratio)
  const ratioSays = (traceId: string) => byRatio.shouldSample(ROOT_CONTEXT, traceId).decision === SamplingDecision.RECORD_AND_SAMPLED
  switch (name) {
    case 'always_on':
      return () => true
    case 'always_off':
      return () => false
    case 'traceidratio':
      return ratioSays
    case 'parentbased_always_off':
      return (_, parentSampled) => parentSampled ?? false
    case 'parentbased_traceidratio':
      return (traceId, parentSampled) => parentSampled ?? ratioSays(traceId)
    default:
      return (_, parentSampled) => parentSampled ?? true
  }
}

/** The client's traceparent as the W3C propagator reads it (the first, when repeated), or null where it finds none. */
function parseTraceparent(header: unknown): { traceId: string; spanId: string; sampled: boolean } | null {
  const value = Array.isArray(header) ? header[0] : header
  const parsed = typeof value === 'string' ? parseTraceParent(value) : null
  return parsed === null ? null : { traceId: parsed.traceId, spanId: parsed.spanId, sampled: (parsed.traceFlags & TraceFlags.SAMPLED) !== 0 }
}
