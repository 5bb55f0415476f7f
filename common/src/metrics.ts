/**
 * Prometheus metrics per app instance (its own registry, so tests that build
 * many apps never collide): request counts and latency by route and status,
 * plus Node's default process metrics. Served at /metrics.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type pg from 'pg'
import { metricsHandler } from './readiness.js'
import { ErrorCode } from './errors.js'
import { scrapeTimeCounter, ScrapeTimeHistogram, type CountSeries, type HistogramSeries } from './scrape-time-metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry
  }
}

/**
 * A registry with the request counters and the hooks that feed them. A process that
 * rebuilds its Fastify instance (the gateway's config reload) keeps one across them.
 */
export interface MetricsKit {
  registry: Registry
  /** An answer about to be sent: an error one is counted by its envelope's error_code (call from onSend). */
  countAnswer: (reply: FastifyReply, payload: unknown) => void
  /** An answer sent: its count and latency by route (call from onResponse). */
  observe: (request: FastifyRequest, reply: FastifyReply) => void
}

/**
 * The registry on `app` (and at its /metrics unless `route` is false: the gateway serves it on its admin listener).
 * The kit's countAnswer and observe are called from createService's own onSend and onResponse hooks: a hook of
 * their own each would cost every request two more steps of Fastify's hook runner.
 */
export function installMetrics(app: FastifyInstance, kit: MetricsKit, route = true): void {
  app.decorate('metrics', kit.registry)
  if (route) app.get('/metrics', { logLevel: 'warn' }, metricsHandler(kit.registry))
}

/** How often the event-loop lag histogram (nodejs_eventloop_lag_*) takes a sample. */
export const EVENT_LOOP_SAMPLE_MS = 100

export function createMetricsKit(service: string): MetricsKit {
  const registry = new Registry()
  registry.setDefaultLabels({ service })
  // The event-loop lag histogram samples every 100 ms, not prom-client's 10: a timer firing 100 times a second cost an
  // idle process 8.4 ms of CPU a second (0.9 % of a core, measured); 10 samples a second still give a scrape every
  // 15 s 150 of them for its percentiles.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS })

  /** One (method, route, status) series: its count and its latency (see scrape-time-metrics.ts: no label hashing per request). */
  interface Series {
    count: CountSeries
    time: HistogramSeries
  }
  const requests = scrapeTimeCounter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  })
  const duration = new ScrapeTimeHistogram({
    name: 'http_request_duration_seconds',
    help: 'Time from request received to response sent',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  })

  // Errors by the envelope's error_code: read from the answer being sent (only answers of 400 and above).
  const errors = new Counter({
    name: 'http_error_responses_total',
    help: "Answers of 400 and above, by status and the envelope's error_code (OTHER: not one of ours, NONE: no envelope)",
    labelNames: ['status', 'code'] as const,
    registers: [registry],
  })
  const errorSeries = new Map<string, { inc(): void }>()
  const countAnswer: MetricsKit['countAnswer'] = (reply, payload) => {
    const status = reply.statusCode
    if (status < 400) return
    const code = errorCodeOf(payload)
    const key = `${status} ${code}`
    let child = errorSeries.get(key)
    if (child === undefined) errorSeries.set(key, (child = errors.labels({ status: String(status), code })))
    child.inc()
  }

  // Series found by route, method and status (strings the router and parser reuse, a number): no key built per request.
  const byRoute = new Map<string, Map<string, Map<number, Series>>>()
  const observe: MetricsKit['observe'] = (request, reply) => {
    // The route pattern, never the raw URL: bounded label cardinality.
    const route = request.routeOptions.url ?? 'unmatched'
    const method = request.method
    const status = reply.statusCode
    let byMethod = byRoute.get(route)
    if (byMethod === undefined) byRoute.set(route, (byMethod = new Map()))
    let byStatus = byMethod.get(method)
    if (byStatus === undefined) byMethod.set(method, (byStatus = new Map()))
    let s = byStatus.get(status)
    if (s === undefined) {
      const labels = { method, route, status: String(status) }
      s = { count: requests.series(labels), time: duration.labels(labels) }
      byStatus.set(status, s)
    }
    s.count.inc()
    s.time.observe(reply.elapsedTime / 1000)
  }
  return { registry, countAnswer, observe }
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

const CODES = new Set<string>(Object.values(ErrorCode))
const CODE_FIELD = '"error_code":"'

/** The envelope's error_code in a serialised answer (ours or a service's passed through), without parsing it. */
export function errorCodeOf(payload: unknown): string {
  let text: string
  if (typeof payload === 'string') text = payload
  else if (Buffer.isBuffer(payload) && payload.length <= 4096) text = payload.toString('utf8')
  else return 'NONE'
  const at = text.indexOf(CODE_FIELD)
  if (at === -1) return 'NONE'
  const start = at + CODE_FIELD.length
  const end = text.indexOf('"', start)
  const code = end === -1 ? '' : text.slice(start, end)
  return CODES.has(code) ? code : 'OTHER'
}
