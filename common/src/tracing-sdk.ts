/**
 * The OpenTelemetry SDK behind startTracing (tracing.ts), imported only when
 * tracing is on: a tracer provider with the configured sampler and a batch
 * processor exporting OTLP/HTTP (JSON), the AsyncLocalStorage context manager
 * and the W3C trace-context propagator (registered once per process).
 */
import { context, propagation } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
} from '@opentelemetry/sdk-trace'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import type { Tracing, TracingSettings } from './tracing.js'

let registered = false

export function createTracing(config: TracingSettings, url: string, serviceName: string): Tracing {
  // One per process, shared by every app built in it (tests build several).
  if (!registered) {
    registered = true
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
    propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  }
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName }),
    sampler: sampler(config.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on', config.OTEL_TRACES_SAMPLER_ARG ?? 1),
    spanProcessors: [
      new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url }), scheduledDelayMillis: config.OTEL_BSP_SCHEDULE_DELAY ?? 5000 }),
    ],
  })
  return {
    tracer: provider.getTracer('tollgate'),
    serviceName,
    flush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  }
}

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

