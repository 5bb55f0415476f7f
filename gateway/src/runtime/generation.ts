/**
 * One generation of the gateway: the Fastify instances (public and internal)
 * built from one reading of the declarative file: the edge checks, CORS,
 * /docs, then each declared route's pipeline (pipeline/route-pipeline.ts) in
 * front of its upstream. What must outlive a reload comes from the runtime.
 * Closing a generation stops what it started (JWKS refreshes, /docs polling)
 * and gives its upstream pools back.
 */
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyRequest, FastifyServerOptions } from 'fastify'
import { ACCESS_TOKEN_TYP, ConfigError, createService, PayloadTooLarge, UriTooLong, type App, type ReadinessChecks } from '@tollgate/common'
import { docsEnabled } from '../admin/admin-app.js'
import { gatewayAccessFields } from '../access-log.js'
import { openApiDocument } from '../docs/openapi.js'
import { securityHeaders } from '../security-headers.js'
import { corsEveryAnswer, corsOptionsOf, installCors } from '../cors.js'
import { buildInternalApp } from '../internal/internal-app.js'
import { readPem, tlsOptions, trustedIssuers, trustProxy, type Config } from '../config.js'
import { installLiveStreams, liveUpstream } from '../streams/install.js'
import { createTokenVerifier, importHmacKey, type KeySource } from '../auth/token-verifier.js'
import type { GatewayDefinition, ResolvedUpstream } from '../gateway-config/load.js'
import { policySteps, registerRoutes } from '../pipeline/route-pipeline.js'
import { createJwksKeySource, type JwksKeySource } from '../auth/jwks-key-source.js'
import { publicIdentity } from '../proxy/forwarded-headers.js'
import type { Upstream } from '../upstreams/index.js'
import { createForwarder, type DeadlineTimers, type Forward } from '../proxy/forwarder.js'
import type { Runtime } from './runtime.js'

const MAX_URL_LENGTH = 4096

export interface GenerationOptions {
  logStream?: NodeJS.WritableStream
  /** The clock of token verification and JWKS fetching (epoch ms); tests move it instead of sleeping. */
  now?: () => number
  /** Extra Fastify options of the public and internal instances (the reloading listener's serverFactory). */
  fastify?: Partial<FastifyServerOptions>
  /** The clock of the forwarders' upstream deadlines; default Node's timers (tests: a controlled clock). */
  timers?: DeadlineTimers
}

export interface UpstreamHandle {
  url: string
  pool: Upstream
  def: ResolvedUpstream
}

export async function buildGeneration(config: Config, runtime: Runtime, definition: GatewayDefinition, opts: GenerationOptions = {}): Promise<App> {
  const upstreams = new Map<string, UpstreamHandle>()
  for (const def of definition.upstreams) upstreams.set(def.name, { url: def.targets[0]!, pool: runtime.pools.acquire(def), def })
  const jwksSources: JwksKeySource[] = []
  const releaseAll = () => {
    for (const source of jwksSources) source.stop()
    for (const u of upstreams.values()) runtime.pools.release(u.def)
  }
  try {
    return await build(config, runtime, definition, opts, upstreams, jwksSources, releaseAll)
  } catch (err) {
    releaseAll()
    throw err
  }
}

