/** Per-target counters and a health gauge, on the gateway's registry. */
import { Counter, Gauge, type Registry } from 'prom-client'

export interface UpstreamMetrics {
  requests: Counter<'upstream' | 'target'>
  failures: Counter<'upstream' | 'target'>
  ejections: Counter<'upstream' | 'target'>
  healthy: Gauge<'upstream' | 'target'>
}

export function createUpstreamMetrics(registry: Registry): UpstreamMetrics {
  const labelNames = ['upstream', 'target'] as const
  return {
    requests: new Counter({ name: 'gateway_upstream_target_requests_total', help: 'Requests sent to each upstream target', labelNames, registers: [registry] }),
    failures: new Counter({
      name: 'gateway_upstream_target_failures_total',
      help: 'Connection errors and 5xx answers of each upstream target (with several targets)',
      labelNames,
      registers: [registry],
    }),
    ejections: new Counter({ name: 'gateway_upstream_target_ejections_total', help: 'Outlier ejections of each upstream target', labelNames, registers: [registry] }),
    healthy: new Gauge({ name: 'gateway_upstream_target_healthy', help: '1 while an upstream target is in rotation, 0 while it is out', labelNames, registers: [registry] }),
  }
}
