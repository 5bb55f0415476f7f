/**
 * Each declared route's pipeline, built from its declaration in one place:
 *
 *   onRequest   address-keyed limits, token + revocation + ownership, user-keyed limits
 *   body        streamed through (`body: stream`) or parsed and checked (`body: json(...)`)
 *   preHandler  limits keyed by the body (email), then the failure budgets' reservations
 *   handler     forward to the route's upstream
 *   onResponse  failure budgets settled; a 2xx on a revoking route revokes
 *
 * Steps are composed once per route at start; a request runs them as one
 * callback-style hook per phase, with no closure or promise of its own.
 */
import type { FastifyInstance, FastifyRequest, HTTPMethods } from 'fastify'
import { normaliseEmail, type Identity } from '@tollgate/common'
import { sequence, type Step } from '../hook-steps.js'
import { authenticate } from '../auth/authenticate.js'
import type { TokenVerifier } from '../auth/token-verifier.js'
import type { RevocationList } from '../auth/revocation-list.js'
import { clientKey, emailAtAddress, emailOf, makeFailureBudgets, makeLimiter } from '../limits/rate-limits.js'
import type { CounterStore, CountingMode } from '../limits/store.js'
import type { Forward } from '../proxy/forwarder.js'
import { acceptRawBodies, proxyRoutes } from '../proxy/proxy-routes.js'
import type { ResolvedPolicy, ResolvedRoute } from '../gateway-config/load.js'
import { openStream, refuseQueryToken, registerWebSocketRoutes, type LiveDeps } from '../streams/live-routes.js'
import type { Tracer } from '@opentelemetry/api'
import { recordTokenCache, stepSpans } from '../tracing.js'

type Key = (req: FastifyRequest) => string | undefined

const KEYS: Record<ResolvedPolicy['key'], Key> = {
  address: clientKey,
  user: (req: FastifyRequest) => req.auth?.sub,
  email: emailOf,
  'email+address': emailAtAddress,
  service: (req: FastifyRequest) => (req as FastifyRequest & { service?: string | null }).service ?? undefined,
}

/**
 * One counter store and one limiter step per policy, shared by every route that names it.
 * `stores` may outlive these steps (a config reload keeps the counts: it never resets a limit).
 */
export function policySteps(
  newStore: (mode?: CountingMode) => CounterStore,
  onRejected: (policy: string) => void,
  stores = new Map<string, CounterStore>(),
) {
  const limiters = new Map<string, Step>()
  const storeOf = (policy: ResolvedPolicy) => {
    const id = `${policy.name} ${policy.mode}`
    let store = stores.get(id)
    if (!store) stores.set(id, (store = newStore(policy.mode)))
    return store
  }
  const asPolicy = (p: ResolvedPolicy) => ({ name: p.name, max: p.limit, windowMs: p.window_s * 1000 })
  return {
    /** Counts every request. */
    limiter(policy: ResolvedPolicy): Step {
      let step = limiters.get(policy.name)
      if (!step) limiters.set(policy.name, (step = makeLimiter(storeOf(policy), asPolicy(policy), KEYS[policy.key], onRejected)))
      return step
    },
    /** Reserve-then-settle budgets: only 401 answers keep their count. */
    failureBudgets(policies: ResolvedPolicy[]) {
      return makeFailureBudgets(
        policies.map((p) => ({ store: storeOf(p), policy: asPolicy(p), key: KEYS[p.key] })),
        onRejected,
      )
    },
  }
}

export type PolicySteps = ReturnType<typeof policySteps>

export interface PipelineDeps {
  verifier: TokenVerifier
  revocations: RevocationList
  policies: PolicySteps
  /** Issuer name -> its `iss`, for routes that accept only some issuers. */
  issuerOf: (name: string) => string
  forwarder: (upstream: string, timeoutMs?: number, live?: boolean) => Forward
  proofKey: Buffer
  identity: (request: FastifyRequest) => Identity
  clockToleranceS: number
  onAuthFailure: (reason: string) => void
  /** Live routes (`stream:`): the open streams' registry, and where a WebSocket goes (the upstream's next target in rotation, or null: all out), its timeout. */
  live?: LiveDeps & { target: (upstream: string) => () => string | null; timeoutMs: (upstream: string) => number }
  /** Tracing on: each step is a span of the request's (token check, rate limits). */
  tracer?: Tracer | null
}

