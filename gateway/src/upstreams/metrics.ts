/**
 * Per-target counters and a health gauge, on the gateway's registry. The two fed on every
 * request (requests, latency) count in plain numbers, handed over at scrape time
 * (@tollgate/common's scrape-time-metrics: prom-client hashes labels on each call).
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import { scrapeTimeCounter, ScrapeTimeHistogram, type CountSeries } from '@tollgate/common'

type TargetLabels = { upstream: string; target: string }

export interface UpstreamMetrics {
  requests: { series(labels: TargetLabels): CountSeries }
  failures: Counter<'upstream' | 'target'>
  ejections: Counter<'upstream' | 'target'>
  healthy: Gauge<'upstream' | 'target'>
  duration: ScrapeTimeHistogram<'upstream' | 'target'>
}

export function createUpstreamMetrics(registry: Registry): UpstreamMetrics {
  const labelNames = ['upstream', 'target'] as const
  return {
    requests: scrapeTimeCounter({ name: 'gateway_upstream_target_requests_total', help: 'Requests sent to each upstream target', labelNames, registers: [registry] }),
    failures: new Counter({
      name: 'gateway_upstream_target_failures_total',
      help: 'Connection errors and 5xx answers of each upstream target (with several targets)',
      labelNames,
      registers: [registry],
    }),
    ejections: new Counter({ name: 'gateway_upstream_target_ejections_total', help: 'Outlier ejections of each upstream target', labelNames, registers: [registry] }),
    healthy: new Gauge({ name: 'gateway_upstream_target_healthy', help: '1 while an upstream target is in rotation, 0 while it is out', labelNames, registers: [registry] }),
    duration: new ScrapeTimeHistogram({
      name: 'gateway_upstream_duration_seconds',
      help: 'Time from handing a request to an upstream target to its response headers (answers only; failures: gateway_upstream_errors_total)',
      labelNames,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  }
}
