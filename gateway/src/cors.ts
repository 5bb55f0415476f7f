/**
 * CORS for the public listener: what @fastify/cors answers for the gateway's
 * options (a list of exact origins or '*', no credentials, preflight answered
 * before any route's checks), computed once at start.
 *
 * Why not the plugin on the hot path: for every request it spreads its
 * options into a new object, reads `request.routeOptions` twice (Fastify 5
 * builds a new object on each read) and joins the exposed-header list.
 * Counted under callgrind (bench/lab/cors-instructions.mjs) this version runs
 * about 4,900 fewer instructions a request. gateway/test/cors.test.ts answers
 * the same requests with both and compares every status, header and body.
 *
 * What never depends on the request (Vary: Origin, the exposed headers, the
 * '*' origin) joins the security headers each answer copies; the hook only
 * reflects a listed Origin and answers preflights. Differences from the
 * plugin: only a genuine preflight is answered at the edge (the plugin's
 * strictPreflight: false answered every OPTIONS, strict mode a text/plain
 * 400); answers refused before any hook (router errors, the size and URL
 * checks) carry the constant fields too.
 */
import type { FastifyInstance } from 'fastify'
import type { GatewayDefinition } from './gateway-config/load.js'

/** The gateway file's cors section, as the loader resolves it. */
export type CorsSection = GatewayDefinition['cors']

export interface CorsOptions {
  origins: string[]
  methods: string[]
  allowedHeaders: string[]
  exposedHeaders: string[]
  maxAgeS: number
}

/** The gateway file's cors section with its defaults filled in. */
export function corsOptionsOf(section: CorsSection): CorsOptions {
  return {
    origins: section.origins,
    methods: section.methods ?? ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: section.allowedHeaders ?? ['Authorization', 'Content-Type', 'X-Request-Id', 'Last-Event-ID'],
    exposedHeaders: section.exposedHeaders ?? ['X-Request-Id', 'WWW-Authenticate', 'Retry-After', 'RateLimit', 'RateLimit-Policy'],
    maxAgeS: section.maxAgeS ?? 600,
  }
}

/** The @fastify/cors options whose answers these are: the reference its differential test and lab compare against. */
export function pluginOptionsOf(o: CorsOptions) {
  return {
    origin: o.origins,
    methods: o.methods,
    allowedHeaders: o.allowedHeaders,
    exposedHeaders: o.exposedHeaders,
    credentials: false,
    maxAge: o.maxAgeS,
    // Its strict mode refuses a non-preflight OPTIONS in text/plain; the comparison sends those to the
    // plugin with `preflight: false` instead (what the gateway does: leave them to the routes).
    strictPreflight: false,
  }
}

/** The CORS fields every answer carries, whatever its request: merged into the constant response headers. */
export function corsEveryAnswer(o: CorsOptions): Record<string, string> {
  const anyOrigin = o.origins.includes('*')
  return {
    // A list of origins: the answer depends on Origin, so caches must key on it (Fetch standard, CORS and HTTP caches).
    ...(anyOrigin ? { 'access-control-allow-origin': '*' } : { vary: 'Origin' }),
    'access-control-expose-headers': o.exposedHeaders.join(', '),
  }
}

/**
 * The per-request part, one onRequest hook (registered before the routes, so a
 * preflight is answered before a route's token check would refuse it: the
 * browser sends no Authorization on a preflight).
 */
export function installCors(app: FastifyInstance, o: CorsOptions): void {
  const anyOrigin = o.origins.includes('*')
  const listed = new Set(o.origins)
  const allowMethods = o.methods.join(', ')
  const allowHeaders = o.allowedHeaders.join(', ')
  const maxAge = String(o.maxAgeS)
  app.addHook('onRequest', (request, reply, done) => {
    const origin = request.headers.origin
    if (!origin) {
      done()
      return
    }
    if (!anyOrigin && listed.has(origin)) reply.header('access-control-allow-origin', origin)
    // Only a genuine preflight (OPTIONS with a non-empty Origin and Access-Control-Request-Method, Envoy's
    // jwt_authn test) skips the route's checks (SECURITY.md S-48): any other OPTIONS is a request like the
    // rest, refused without a token on a protected path (optionsRoutes) and never answered as a preflight. An
    // origin not listed gets no Allow-Origin, so the browser stops there.
    if (request.raw.method !== 'OPTIONS' || !request.headers['access-control-request-method']) {
      done()
      return
    }
    reply
      .header('access-control-allow-methods', allowMethods)
      .header('access-control-allow-headers', allowHeaders)
      .header('access-control-max-age', maxAge)
      .header('content-length', '0')
      .code(204)
      .send()
  })
  // As the plugin does: OPTIONS on any path is a route, so a preflight to any path reaches the hook; any
  // other OPTIONS that reaches it (no route of its path declares OPTIONS or needs a token) is a 404 as an
  // undeclared method is.
  app.options('*', { schema: { hide: true } }, (_request, reply) => {
    reply.callNotFound()
  })
}
