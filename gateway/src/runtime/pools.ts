/**
 * Upstream connection pools by declaration: a generation that declares an
 * upstream exactly as the one before it takes the same pool (its keep-alive
 * connections, health state and DNS answers carry on); a changed or removed
 * upstream's pool closes once no live generation uses it (its in-flight
 * requests finish first).
 */
import { isIP } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import { readPem, type Config } from '../config.js'
import type { ResolvedUpstream } from '../gateway-config/load.js'
import { createUpstream, type Upstream, type UpstreamMetrics } from '../upstreams/index.js'

export interface PoolRegistry {
  acquire(def: ResolvedUpstream): Upstream
  release(def: ResolvedUpstream): void
  /** Every pool some generation uses now (scrape-time gauges). */
  live(): Iterable<Upstream>
  closeAll(): Promise<void>
}

export function createPoolRegistry(config: Config, metrics: UpstreamMetrics, log: FastifyBaseLogger): PoolRegistry {
  const ca = config.UPSTREAM_CA_FILE ? readPem('UPSTREAM_CA_FILE', config.UPSTREAM_CA_FILE) : undefined
  const entries = new Map<string, { pool: Upstream; users: number }>()
  const idOf = (def: ResolvedUpstream) => JSON.stringify(def)

  const build = (def: ResolvedUpstream): Upstream => {
    const interval = def.healthCheck?.intervalMs ?? config.UPSTREAM_HEALTH_CHECK_INTERVAL_MS
    // Active checks where there is somewhere else to send traffic: several targets, or a name DNS may spread.
    const spread = def.targets.length > 1 || def.targets.some((t) => isIP(new URL(t).hostname.replace(/^\[|\]$/g, '')) === 0)
    const checked = def.healthCheck !== undefined && interval > 0 && spread
    return createUpstream(
      {
        name: def.name,
        targets: def.targets,
        balancing: def.balance ?? config.UPSTREAM_BALANCING,
        connections: def.poolSize ?? config.UPSTREAM_CONNECTIONS,
        connectTimeoutMs: def.connectTimeoutMs ?? config.UPSTREAM_CONNECT_TIMEOUT_MS,
        timeoutMs: def.timeoutMs ?? config.UPSTREAM_TIMEOUT_MS,
        ca,
        dnsRefreshMs: config.UPSTREAM_DNS_REFRESH_MS,
        ...(checked
          ? {
              healthCheck: {
                path: def.healthCheck!.path,
                intervalMs: interval,
                ...(def.healthCheck!.timeoutMs ? { timeoutMs: def.healthCheck!.timeoutMs } : {}),
                ...(def.healthCheck!.unhealthyAfter ? { unhealthyThreshold: def.healthCheck!.unhealthyAfter } : {}),
                ...(def.healthCheck!.healthyAfter ? { healthyThreshold: def.healthCheck!.healthyAfter } : {}),
              },
            }
          : {}),
      },
      { metrics, log },
    )
  }

  return {
    acquire(def) {
      const id = idOf(def)
      let entry = entries.get(id)
      if (!entry) entries.set(id, (entry = { pool: build(def), users: 0 }))
      entry.users++
      return entry.pool
    },
    release(def) {
      const id = idOf(def)
      const entry = entries.get(id)
      if (!entry || --entry.users > 0) return
      entries.delete(id)
      void entry.pool.close().catch(() => undefined)
    },
    *live() {
      for (const e of entries.values()) yield e.pool
    },
    async closeAll() {
      const all = [...entries.values()]
      entries.clear()
      await Promise.all(all.map((e) => e.pool.close().catch(() => undefined)))
    },
  }
}
