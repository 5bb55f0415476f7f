/**
 * The gateway, wired from its declarative file (GATEWAY_CONFIG, default the
 * bundled tollgate.yaml): the edge checks, CORS, /docs, then each declared
 * route's pipeline (pipeline/route-pipeline.ts) in front of its upstream.
 */
import { isIP } from 'node:net'
import cors from '@fastify/cors'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { openApiDocument } from './docs/openapi.js'
import { securityHeaders } from './security-headers.js'
import { buildInternalApp } from './internal/internal-app.js'
import { ConfigError, createService, proofKey, startTracing, type App } from '@tollgate/common'
import { Counter, Gauge } from 'prom-client'
import { bundledGatewayFile, readPem, tlsOptions, trustedIssuers, trustProxy, type Config } from './config.js'
import { createCounterStore, type CounterBackend } from './limits/store.js'
import { createTokenVerifier, importHmacKey, type KeySource } from './auth/token-verifier.js'
import { loadGatewayFile, type GatewayDefinition, type ResolvedUpstream } from './gateway-config/load.js'
import { gatewayVariables } from './gateway-config/variables.js'
import { policySteps, registerRoute } from './pipeline/route-pipeline.js'
import { createJwksKeySource, type JwksKeySource } from './auth/jwks-key-source.js'
import { RevocationList } from './auth/revocation-list.js'
import { revocationFeed } from './auth/revocation-feed.js'
import { publicIdentity } from './proxy/forwarded-headers.js'
import { createUpstream, createUpstreamMetrics, type Upstream } from './upstreams/index.js'
import { createForwarder, type Forward } from './proxy/forwarder.js'

const MAX_URL_LENGTH = 4096

export interface BuildOptions {
  logStream?: NodeJS.WritableStream
  /** The clock of token verification and JWKS fetching (epoch ms); tests move it instead of sleeping. */
  now?: () => number
  /** The environment `${VAR}` references in the file read (default process.env); the config's own values win. */
  env?: Record<string, string | undefined>
  /** An already loaded file (the CLI and tests); default: load GATEWAY_CONFIG. */
  definition?: GatewayDefinition
}

export interface UpstreamHandle {
  url: string
  pool: Upstream
  def: ResolvedUpstream
}

