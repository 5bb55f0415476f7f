/**
 * What a forwarded request carries upstream: the client's own headers minus
 * hop-by-hop ones, never a client-sent identity or internal header, the
 * gateway's signed identity instead, the request id, and the bearer token
 * only where the service needs it (to revoke it).
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyRequest } from 'fastify'
import { isReservedHeader, signIdentityInto, REQUEST_ID_HEADER, type Identity } from '@tollgate/common'

/** Who the gateway vouches for on the public listener: the verified user, or nobody. */
export const publicIdentity = (request: FastifyRequest): Identity =>
  request.auth ? { caller: 'user', userId: request.auth.sub } : { caller: 'anonymous', userId: '' }

/**
 * Never copied from the client: hop-by-hop fields (RFC 9110 7.6.1), the
 * framing we set ourselves, credentials the services do not take, and
 * forwarding fields only the gateway may write.
 */
const NOT_FORWARDED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect', // Node answers 100-continue itself; undici refuses to send it
  'host',
  'cookie',
  'authorization',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-real-ip',
  REQUEST_ID_HEADER,
])

export interface ForwardedHeaderOptions {
  proofKey: Buffer
  /** Send the client's bearer token upstream (signout and account deletion revoke it). */
  forwardAuthorization: boolean
  /** The body was parsed here and is re-serialised: its length and type are ours to set. */
  reserialisedBody: boolean
}

export function forwardedHeaders(request: FastifyRequest, identity: Identity, opts: ForwardedHeaderOptions): IncomingHttpHeaders {
  const incoming = request.headers
  const out: IncomingHttpHeaders = {}
  // Fields the client names in Connection are hop-by-hop too (and could otherwise strip ours).
  const connection = incoming.connection
  const listed = connection && connection !== 'keep-alive' && connection !== 'close' ? connectionFields(connection) : null
  for (const name in incoming) {
    if (NOT_FORWARDED.has(name) || isReservedHeader(name) || (listed !== null && listed.has(name))) continue
    out[name] = incoming[name]
  }
  if (opts.forwardAuthorization && incoming.authorization !== undefined) out.authorization = incoming.authorization
  if (opts.reserialisedBody) {
    delete out['content-length']
    out['content-type'] = 'application/json'
  }
  signIdentityInto(out, opts.proofKey, identity, request.method, upstreamPath(request.url), request.id)
  out[REQUEST_ID_HEADER] = request.id
  out['x-forwarded-for'] = request.ip
  out['x-forwarded-proto'] = request.protocol
  return out
}

function connectionFields(value: string): Set<string> {
  return new Set(
    value
      .toLowerCase()
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  )
}

/** The path the service receives: the client's, byte for byte (the query is not signed). */
export function upstreamPath(url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}
