/**
 * Proxied routes for one route group: each (method, url) is a Fastify route
 * whose handler forwards the request to the group's upstream. Shared by the
 * public and the internal listener.
 *
 * Bodies stream through untouched unless the group parses them (sign-in and
 * sign-up read the email for their limits): then the parsed JSON is sent on.
 * Every GET route also answers HEAD, forwarded upstream as HEAD (as
 * @fastify/reply-from does), so the upstream decides the head it sends.
 * A path with a `..` segment, raw or percent-encoded, is refused (400): an
 * upstream that normalises paths must never see one.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods, RouteOptions } from 'fastify'
import { errors, type Identity } from '@tollgate/common'
import type { Forward } from './forwarder.js'
import { forwardedHeaders } from './forwarded-headers.js'
import { limitStreamedBody } from '../streamed-body-limit.js'
import type { LiveStream } from '../streams/registry.js'

/** A route's own hooks (its pipeline), as Fastify's route options take them. */
export type RouteHookOptions = Pick<RouteOptions, 'onRequest' | 'preValidation' | 'preHandler' | 'onResponse'>

export interface ProxyRoutesOptions {
  forward: Forward
  urls: string[]
  methods: HTTPMethods[]
  /** Stream bodies through untouched (true), or parse them here first (false). */
  streamBodies: boolean
  proofKey: Buffer
  forwardAuthorization: boolean
  /** Who the gateway vouches for on this request. */
  identity: (request: FastifyRequest) => Identity
  /** The answers are the same for everyone: the upstream's cache headers pass (else `no-store`). */
  publicCache?: boolean
  /** JSON schema a parsed body must match before anything else reads it (sign-in, sign-up). */
  bodySchema?: object
  /** A live route (`stream: sse`): count and govern each open (throws 429 past the user's limit). */
  openLive?: (request: FastifyRequest) => LiveStream
}

/** Register in its own encapsulated scope: the pass-through body parsers must not leak to other routes. */
export function registerProxyRoutes(scope: FastifyInstance, o: ProxyRoutesOptions): void {
  if (o.streamBodies) acceptRawBodies(scope)
  proxyRoutes(scope, o)
}

/** Hand Fastify's body step the raw stream, whatever its type; it is piped upstream as it arrives. Scope it. */
export function acceptRawBodies(scope: FastifyInstance): void {
  scope.removeAllContentTypeParsers()
  scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
}

/** The routes of `o`, in a scope whose parsers fit `o.streamBodies`, each with `hooks` (its pipeline). */
export function proxyRoutes(scope: FastifyInstance, o: ProxyRoutesOptions, hooks: RouteHookOptions = {}): void {
  const headerOptions = { proofKey: o.proofKey, forwardAuthorization: o.forwardAuthorization, reserialisedBody: !o.streamBodies }
  const forward = o.forward
  const publicCache = o.publicCache ?? false
  const openLive = o.openLive
  const bodyLimit = scope.initialConfig.bodyLimit ?? 1024 * 1024

  const handler = (request: FastifyRequest, reply: FastifyReply) => {
    if (hasDotSegment(request.url)) throw errors.validation('Invalid path')
    const headers = forwardedHeaders(request, o.identity(request), headerOptions)
    let body: string | NodeJS.ReadableStream | null = null
    if (o.streamBodies) {
      if (hasBody(request)) body = limitStreamedBody(request, reply, bodyLimit)
    } else if (request.body !== undefined && request.body !== null) {
      body = JSON.stringify(request.body)
    }
    // live is undefined off live routes (the forwarder reads it with ?. and !== undefined): no spread, one object shape.
    forward(reply, { method: request.method, path: request.url, headers, body: body as never, publicCache, live: openLive?.(request) })
  }

  // HEAD is registered here rather than by Fastify's exposeHeadRoute, which would run GET upstream and drop the body.
  const methods: HTTPMethods[] = o.methods.includes('GET') && !o.methods.includes('HEAD') ? [...o.methods, 'HEAD'] : o.methods
  for (const url of o.urls) {
    scope.route({ method: methods, url, handler, exposeHeadRoute: false, ...hooks, ...(o.bodySchema ? { schema: { body: o.bodySchema } } : {}) })
  }
}

/** A `..` segment in the path, raw or percent-encoded (`%2e%2e`, `..%2f`). Most paths have neither a dot nor a `%`: one scan, no copy. */
export function hasDotSegment(url: string): boolean {
  let end = url.indexOf('?')
  if (end === -1) end = url.length
  let i = 0
  for (; i < end; i++) {
    const c = url.charCodeAt(i)
    if (c === 46 /* . */ || c === 37 /* % */) break
  }
  if (i === end) return false
  let path = url.slice(0, end)
  if (path.includes('%')) {
    try {
      path = decodeURIComponent(path)
    } catch {
      return true // undecodable: refused rather than guessed at
    }
  }
  return DOT_SEGMENT.test(path)
}
const DOT_SEGMENT = /(?:^|[/\\])\.\.(?:[/\\]|$)/

function hasBody(request: FastifyRequest): boolean {
  const h = request.headers
  return h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0')
}
