/**
 * Gauges read at scrape time (nothing on the request path): how stale the
 * revocation list is and how big, and each upstream target's connection pool
 * (undici's own counts).
 */
import { Gauge, type Registry } from 'prom-client'
import type { RevocationList } from './auth/revocation-list.js'
import type { Upstream } from './upstreams/index.js'

export function installGatewayGauges(registry: Registry, deps: { revocations: RevocationList; pools: () => Iterable<Upstream> }): void {
  const { revocations, pools } = deps
  new Gauge({
    name: 'gateway_revocation_staleness_seconds',
    help: 'Seconds since the revocation list was last refreshed from the auth-service (past REVOCATION_MAX_STALENESS_MS, protected routes answer 503)',
    registers: [registry],
    collect() {
      this.set(revocations.staleMs / 1000)
    },
  })
  new Gauge({
    name: 'gateway_revocation_entries',
    help: 'Signed-out tokens and subject cutoffs held in memory',
    registers: [registry],
    collect() {
      this.set(revocations.size)
    },
  })
  new Gauge({
    name: 'gateway_upstream_pool_connections',
    help: "Each upstream target's connection pool: connections open (connected), idle (free), requests on a connection (running) and waiting for one (queued)",
    labelNames: ['upstream', 'target', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset()
      for (const pool of pools()) {
        for (const m of pool.members) {
          const s = m.pool.stats
          const labels = (state: string) => ({ upstream: pool.name, target: m.label, state })
          this.set(labels('connected'), s.connected)
          this.set(labels('free'), s.free)
          this.set(labels('running'), s.running)
          this.set(labels('queued'), s.queued)
        }
      }
    },
  })
}
