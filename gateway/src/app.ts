/**
 * The gateway: CORS, then for each public route group the access rule
 * (verified JWT, ownership) and a proxy to the owning service that strips
 * client identity headers and signs the verified one.
 */
import cors from '@fastify/cors'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { openApiDocument } from './docs/openapi.js'
import { securityHeaders } from './security-headers.js'
import { buildInternalApp } from './internal/internal-app.js'
import type { Pool } from 'undici'
import { createService, normaliseEmail, proofKey, type App } from '@tollgate/common'
import { Counter, Gauge } from 'prom-client'
import { corsOrigins, limitsConfig, readPem, tlsOptions, trustedIssuers, trustProxy, type Config } from './config.js'
import { createCounterStore, type CounterBackend } from './limits/store.js'
import { createLimits } from './limits/rate-limits.js'
import { sequence, type Step } from './hook-steps.js'
import { authenticate } from './auth/authenticate.js'
import { createTokenVerifier, importHmacKey, type KeySource } from './auth/token-verifier.js'
import { createJwksKeySource, type JwksKeySource } from './auth/jwks-key-source.js'
import { RevocationList } from './auth/revocation-list.js'
import { revocationFeed } from './auth/revocation-feed.js'
import { publicIdentity } from './proxy/forwarded-headers.js'
import { createUpstreamPool } from './proxy/upstream.js'
import { forwardersFor } from './proxy/forwarder.js'
import { registerProxyRoutes } from './proxy/proxy-routes.js'
import { publicRoutes, type UpstreamName } from './routes/public-api.js'

const MAX_URL_LENGTH = 4096

export interface BuildOptions {
  logStream?: NodeJS.WritableStream
  /** The clock of token verification and JWKS fetching (epoch ms); tests move it instead of sleeping. */
  now?: () => number
}

async function ping(pool: Pool): Promise<void> {
  const res = await pool.request({ method: 'GET', path: '/health', headersTimeout: 1500, bodyTimeout: 1500 })
  await res.body.dump()
  if (res.statusCode !== 200) throw new Error(`health ${res.statusCode}`)
}

/** "ok" or "unavailable", for the readiness body. */
const upstreamState = (pool: Pool): Promise<string> => ping(pool).then(() => 'ok', () => 'unavailable')