export async function buildApp(config: Config, opts: BuildOptions = {}): Promise<App> {
  const definition = opts.definition ?? loadGatewayFile(config.GATEWAY_CONFIG ?? bundledGatewayFile, gatewayVariables(config, opts.env ?? process.env))
  const key = proofKey(config.BETTER_AUTH_SECRET, config.INTERNAL_PROOF_SECRET)

  const https = tlsOptions(config)
  const tracing = await startTracing(config, 'gateway')
  const app = createService({
    tracing,
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
      ...Object.fromEntries(definition.upstreams.map((d) => [d.service, () => upstreams.get(d.name)!.pool.readiness()])),
      revocations: async () => {
        if (!revocations.fresh) throw new Error('revocation list is stale')
      },
      // Never fails readiness: without Redis the limits still hold, per replica.
      'rate-limit-counters': async () => counters.backend(),
    },
    fastify: { trustProxy: trustProxy(config) as never, ...(https ? { https } : {}) },
  })
  const ca = config.UPSTREAM_CA_FILE ? readPem('UPSTREAM_CA_FILE', config.UPSTREAM_CA_FILE) : undefined
  const upstreamMetrics = createUpstreamMetrics(app.metrics)
  const upstreams = new Map<string, UpstreamHandle>()
  for (const def of definition.upstreams) {
    const interval = def.healthCheck?.intervalMs ?? config.UPSTREAM_HEALTH_CHECK_INTERVAL_MS
    // Active checks where there is somewhere else to send traffic: several targets, or a name DNS may spread.
    const spread = def.targets.length > 1 || def.targets.some((t) => isIP(new URL(t).hostname.replace(/^\[|\]$/g, '')) === 0)
    const checked = def.healthCheck !== undefined && interval > 0 && spread
    const pool = createUpstream(
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
      { metrics: upstreamMetrics, log: app.log },
    )
    upstreams.set(def.name, { url: def.targets[0]!, pool, def })
  }
  const feed = upstreams.get(definition.revocationFeed)!
  const revocations = new RevocationList({
    fetchPage: revocationFeed(feed.pool, key, Math.min(config.UPSTREAM_TIMEOUT_MS, 2000)),
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
  // The file's issuers (our own among them), then JWT_TRUSTED_ISSUERS' (kept for existing deployments).
  const sources: KeySource[] = []
  for (const i of definition.issuers) {
    const shape = { requiredClaims: i.required_claims, maxLifetimeS: i.max_lifetime_s }
    sources.push(
      i.algorithms[0] === 'HS256'
        ? { issuer: i.issuer, audience: i.audience, algorithms: ['HS256'], key: await importHmacKey(i.secret!), ...shape }
        : { issuer: i.issuer, audience: i.audience, algorithms: i.algorithms, key: fromJwks(i.jwks_url!, i.algorithms), ...shape },
    )
  }
  for (const i of issuers) {
    if (sources.some((s) => s.issuer === i.issuer)) throw new ConfigError(`JWT_TRUSTED_ISSUERS: ${i.issuer} is already declared in ${definition.file}`)
    sources.push({
      issuer: i.issuer,
      audience: i.audience,
      algorithms: i.algorithms,
      requiredClaims: i.requiredClaims,
      maxLifetimeS: i.maxLifetimeS,
      key: fromJwks(i.jwksUrl, i.algorithms),
    })
  }
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
  const policies = policySteps(counters.newStore, (policy) => rejections.inc({ policy }))
  app.decorateRequest('rateLimitFields', null)

  app.addHook('onClose', async () => {
    for (const source of jwksSources) source.stop()
    revocations.stop()
    await counters.close()
    await Promise.all([...upstreams.values()].map((u) => u.pool.close()))
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
    origin: definition.cors.origins,
    methods: definition.cors.methods ?? ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: definition.cors.allowedHeaders ?? ['Authorization', 'Content-Type', 'X-Request-Id'],
    exposedHeaders: definition.cors.exposedHeaders ?? ['X-Request-Id', 'WWW-Authenticate', 'Retry-After', 'RateLimit', 'RateLimit-Policy'],
    credentials: false,
    maxAge: definition.cors.maxAgeS ?? 600,
    // An OPTIONS without Origin is no preflight: answered 204 too, never a text/plain 400 outside the envelope.
    strictPreflight: false,
  })

  // /docs: the public contract, generated from the services' route schemas.
  const docs = openApiDocument(
    [...upstreams.values()].flatMap((u) => (u.def.openapi ? [{ name: u.def.name, description: u.def.description, pool: u.pool, path: u.def.openapi }] : [])),
    definition.routes,
    app.log,
  )
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

  // One forwarder per (upstream, timeout): a route's timeout override is its own forwarder.
  const forwarders = new Map<string, Forward>()
  const forwarder = (name: string, timeoutMs?: number): Forward => {
    const upstream = upstreams.get(name)!
    const timeout = timeoutMs ?? upstream.def.timeoutMs ?? config.UPSTREAM_TIMEOUT_MS
    const id = `${name} ${timeout}`
    let forward = forwarders.get(id)
    if (!forward) {
      forward = createForwarder({ name, pool: upstream.pool, timeoutMs: timeout, countError: (labels) => upstreamErrors.inc(labels), tracer: tracing?.tracer })
      forwarders.set(id, forward)
    }
    return forward
  }
  const issuerOf = (name: string) => definition.issuers.find((i) => i.name === name)!.issuer
  for (const route of definition.routes) {
    await registerRoute(app, route, {
      verifier,
      revocations,
      policies,
      issuerOf,
      forwarder,
      proofKey: key,
      identity: publicIdentity,
      clockToleranceS: config.JWT_CLOCK_TOLERANCE_S,
      onAuthFailure: (reason) => authFailures.inc({ reason }),
      tracer: tracing?.tracer,
    })
  }

  // The internal listener shares the upstream connections and the counters' store.
  const internal = await buildInternalApp(config, { routes: definition.internalRoutes, upstreams, proofKey: key, newStore: counters.newStore, logStream: opts.logStream, tracing })
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
