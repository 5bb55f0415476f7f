/**
 * What the gateway adds to each request's access line (common/src/logging.ts
 * writes it): the verified user (or calling service, as `caller`), the upstream and the
 * target (host:port, with @address when DNS spread the name) the request went
 * to, the upstream's time to its response head, and the bytes counted when
 * no length was declared (chunked uploads, streamed answers, HEAD). Reads what
 * the request already holds: no lookup, no object of its own.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { AccessLine } from '@tollgate/common'

export function gatewayAccessFields(request: FastifyRequest, _reply: FastifyReply, line: AccessLine): void {
  const auth = request.auth
  if (auth !== null) line.userId = auth.sub
  // `caller`, as the services log it: a field named `service` would overwrite the line's own (the process's name).
  const service = (request as FastifyRequest & { service?: string | null }).service
  if (service) line.caller = `service:${service}`
  const bodyBytes = request.bodyBytes
  if (bodyBytes !== null) line.bytesIn = bodyBytes
  const x = request.exchange
  if (x === null) return
  line.upstream = x.upstream
  if (x.target !== null) line.target = x.target.label
  if (x.upstreamMs >= 0) {
    line.upstreamMs = x.upstreamMs
    if (line.bytesOut === undefined) line.bytesOut = x.bytesOut
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Bytes of a streamed body without a declared length, counted as they passed; null otherwise. */
    bodyBytes: number | null
  }
}
