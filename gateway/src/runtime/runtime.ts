/**
 * What the gateway keeps for the life of the process, whatever its file says
 * after a reload: the Prometheus registries and their counters (never reset),
 * the rate-limit counters and the Redis connection (a reload never resets a
 * limit), the revocation list (never loses a revocation), and the upstream
 * connection pools, shared by every generation that declares the same upstream.
 * Everything the file declares is built per generation (generation.ts).
 */
import type { Dispatcher } from 'undici'
import type { FastifyBaseLogger } from 'fastify'
import { pino } from 'pino'
import { Counter, Gauge } from 'prom-client'
import { createMetricsKit, loggerOptions, proofKey, startTracing, stdoutDestination, type MetricsKit, type Tracing } from '@tollgate/common'
import type { Config } from '../config.js'
import { createCounterStore, type CounterBackend, type CounterState, type CounterStore } from '../limits/store.js'
import { RevocationList } from '../auth/revocation-list.js'
import { revocationFeed } from '../auth/revocation-feed.js'
import { createUpstreamMetrics, type UpstreamMetrics } from '../upstreams/index.js'
import { createInternalShared, type InternalShared } from '../internal/internal-app.js'
import { createPoolRegistry, type PoolRegistry } from './pools.js'
import { installGatewayGauges } from '../gauges.js'
import { StreamRegistry } from '../streams/registry.js'
import { watchStreams } from '../streams/install.js'

export interface RuntimeOptions {
  logStream?: NodeJS.WritableStream
  /** The process's open live streams (tests share one between apps); default: a new one. */
  streams?: StreamRegistry
  /** The revocation list's clock (epoch ms, default Date.now); tests move it instead of sleeping. */
  now?: () => number
}

export interface Runtime {
  log: FastifyBaseLogger
  proofKey: Buffer
  metrics: MetricsKit
  counters: CounterState
  /** The public policies' counter stores, by policy (they outlive generations). */
  stores: Map<string, CounterStore>
  internal: InternalShared
  revocations: RevocationList
  /** OpenTelemetry (OTEL_EXPORTER_OTLP_ENDPOINT), or null: off. One provider for the process. */
  tracing: Tracing | null
  /** Open live streams (SSE, WebSocket): they outlive reloads, and revocations reach them here. */
  streams: StreamRegistry
  pools: PoolRegistry
  upstreamMetrics: UpstreamMetrics
  rejections: Counter<'policy'>
  authFailures: Counter<'reason'>
  upstreamErrors: Counter<'upstream' | 'status' | 'cause'>
  /** The pool the revocation list polls: the current generation's feed upstream. */
  setRevocationFeed(pool: Dispatcher): void
  /** Load the revocation list once, then poll (idempotent). */
  start(): Promise<void>
  close(): Promise<void>
}

export async function createRuntime(config: Config, opts: RuntimeOptions = {}): Promise<Runtime> {
  const log = pino(
    loggerOptions(config.LOG_LEVEL, 'gateway') as object,
    (opts.logStream ?? stdoutDestination()) as pino.DestinationStream,
  ) as unknown as FastifyBaseLogger
  const metrics = createMetricsKit('gateway')
  const tracing = await startTracing(config, 'gateway')
  const registry = metrics.registry
  const key = proofKey(config.BETTER_AUTH_SECRET, config.INTERNAL_PROOF_SECRET)
  const backendGauge = new Gauge({
    name: 'gateway_rate_limit_backend',
    help: 'Where rate-limit counters live now (1 for the active one)',
    labelNames: ['backend'] as const,
    registers: [registry],
  })
  const counters = await createCounterStore(
    config.REDIS_URL,
    log,
    (backend: CounterBackend) => {
      backendGauge.reset()
      backendGauge.set({ backend }, 1)
    },
    { syncMs: config.RATE_LIMIT_SYNC_MS, cluster: config.REDIS_CLUSTER },
  )
  const upstreamMetrics = createUpstreamMetrics(registry)
  let feed: Dispatcher | undefined
  const feedTimeout = Math.min(config.UPSTREAM_TIMEOUT_MS, 2000)
  const revocations = new RevocationList({
    fetchPage: (after) => {
      if (!feed) return Promise.reject(new Error('no revocation feed yet'))
      return revocationFeed(feed, key, feedTimeout)(after)
    },
    pollMs: config.REVOCATION_POLL_MS,
    maxStalenessMs: config.REVOCATION_MAX_STALENESS_MS,
    failOpen: config.REVOCATION_FAIL_OPEN,
    ownIssuer: config.JWT_ISSUER,
    log,
    ...(opts.now ? { now: opts.now } : {}),
  })
  const pools = createPoolRegistry(config, upstreamMetrics, log)
  installGatewayGauges(registry, { revocations, pools: () => pools.live() })
  const streams = opts.streams ?? new StreamRegistry({ perUser: config.STREAMS_PER_USER })
  const unwatchStreams = watchStreams(streams, revocations, registry, { failOpen: config.REVOCATION_FAIL_OPEN, checkMs: config.REVOCATION_POLL_MS })
  let started: Promise<void> | undefined
  return {
    log,
    proofKey: key,
    metrics,
    counters,
    stores: new Map(),
    internal: createInternalShared(),
    revocations,
    tracing,
    streams,
    pools,
    upstreamMetrics,
    rejections: new Counter({
      name: 'gateway_rate_limit_rejections_total',
      help: 'Requests refused with 429, by policy',
      labelNames: ['policy'] as const,
      registers: [registry],
    }),
    authFailures: new Counter({
      name: 'gateway_auth_failures_total',
      help: 'Requests refused by the access rules, by error code (UNAUTHORIZED, INVALID_TOKEN, TOKEN_EXPIRED, ...)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    upstreamErrors: new Counter({
      name: 'gateway_upstream_errors_total',
      help: 'Upstream failures answered 502/503/504, by upstream, status and cause',
      labelNames: ['upstream', 'status', 'cause'] as const,
      registers: [registry],
    }),
    setRevocationFeed(pool) {
      feed = pool
    },
    start() {
      // Serve nothing protected on a list we never loaded: try once before listening, then poll.
      started ??= revocations
        .sync()
        .catch((err) => log.warn({ err: { message: (err as Error).message } }, 'revocation list not loaded yet'))
        .then(() => revocations.start())
      return started
    },
    async close() {
      unwatchStreams()
      revocations.stop()
      await counters.close()
      await pools.closeAll()
      await tracing?.shutdown()
    },
  }
}
