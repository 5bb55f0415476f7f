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
 * reflects a listed Origin and answers preflights. The one difference from
 * the plugin: answers refused before any hook (router errors, the size and
 * URL checks) carry those constant fields too.
 */
import type { FastifyInstance } from 'fastify'

export interface CorsSection {
  origins: string[]
  methods?: string[]
  allowedHeaders?: string[]
  exposedHeaders?: string[]
  maxAgeS?: number
}

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
    // An OPTIONS without Origin is answered 204 too, never a text/plain 400 outside the envelope.
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
    if (origin !== undefined && !anyOrigin && listed.has(origin)) reply.header('access-control-allow-origin', origin)
    if (request.raw.method !== 'OPTIONS') {
      done()
      return
    }
    // Any OPTIONS is answered as a preflight, with or without Origin: never a 404 or a
    // text/plain 400 outside the envelope. An origin not listed gets no Allow-Origin, so the browser stops there.
    reply
      .header('access-control-allow-methods', allowMethods)
      .header('access-control-allow-headers', allowHeaders)
      .header('access-control-max-age', maxAge)
      .header('content-length', '0')
      .code(204)
      .send()
  })
  // As the plugin does: OPTIONS on any path is a route of its own (the hook answers before its handler would run).
  app.options('*', { schema: { hide: true } }, (_request, reply) => {
    reply.code(204).send()
  })
}
