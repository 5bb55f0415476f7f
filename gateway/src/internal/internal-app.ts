/**
 * The gateway's internal listener (INTERNAL_PORT, never public): the path for
 * service-to-service calls, with the same guarantees as public traffic. It
 * accepts only service tokens (user tokens get 401), enforces a deny-by-default
 * allowlist of routes per calling service (403), limits each service's rate,
 * and forwards the caller with the same signed proof users get, so a service
 * can tell a service call from a user call.
 */
import type { Dispatcher } from 'undici'
import { Counter } from 'prom-client'
import { createService, serviceTokenKey, type App } from '@tollgate/common'
import type { Config } from '../config.js'
import { clientKey, makeLimiter } from '../limits/rate-limits.js'
import { asyncStep, sequence } from '../hook-steps.js'
import type { CounterStore } from '../limits/store.js'
import { registerProxyRoutes } from '../proxy/proxy-routes.js'
import { forwardersFor } from '../proxy/forwarder.js'
import type { UpstreamName } from '../routes/public-api.js'
import { internalRoutes } from './routes.js'
import { authenticateService, parseAllowlist } from './service-auth.js'

export interface InternalDeps {
  upstreams: Record<UpstreamName, { url: string; pool: Dispatcher }>
  proofKey: Buffer
  newStore: () => CounterStore
  logStream?: NodeJS.WritableStream
}

export async function buildInternalApp(config: Config, deps: InternalDeps): Promise<App> {
  const allowlist = parseAllowlist(config.INTERNAL_ALLOWLIST)
  const app = createService({
    name: 'gateway-internal',
    logLevel: config.LOG_LEVEL,
    logStream: deps.logStream,
    openapi: false,
    bodyLimit: config.BODY_LIMIT_BYTES,
  })
  app.decorateRequest('auth', null)
  app.decorateRequest('service', null)

  const metric = (name: string, help: string, labelNames: string[]) => new Counter({ name, help, labelNames, registers: [app.metrics] })
  const authFailures = metric('gateway_internal_auth_failures_total', 'Internal calls refused, by error code', ['reason'])
  const rejections = metric('gateway_internal_rate_limit_rejections_total', 'Internal calls refused with 429, by policy', ['policy'])
  const upstreamErrors = metric('gateway_upstream_errors_total', 'Upstream failures answered 502/503/504', ['upstream', 'status', 'cause'])

  app.decorateRequest('rateLimitFields', null)
  const perService = makeLimiter(
    deps.newStore(),
    { name: 'service', max: config.RATE_LIMIT_SERVICE_MAX, windowMs: config.RATE_LIMIT_SERVICE_WINDOW_S * 1000 },
    (req) => req.service ?? undefined,
    (policy) => rejections.inc({ policy }),
  )
  // Asking for a token proves a credential: limited per address like a sign-in.
  const credentialAttempts = makeLimiter(
    deps.newStore(),
    { name: 'service-credential', max: config.RATE_LIMIT_SIGNIN_IP_MAX, windowMs: config.RATE_LIMIT_SIGNIN_IP_WINDOW_S * 1000 },
    clientKey,
    (policy) => rejections.inc({ policy }),
  )
  const authenticate = authenticateService(
    serviceTokenKey(config.BETTER_AUTH_SECRET, config.SERVICE_TOKEN_SECRET),
    config.JWT_ISSUER,
    config.JWT_CLOCK_TOLERANCE_S,
    allowlist,
    (reason) => authFailures.inc({ reason }),
  )

  const forwarders = forwardersFor(deps.upstreams, config.UPSTREAM_TIMEOUT_MS, (labels) => upstreamErrors.inc(labels))
  for (const group of internalRoutes) {
    await app.register(async (scope) => {
      scope.addHook('onRequest', group.access === 'service' ? sequence([asyncStep(authenticate), perService]) : credentialAttempts)
      registerProxyRoutes(scope as never, {
        forward: forwarders[group.upstream],
        urls: group.urls,
        methods: group.methods,
        streamBodies: true,
        proofKey: deps.proofKey,
        forwardAuthorization: false,
        identity: (request) => (request.service ? { caller: `service:${request.service}`, userId: '' } : { caller: 'anonymous', userId: '' }),
      })
    })
  }
  return app
}
