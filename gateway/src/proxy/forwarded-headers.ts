/**
 * What a forwarded request carries upstream: never a client-sent identity or
 * internal header, the gateway's signed identity instead, the request id, and
 * the bearer token only where the service needs it (to revoke it).
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyRequest } from 'fastify'
import { isReservedHeader, signIdentity, REQUEST_ID_HEADER, type Identity } from '@tollgate/common'

/** Who the gateway vouches for on the public listener: the verified user, or nobody. */
export const publicIdentity = (request: FastifyRequest): Identity =>
  request.auth ? { caller: 'user', userId: request.auth.sub } : { caller: 'anonymous', userId: '' }

export function forwardedHeaders(
  request: FastifyRequest,
  headers: IncomingHttpHeaders,
  proofKey: Buffer,
  forwardAuthorization: boolean,
  identity: Identity,
): IncomingHttpHeaders {
  for (const name of Object.keys(headers)) {
    if (isReservedHeader(name)) delete headers[name]
  }
  if (!forwardAuthorization) delete headers.authorization
  delete headers.cookie
  Object.assign(headers, signIdentity(proofKey, identity, request.method, upstreamPath(request.url), request.id))
  headers[REQUEST_ID_HEADER] = request.id
  headers['x-forwarded-for'] = request.ip
  return headers
}

const PLAIN_PATH = /^[A-Za-z0-9/_~:@!$&'()*+,;=%-]*(?:\.[A-Za-z0-9/_~:@!$&'()*+,;=%-]+)*$/

/**
 * The path exactly as the service will receive it: the proxy builds the
 * upstream URL with WHATWG URL rules, which re-encode a few characters and
 * resolve dot segments. Plain paths (nearly all) are already in that form.
 */
export function upstreamPath(url: string): string {
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  if (PLAIN_PATH.test(path) && !path.includes('/.')) return path
  return new URL(path, 'http://upstream.invalid').pathname
}
