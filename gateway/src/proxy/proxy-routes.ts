/**
 * Proxied routes for one route group: each (method, url) is a Fastify route
 * whose handler forwards the request to the group's upstream. Shared by the
 * public and the internal listener.
 *
 * Bodies stream through untouched unless the group parses them (sign-in and
 * sign-up read the email for their limits): then the parsed JSON is sent on.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify'
import type { Identity } from '@tollgate/common'
import type { Forward } from './forwarder.js'
import { forwardedHeaders } from './forwarded-headers.js'
import { limitStreamedBody } from '../streamed-body-limit.js'

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
  /** JSON schema a parsed body must match before anything else reads it (sign-in, sign-up). */
  bodySchema?: object
}

/** Register in its own encapsulated scope: the pass-through body parsers must not leak to other routes. */
export function registerProxyRoutes(scope: FastifyInstance, o: ProxyRoutesOptions): void {
  if (o.streamBodies) {
    // Hand Fastify's body step the raw stream; it is piped upstream as it arrives.
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
  }
  const headerOptions = { proofKey: o.proofKey, forwardAuthorization: o.forwardAuthorization, reserialisedBody: !o.streamBodies }
  const forward = o.forward
  const bodyLimit = scope.initialConfig.bodyLimit ?? 1024 * 1024

  const handler = (request: FastifyRequest, reply: FastifyReply) => {
    const headers = forwardedHeaders(request, o.identity(request), headerOptions)
    let body: string | NodeJS.ReadableStream | null = null
    if (o.streamBodies) {
      if (hasBody(request)) body = limitStreamedBody(request, reply, bodyLimit)
    } else if (request.body !== undefined && request.body !== null) {
      body = JSON.stringify(request.body)
    }
    forward(reply, { method: request.method, path: request.url, headers, body: body as never })
  }

  for (const url of o.urls) {
    scope.route({ method: o.methods, url, handler, exposeHeadRoute: false, ...(o.bodySchema ? { schema: { body: o.bodySchema } } : {}) })
  }
}

function hasBody(request: FastifyRequest): boolean {
  const h = request.headers
  return h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0')
}