type Hook = Step
export interface RouteHooks {
  onRequest?: Hook
  preValidation?: Hook
  preHandler?: Hook
  onResponse?: Hook[]
}

/**
 * Register the declared routes. Routes take their pipeline as route-level hooks, and share one
 * encapsulated scope per body kind (the pass-through or JSON-only parsers must not leak): a scope per
 * route cost 12 s of start-up and 40 MB of heap for a 1,000-route file.
 */
export async function registerRoutes(app: FastifyInstance, routes: ResolvedRoute[], deps: PipelineDeps): Promise<void> {
  if (routes.some((r) => r.stream) && !deps.live) throw new Error('a live route (stream:) needs the stream registry')
  const websockets = routes.filter((r) => r.stream === 'websocket')
  const streamed = routes.filter((r) => r.body.kind === 'stream' && r.stream !== 'websocket')
  const parsed = routes.filter((r) => r.body.kind === 'json' && r.stream !== 'websocket')
  // A WebSocket route is @fastify/http-proxy's plugin: its own scope, the pipeline as that scope's hooks.
  for (const route of websockets) {
    await app.register(async (scope) => {
      const hooks = routeHooks(route, deps)
      if (hooks.onRequest) scope.addHook('onRequest', hooks.onRequest)
      if (hooks.preValidation) scope.addHook('preValidation', hooks.preValidation)
      if (hooks.preHandler) scope.addHook('preHandler', hooks.preHandler)
      for (const hook of hooks.onResponse ?? []) scope.addHook('onResponse', hook)
      const live = deps.live!
      await registerWebSocketRoutes(scope, {
        paths: route.paths,
        target: live.target(route.upstream),
        proofKey: deps.proofKey,
        identity: deps.identity,
        timeoutMs: route.timeoutMs ?? live.timeoutMs(route.upstream),
        open: openStream('websocket', live),
      })
    })
  }
  if (streamed.length > 0) {
    await app.register(async (scope) => {
      acceptRawBodies(scope)
      for (const route of streamed) proxyRoute(scope, route, deps)
    })
  }
  if (parsed.length > 0) {
    await app.register(async (scope) => {
      // `body: json` means JSON: Fastify's text/plain parser would hand a string on as a JSON string.
      scope.removeContentTypeParser('text/plain')
      for (const route of parsed) proxyRoute(scope, route, deps)
    })
  }
  optionsRoutes(app, routes, deps)
}

/**
 * OPTIONS on the path of a route that needs a token: that route's checks first, as for any request to
 * the path, then a 404 as for any undeclared method, never proxied. Only a genuine preflight skips the
 * checks (SECURITY.md S-48), answered by the CORS hook before any route. A path whose routes declare
 * OPTIONS is theirs; one with several protected routes takes the strictest (owner over user).
 */
function optionsRoutes(app: FastifyInstance, routes: ResolvedRoute[], deps: PipelineDeps): void {
  // find-my-way keeps one route per method and path shape, whatever its parameters are named.
  const shapeOf = (path: string) => path.replace(/:[^/]+/g, ':')
  const declared = new Set(routes.filter((r) => r.methods.includes('OPTIONS')).flatMap((r) => r.paths.map(shapeOf)))
  const guarded = new Map<string, { path: string; route: ResolvedRoute }>()
  for (const route of routes) {
    if (route.access === 'anonymous') continue
    for (const path of route.paths) {
      const shape = shapeOf(path)
      if (declared.has(shape)) continue
      const prior = guarded.get(shape)
      if (prior === undefined || (prior.route.access === 'user' && route.access === 'owner')) guarded.set(shape, { path, route })
    }
  }
  for (const { path, route } of guarded.values()) {
    const { onRequest } = routeHooks(route, deps)
    app.route({
      method: 'OPTIONS',
      url: path,
      schema: { hide: true },
      ...(onRequest ? { onRequest } : {}),
      handler: (_request, reply) => {
        reply.callNotFound()
      },
    })
  }
}