export async function buildApp(config: Config, opts: BuildOptions = {}): Promise<App> {
  const upstreamOptions = {
    ca: config.UPSTREAM_CA_FILE ? readPem('UPSTREAM_CA_FILE', config.UPSTREAM_CA_FILE) : undefined,
    connectTimeoutMs: config.UPSTREAM_CONNECT_TIMEOUT_MS,
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
    connections: config.UPSTREAM_CONNECTIONS,
  }
  const upstreams: Record<UpstreamName, { url: string; pool: Pool }> = {
    auth: { url: config.AUTH_SERVICE_URL, pool: createUpstreamPool(config.AUTH_SERVICE_URL, upstreamOptions) },
    tasks: { url: config.TASK_SERVICE_URL, pool: createUpstreamPool(config.TASK_SERVICE_URL, upstreamOptions) },
  }
  const key = proofKey(config.BETTER_AUTH_SECRET, config.INTERNAL_PROOF_SECRET)

  const https = tlsOptions(config)
  const app = createService({
    // Browser-facing hardening headers (helmet's, computed once) on every answer, router errors included.
    responseHeaders: securityHeaders(),
    name: 'gateway',
    logLevel: config.LOG_LEVEL,
    logStream: opts.logStream,
    bodyLimit: config.BODY_LIMIT_BYTES,
    openapi: false, // the gateway publishes the merged contract at /docs instead
    headersTimeoutMs: config.HEADERS_TIMEOUT_MS,
    requestTimeoutMs: config.REQUEST_TIMEOUT_MS,
    readiness: {
      // Upstreams are reported, never a reason to leave the load balancer: every replica sees the same outage,
      // and dropping them all would stop the routes that still work. A stale revocation list does fail it.
      'auth-service': () => upstreamState(upstreams.auth.pool),
      'task-service': () => upstreamState(upstreams.tasks.pool),
      revocations: async () => {
        if (!revocations.fresh) throw new Error('revocation list is stale')
      },
      // Never fails readiness: without Redis the limits still hold, per replica.
      'rate-limit-counters': async () => counters.backend(),
    },
    fastify: { trustProxy: trustProxy(config) as never, ...(https ? { https } : {}) },
  })
  const revocations = new RevocationList({
    fetchPage: revocationFeed(upstreams.auth.pool, key, Math.min(config.UPSTREAM_TIMEOUT_MS, 2000)),
    pollMs: config.REVOCATION_POLL_MS,
    maxStalenessMs: config.REVOCATION_MAX_STALENESS_MS,
    failOpen: config.REVOCATION_FAIL_OPEN,
    ownIssuer: config.JWT_ISSUER,
    log: app.log,
  })
  app.addHook('onReady', async () => {
    // Serve nothing protected on a list we never loaded: try once before listening, then poll.
    await revocations.sync().catch((err) => app.log.warn({ err: { message: (err as Error).message } }, 'revocation list not loaded yet'))
    revocations.start()
  })
  app.decorateRequest('auth', null)

  const issuers = trustedIssuers(config)
  const jwksSources: JwksKeySource[] = []
  const fromJwks = (url: string, algorithms: string[]) => {
    const source = createJwksKeySource({
      url,
      algorithms,
      timeoutMs: config.JWKS_TIMEOUT_MS,
      cooldownMs: config.JWKS_COOLDOWN_MS,
      refreshMs: config.JWKS_REFRESH_MS,
      log: app.log,
      now: opts.now,
    })
    jwksSources.push(source)
    return source
  }
  // Our own tokens have a fixed shape (API.md); external issuers' as their configuration says.
  const ownShape: Pick<KeySource, 'requiredClaims' | 'maxLifetimeS'> = { requiredClaims: ['iat', 'jti'], maxLifetimeS: config.TOKEN_TTL_S }
  const sources: KeySource[] = [
    config.JWT_ALG === 'HS256'
      ? { issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE, algorithms: ['HS256'], key: await importHmacKey(config.BETTER_AUTH_SECRET), ...ownShape }
      : {
          issuer: config.JWT_ISSUER,
          audience: config.JWT_AUDIENCE,
          algorithms: ['EdDSA'],
          key: fromJwks(config.AUTH_JWKS_URL ?? new URL('/.well-known/jwks.json', config.AUTH_SERVICE_URL).href, ['EdDSA']),
          ...ownShape,
        },
    ...issuers.map((i) => ({
      issuer: i.issuer,
      audience: i.audience,
      algorithms: i.algorithms,
      requiredClaims: i.requiredClaims,
      maxLifetimeS: i.maxLifetimeS,
      key: fromJwks(i.jwksUrl, i.algorithms),
    })),
  ]
  const verifier = createTokenVerifier({ sources, clockToleranceS: config.JWT_CLOCK_TOLERANCE_S, cacheSize: config.TOKEN_CACHE_SIZE, now: opts.now })
  const rejections = new Counter({
    name: 'gateway_rate_limit_rejections_total',
    help: 'Requests refused with 429, by policy',
    labelNames: ['policy'] as const,
    registers: [app.metrics],
  })
  const authFailures = new Counter({
    name: 'gateway_auth_failures_total',
    help: 'Requests refused by the access rules, by error code (UNAUTHORIZED, INVALID_TOKEN, TOKEN_EXPIRED, ...)',
    labelNames: ['reason'] as const,
    registers: [app.metrics],
  })
  const upstreamErrors = new Counter({
    name: 'gateway_upstream_errors_total',
    help: 'Upstream failures answered 502/503/504, by upstream, status and cause',
    labelNames: ['upstream', 'status', 'cause'] as const,
    registers: [app.metrics],
  })
  const backendGauge = new Gauge({
    name: 'gateway_rate_limit_backend',
    help: 'Where rate-limit counters live now (1 for the active one)',
    labelNames: ['backend'] as const,
    registers: [app.metrics],
  })
  const counters = await createCounterStore(
    config.REDIS_URL,
    app.log,
    (backend: CounterBackend) => {
      backendGauge.reset()
      backendGauge.set({ backend }, 1)
    },
    { syncMs: config.RATE_LIMIT_SYNC_MS, cluster: config.REDIS_CLUSTER },
  )
  const limits = createLimits(limitsConfig(config), counters.newStore, (policy) => rejections.inc({ policy }))
  app.decorateRequest('rateLimitFields', null)

  app.addHook('onClose', async () => {
    for (const source of jwksSources) source.stop()
    revocations.stop()
    await counters.close()
    await Promise.all(Object.values(upstreams).map((u) => u.pool.close()))
  })

  // Before any other work: URLs are bounded well below Node's header limit;
  // bodies are streamed to the service, not parsed here, so an oversized one
  // is refused up front when it declares its length (a chunked one is counted
  // as it streams). The security headers are set by createService.
  const bodyLimit = config.BODY_LIMIT_BYTES
  app.addHook('onRequest', (request, _reply, done) => {
    if (request.url.length > MAX_URL_LENGTH) return done(Object.assign(new Error('uri too long'), { statusCode: 414 }))
    const length = request.headers['content-length']
    if (length !== undefined && Number(length) > bodyLimit) {
      return done(Object.assign(new Error('body too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 }))
    }
    done()
  })

  await app.register(cors, {
    origin: corsOrigins(config),
    methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['Authorization', 'Content-Type', 'X-Request-Id'],
    exposedHeaders: ['X-Request-Id', 'WWW-Authenticate', 'Retry-After', 'RateLimit', 'RateLimit-Policy'],
    credentials: false,
    maxAge: 600,
    strictPreflight: true,
  })

  // /docs: the public contract, generated from the services' route schemas.
  const docs = openApiDocument({ auth: upstreams.auth.pool, tasks: upstreams.tasks.pool }, publicRoutes, app.log)
  app.addHook('onReady', async () => docs.start())
  app.addHook('onClose', async () => docs.stop())
  await app.register(swagger, { openapi: { openapi: '3.0.3', info: { title: 'Tollgate API', version: '0.1.0' } } })
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: true, // its own policy on its pages, in place of the API's default-src 'none'
    transformSpecificationClone: false,
    transformSpecification: () => docs.current(),
    uiConfig: { deepLinking: true },
  })

  const forwarders = forwardersFor(upstreams, config.UPSTREAM_TIMEOUT_MS, (labels) => upstreamErrors.inc(labels))
  for (const group of publicRoutes) {
    await app.register(async (scope) => {
      // One hook, in this order: the address limit counts failed authentications too; the user limit needs a verified user.
      const steps: Step[] = [limits.ip]
      if (group.access !== 'anonymous') {
        const onlyIssuer = group.issuers === 'self' ? config.JWT_ISSUER : undefined
        steps.push(authenticate(verifier, revocations, group.access, (reason) => authFailures.inc({ reason }), onlyIssuer), limits.user)
      }
      if (group.limits === 'signup') steps.push(limits.signupIp)
      if (group.limits === 'signin') steps.push(limits.signinIp)
      scope.addHook('onRequest', sequence(steps))
      if (group.revokes) {
        const revokes = group.revokes
        scope.addHook('onResponse', (request, reply, done) => {
          const auth = request.auth
          if (auth && reply.statusCode >= 200 && reply.statusCode < 300) {
            const expS = Math.ceil(auth.expiresAt / 1000)
            // An account deletion cuts off every token of the user, whatever its iat (a racing sign-in may sign after it).
            if (revokes === 'user') revocations.revokeUser(auth.sub, Number.MAX_SAFE_INTEGER, expS + config.JWT_CLOCK_TOLERANCE_S)
            else if (auth.jti) revocations.revokeToken(auth.jti, expS)
          }
          done()
        })
      }
      if (group.limits === 'signin') {
        scope.addHook('preHandler', limits.signinFailureReserve)
        scope.addHook('onResponse', limits.signinFailureSettle)
      }
      // Sign-in and sign-up bodies are parsed here (the email is a rate-limit key) and checked
      // against the service's schema, email normalised as the service does; others stream through.
      if (group.bodySchema) scope.addHook('preValidation', normaliseEmail)
      registerProxyRoutes(scope as never, {
        bodySchema: group.bodySchema,
        forward: forwarders[group.upstream],
        urls: group.urls,
        methods: group.methods,
        streamBodies: group.limits === undefined,
        proofKey: key,
        forwardAuthorization: group.forwardAuthorization ?? false,
        identity: publicIdentity,
        publicCache: group.cache === 'public',
      })
    })
  }

  // The internal listener shares the upstream connections and the counters' store.
  const internal = await buildInternalApp(config, { upstreams, proofKey: key, newStore: counters.newStore, logStream: opts.logStream })
  app.decorate('internal', internal)
  app.addHook('onClose', async () => {
    await internal.close()
  })
  return app
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The internal listener's app (service-to-service), listened on by server.ts. */
    internal: App
  }
}