async function build(
  config: Config,
  runtime: Runtime,
  definition: GatewayDefinition,
  opts: GenerationOptions,
  upstreams: Map<string, UpstreamHandle>,
  jwksSources: JwksKeySource[],
  releaseAll: () => void,
): Promise<App> {
  const { revocations, counters } = runtime
  // With a serverFactory the shared listener terminates TLS; the instance only routes.
  const https = opts.fastify?.serverFactory ? undefined : tlsOptions(config)
  // Before any other work: URLs are bounded well below Node's header limit;
  // bodies are streamed to the service, not parsed here, so an oversized one
  // is refused up front when it declares its length (a chunked one is counted
  // as it streams).
  const bodyLimit = config.BODY_LIMIT_BYTES
  const admit = (request: FastifyRequest): Error | undefined => {
    if (request.url.length > MAX_URL_LENGTH) return new UriTooLong()
    const length = request.headers['content-length']
    if (length !== undefined && Number(length) > bodyLimit) return new PayloadTooLarge()
    return undefined
  }
  const cors = corsOptionsOf(definition.cors)
  const app = createService({
    // Browser-facing hardening headers (helmet's, computed once) and CORS's constant fields on every answer, router errors included.
    responseHeaders: { ...securityHeaders(), ...corsEveryAnswer(cors) },
    name: 'gateway',
    logLevel: config.LOG_LEVEL,
    logStream: opts.logStream,
    bodyLimit: config.BODY_LIMIT_BYTES,
    openapi: false, // the gateway publishes the merged contract at /docs instead
    headersTimeoutMs: config.HEADERS_TIMEOUT_MS,
    requestTimeoutMs: config.REQUEST_TIMEOUT_MS,
    metrics: runtime.metrics,
    tracing: runtime.tracing,
    tracingShared: true,
    // /ready and /metrics are served on the admin listener (admin/admin-app.ts), never on the public one.
    probes: false,
    accessLog: gatewayAccessFields,
    admit,
    fastify: { trustProxy: trustProxy(config) as never, ...(https ? { https } : {}), ...opts.fastify },
  })
  app.decorateRequest('auth', null)
  app.decorateRequest('exchange', null)
  app.decorateRequest('bodyBytes', null)
  // This generation's readiness, served by the admin listener (whichever generation is current).
  app.decorate('readiness', {
    // Upstreams are reported, never a reason to leave the load balancer: every replica sees the same outage,
    // and dropping them all would stop the routes that still work. A stale revocation list does fail it.
    ...Object.fromEntries(definition.upstreams.map((d) => [d.service, () => upstreams.get(d.name)!.pool.readiness()])),
    revocations: async () => {
      if (!revocations.fresh) throw new Error('revocation list is stale')
    },
    // Never fails readiness: without Redis the limits still hold, per replica.
    'rate-limit-counters': async () => counters.backend(),
  } satisfies ReadinessChecks)

  const issuers = trustedIssuers(config)
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
    // Our auth-service's tokens are access tokens by their typ (RFC 9068), whatever the file says; another issuer's as declared.
    const own = i.issuer === config.JWT_ISSUER
    if (own && i.typ !== undefined && i.typ.toLowerCase() !== ACCESS_TOKEN_TYP) {
      throw new ConfigError(`${definition.file}: issuers.${i.name}.typ: the auth-service's tokens are typed ${ACCESS_TOKEN_TYP}`)
    }
    const shape = { requiredClaims: i.required_claims, maxLifetimeS: i.max_lifetime_s, typ: own ? ACCESS_TOKEN_TYP : i.typ }
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
  const policies = policySteps(counters.newStore, (policy) => runtime.rejections.inc({ policy }), runtime.stores)
  app.decorateRequest('rateLimitFields', null)

  installCors(app, cors)

  // /docs: the public contract, generated from the services' route schemas.
  const docs = openApiDocument(
    [...upstreams.values()].flatMap((u) => (u.def.openapi ? [{ name: u.def.name, description: u.def.description, pool: u.pool, path: u.def.openapi }] : [])),
    definition.routes,
    app.log,
  )
  if (docsEnabled(config)) {
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
  }

  // One forwarder per (upstream, timeout): a route's timeout override is its own forwarder.
  const forwarders = new Map<string, Forward>()
  // Live streams hold their connections for as long as they last: a pool of their own per upstream.
  const livePools = new Map<string, Upstream>()
  app.addHook('onClose', async () => {
    await Promise.all([...livePools.values()].map((p) => p.close()))
  })
  const ca = config.UPSTREAM_CA_FILE ? readPem('UPSTREAM_CA_FILE', config.UPSTREAM_CA_FILE) : undefined
  const livePool = (name: string): Upstream => {
    let pool = livePools.get(name)
    if (!pool) livePools.set(name, (pool = liveUpstream(upstreams.get(name)!.def, config, ca, { metrics: runtime.upstreamMetrics, log: app.log })))
    return pool
  }
  const forwarder = (name: string, timeoutMs?: number, live = false): Forward => {
    const upstream = upstreams.get(name)!
    const timeout = timeoutMs ?? upstream.def.timeoutMs ?? config.UPSTREAM_TIMEOUT_MS
    const id = `${name} ${timeout}${live ? ' live' : ''}`
    let forward = forwarders.get(id)
    if (!forward) {
      forward = createForwarder({ name, pool: live ? livePool(name) : upstream.pool, timeoutMs: timeout, countError: (labels) => runtime.upstreamErrors.inc(labels), tracer: runtime.tracing?.tracer, timers: opts.timers })
      forwarders.set(id, forward)
    }
    return forward
  }
  const issuerOf = (name: string) => definition.issuers.find((i) => i.name === name)!.issuer
  const live = installLiveStreams(app, runtime.streams, { now: opts.now ?? Date.now, clockToleranceMs: config.JWT_CLOCK_TOLERANCE_S * 1000 })
  await registerRoutes(app, definition.routes, {
    verifier,
    revocations,
    policies,
    issuerOf,
    forwarder,
    proofKey: runtime.proofKey,
    identity: publicIdentity,
    clockToleranceS: config.JWT_CLOCK_TOLERANCE_S,
    onAuthFailure: (reason) => runtime.authFailures.inc({ reason }),
    tracer: runtime.tracing?.tracer,
    live: {
      ...live,
      target: (name) => {
        const pool = upstreams.get(name)!.pool
        return () => pool.pickUrl()
      },
      timeoutMs: (name) => upstreams.get(name)!.def.timeoutMs ?? config.UPSTREAM_TIMEOUT_MS,
    },
  })

  // The internal listener shares the upstream connections and the counters' store.
  const internal = await buildInternalApp(config, {
    routes: definition.internalRoutes,
    upstreams,
    proofKey: runtime.proofKey,
    newStore: counters.newStore,
    logStream: opts.logStream,
    shared: runtime.internal,
    tracing: runtime.tracing,
    ...(opts.fastify?.serverFactory ? { fastify: { serverFactory: opts.fastify.serverFactory } } : {}),
  })
  app.decorate('internal', internal)
  app.decorate('revocationFeed', upstreams.get(definition.revocationFeed)!.pool)
  app.addHook('onClose', async () => {
    await internal.close()
    releaseAll()
  })
  return app
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The internal listener's app (service-to-service), listened on by server.ts. */
    internal: App
    /** The pool of the upstream whose revocation feed this generation names. */
    revocationFeed: Upstream
    /** This generation's readiness checks, served on the admin listener. */
    readiness: ReadinessChecks
  }
}