function proxyRoute(scope: FastifyInstance, route: ResolvedRoute, deps: PipelineDeps): void {
  proxyRoutes(
    scope,
    {
      ...(route.stream === 'sse' ? { openLive: openStream('sse', deps.live!) } : {}),
      bodySchema: route.body.kind === 'json' ? route.body.schema : undefined,
      forward: deps.forwarder(route.upstream, route.timeoutMs, route.stream === 'sse'),
      urls: route.paths,
      methods: route.methods as HTTPMethods[],
      streamBodies: route.body.kind === 'stream',
      proofKey: deps.proofKey,
      forwardAuthorization: route.forwardAuthorization,
      identity: deps.identity,
      publicCache: route.cache === 'public',
    },
    routeHooks(route, deps),
  )
}

/** One declared route's pipeline as hooks, composed once at start. */
export function routeHooks(route: ResolvedRoute, deps: PipelineDeps): RouteHooks {
  const hooks: RouteHooks = {}
  const countAll = route.policies.filter((p) => p.count === 'all')
  const failures = route.policies.filter((p) => p.count === 'failures')
  const beforeToken = countAll.filter((p) => p.key === 'address')
  const afterToken = countAll.filter((p) => p.key === 'user')
  const fromBody = countAll.filter((p) => p.key === 'email' || p.key === 'email+address')

  const tracer = deps.tracer
  const { traced, limit } = stepSpans(tracer)
  const limiter = (p: ResolvedPolicy) => limit(p, deps.policies.limiter(p))
  const onRequest: Step[] = beforeToken.map(limiter)
  // A live route never reads a token from the query, and refuses one there before anything else.
  if (route.stream) onRequest.unshift(refuseQueryToken)
  if (route.access !== 'anonymous') {
    const issuers = route.issuers && new Set(route.issuers.map(deps.issuerOf))
    onRequest.push(
      traced(
        'token check',
        { 'tollgate.access': route.access },
        authenticate(deps.verifier, deps.revocations, route.access, deps.onAuthFailure, {
          ...(issuers ? { issuers } : {}),
          ...(route.ownerParam ? { ownerParam: route.ownerParam } : {}),
          ...(route.stream === 'websocket' ? { tokenFrom: 'subprotocol' as const } : {}),
          ...(tracer ? { onCache: recordTokenCache } : {}),
        }),
      ),
    )
  }
  for (const p of afterToken) onRequest.push(limiter(p))
  if (onRequest.length > 0) hooks.onRequest = sequence(onRequest)

  const onResponse: Hook[] = []
  const preHandler: Step[] = fromBody.map(limiter)
  if (failures.length > 0) {
    const budgets = deps.policies.failureBudgets(failures)
    preHandler.push(traced('rate limit', { 'tollgate.rate_limit.policy': failures.map((p) => p.name).join(','), 'tollgate.rate_limit.count': 'failures' }, budgets.reserve))
    onResponse.push(budgets.settle)
  }
  if (preHandler.length > 0) hooks.preHandler = sequence(preHandler)

  if (route.revokes) {
    const revokes = route.revokes
    const { revocations, clockToleranceS } = deps
    onResponse.push((request, reply, done) => {
      const auth = request.auth
      if (auth && reply.statusCode >= 200 && reply.statusCode < 300) {
        const expS = Math.ceil(auth.expiresAt / 1000)
        // An account deletion cuts off every token of the user, whatever its iat (a racing sign-in may sign after it).
        if (revokes === 'user') revocations.revokeUser(auth.sub, Number.MAX_SAFE_INTEGER, expS + clockToleranceS)
        else if (auth.jti) revocations.revokeToken(auth.jti, expS)
      }
      done()
    })
  }
  if (onResponse.length > 0) hooks.onResponse = onResponse

  // Emails normalised as the auth-service does: its schema accepts them, and a limit's key is the account's.
  if (route.body.kind === 'json' && route.body.normaliseEmail) hooks.preValidation = normaliseEmail as unknown as Hook
  return hooks
}
