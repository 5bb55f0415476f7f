/** Upstream services with one or more targets: see upstream.ts. */
import { Upstream, type UpstreamDef, type UpstreamDeps } from './upstream.js'

export { Upstream, NoHealthyTarget, HEALTH_CHECK_DEFAULTS, OUTLIER_DEFAULTS, DNS_REFRESH_DEFAULT_MS } from './upstream.js'
export type { UpstreamDef, UpstreamDeps, HealthCheckDef, OutlierDef, Lookup } from './upstream.js'
export { createUpstreamMetrics, type UpstreamMetrics } from './metrics.js'

export function createUpstream(def: UpstreamDef, deps: UpstreamDeps = {}): Upstream {
  return new Upstream(def, deps)
}
