/**
 * Prometheus metrics per app instance (its own registry, so tests that build
 * many apps never collide): request counts and latency by route and status,
 * plus Node's default process metrics. Served at /metrics.
 */
import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type pg from 'pg'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry
  }
}

export function installMetrics(app: FastifyInstance, service: string): void {
  const registry = new Registry()
  registry.setDefaultLabels({ service })
  collectDefaultMetrics({ register: registry })

  const requests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  })
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from request received to response sent',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  })

  app.decorate('metrics', registry)
  // One labelled child per (method, route, status), made once: no label hashing per request.
  const children = new Map<string, { count: { inc(): void }; time: { observe(v: number): void } }>()
  app.addHook('onResponse', (request, reply, done) => {
    // The route pattern, never the raw URL: bounded label cardinality.
    const route = request.routeOptions.url ?? 'unmatched'
    const key = `${request.method} ${route} ${reply.statusCode}`
    let child = children.get(key)
    if (!child) {
      const labels = { method: request.method, route, status: String(reply.statusCode) }
      child = { count: requests.labels(labels), time: duration.labels(labels) }
      children.set(key, child)
    }
    child.count.inc()
    child.time.observe(reply.elapsedTime / 1000)
    done()
  })
  app.get('/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    reply.type(registry.contentType)
    return registry.metrics()
  })
}

/** Pool state at scrape time: connections in use, idle, and requests waiting for one. */
export function installPoolMetrics(app: FastifyInstance, pool: pg.Pool): void {
  new Gauge({
    name: 'db_pool_connections',
    help: 'PostgreSQL pool connections by state (waiting: requests queued for a connection)',
    labelNames: ['state'] as const,
    registers: [app.metrics],
    collect() {
      this.set({ state: 'total' }, pool.totalCount)
      this.set({ state: 'idle' }, pool.idleCount)
      this.set({ state: 'waiting' }, pool.waitingCount)
    },
  })
}
