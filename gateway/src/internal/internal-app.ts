/**
 * The gateway's internal listener (INTERNAL_PORT, never public): the path for
 * service-to-service calls, with the same guarantees as public traffic. It
 * accepts only service tokens (user tokens get 401), enforces a deny-by-default
 * allowlist of routes per calling service (403), limits each service's rate,
 * and forwards the caller with the same signed proof users get, so a service
 * can tell a service call from a user call.
 */
import type { Dispatcher } from 'undici'
import type { FastifyServerOptions, HTTPMethods } from 'fastify'
import { Counter } from 'prom-client'
import { createMetricsKit, createService, serviceTokenKey, type App, type Tracing } from '@tollgate/common'
import type { Config } from '../config.js'
import { asyncStep, sequence, type Step } from '../hook-steps.js'
import type { CounterStore, CountingMode } from '../limits/store.js'
import { registerProxyRoutes } from '../proxy/proxy-routes.js'
import { createForwarder, type Forward } from '../proxy/forwarder.js'
import type { ResolvedInternalRoute } from '../gateway-config/load.js'
import { policySteps } from '../pipeline/route-pipeline.js'
import { authenticateService, parseAllowlist } from './service-auth.js'
import { gatewayAccessFields } from '../access-log.js'
import { stepSpans } from '../tracing.js'

export interface InternalDeps {
  routes: ResolvedInternalRoute[]
  upstreams: Map<string, { pool: Dispatcher; def: { timeoutMs?: number } }>
  proofKey: Buffer
  newStore: (mode?: CountingMode) => CounterStore
  logStream?: NodeJS.WritableStream
  /** What outlives a config reload (metrics, limit counts); default: its own. */
  shared?: InternalShared
  /** Extra Fastify options (the reloading listener's serverFactory). */
  fastify?: Partial<FastifyServerOptions>
  /** The gateway's tracing (shared with the public listener), or null: off. */
  tracing?: Tracing | null
}

/** The internal listener's process-lifetime pieces: its registry and counters, and its policies' counter stores. */
export function createInternalShared() {
  const kit = createMetricsKit('gateway-internal')
  const metric = (name: string, help: string, labelNames: string[]) => new Counter({ name, help, labelNames, registers: [kit.registry] })
  return {
    kit,
    authFailures: metric('gateway_internal_auth_failures_total', 'Internal calls refused, by error code', ['reason']),
    rejections: metric('gateway_internal_rate_limit_rejections_total', 'Internal calls refused with 429, by policy', ['policy']),
    upstreamErrors: metric('gateway_upstream_errors_total', 'Upstream failures answered 502/503/504', ['upstream', 'status', 'cause']),
    stores: new Map<string, CounterStore>(),
  }
}
export type InternalShared = ReturnType<typeof createInternalShared>

export async function buildInternalApp(config: Config, deps: InternalDeps): Promise<App> {
  const allowlist = parseAllowlist(config.INTERNAL_ALLOWLIST)
  const shared = deps.shared ?? createInternalShared()
  const app = createService({
    name: 'gateway-internal',
    logLevel: config.LOG_LEVEL,
    logStream: deps.logStream,
    openapi: false,
    bodyLimit: config.BODY_LIMIT_BYTES,
    metrics: shared.kit,
    accessLog: gatewayAccessFields,
    ...(deps.fastify ? { fastify: deps.fastify } : {}),
    tracing: deps.tracing ?? null,
    tracingShared: true, // the gateway's runtime (or app) shuts it down
  })
  app.decorateRequest('auth', null)
  app.decorateRequest('service', null)
  app.decorateRequest('exchange', null)
  app.decorateRequest('bodyBytes', null)
  const { authFailures, rejections, upstreamErrors } = shared

  app.decorateRequest('rateLimitFields', null)
  // Declared policies: per calling service (after its token) or per address (asking for a token proves a credential).
  const policies = policySteps(deps.newStore, (policy) => rejections.inc({ policy }), shared.stores)
  const authenticate = authenticateService(
    serviceTokenKey(config.BETTER_AUTH_SECRET, config.SERVICE_TOKEN_SECRET),
    config.JWT_ISSUER,
    config.JWT_CLOCK_TOLERANCE_S,
    allowlist,
    (reason) => authFailures.inc({ reason }),
  )

  const forwarders = new Map<string, Forward>()
  for (const [name, upstream] of deps.upstreams) {
    const timeoutMs = upstream.def.timeoutMs ?? config.UPSTREAM_TIMEOUT_MS
    forwarders.set(name, createForwarder({ name, pool: upstream.pool, timeoutMs, countError: (labels) => upstreamErrors.inc(labels), tracer: deps.tracing?.tracer }))
  }
  // Tracing on: the token check and each limit are spans of the request's, as on the public listener.
  const { traced, limit } = stepSpans(deps.tracing?.tracer)
  const limiter = (p: ResolvedInternalRoute['policies'][number]) => limit(p, policies.limiter(p))
  const checkToken = traced('token check', { 'tollgate.access': 'service' }, asyncStep(authenticate))
  for (const route of deps.routes) {
    await app.register(async (scope) => {
      const steps: Step[] = route.policies.filter((p) => p.key === 'address').map(limiter)
      if (route.access === 'service') steps.push(checkToken, ...route.policies.filter((p) => p.key === 'service').map(limiter))
      if (steps.length > 0) scope.addHook('onRequest', sequence(steps))
      registerProxyRoutes(scope as never, {
        forward: forwarders.get(route.upstream)!,
        urls: route.paths,
        methods: route.methods as HTTPMethods[],
        streamBodies: true,
        proofKey: deps.proofKey,
        forwardAuthorization: false,
        identity: (request) => (request.service ? { caller: `service:${request.service}`, userId: '' } : { caller: 'anonymous', userId: '' }),
      })
    })
  }
  return app
}
