/**
 * One pooled keep-alive connection set per upstream service, with explicit
 * timeouts (undici's own default is 300 s) and verified TLS, and the mapping
 * of every upstream failure to 502/503/504 in the envelope.
 */
import { Pool } from 'undici'
import type { FastifyReply } from 'fastify'
import { BadGateway, GatewayTimeout, ServiceUnavailable, type HttpError } from '@tollgate/common'

export interface UpstreamOptions {
  /** Extra CA certificates (PEM) for https upstreams; verification is never off. */
  ca?: Buffer
  connectTimeoutMs: number
  timeoutMs: number
  connections: number
}

export function createUpstreamPool(url: string, opts: UpstreamOptions): Pool {
  return new Pool(new URL(url).origin, poolOptions(opts))
}

/** The options of each target's pool (also a BalancedPool's, for an upstream with several targets). */
export function poolOptions(opts: UpstreamOptions): Pool.Options {
  return {
    connections: opts.connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    connectTimeout: opts.connectTimeoutMs,
    // The forwarder enforces the time to the first byte itself; undici's check is a backstop.
    headersTimeout: opts.timeoutMs + 1000,
    bodyTimeout: opts.timeoutMs,
    connect: { rejectUnauthorized: true, ...(opts.ca ? { ca: opts.ca } : {}) },
  }
}

/** The answer (an error class instance: 502, 503 with Retry-After, 504) and the cause, an undici or Node code for logs and metrics only. */
export type Failure = { error: HttpError; cause: string }
export type UpstreamErrorCounter = (labels: { upstream: string; status: string; cause: string }) => void

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT'])
// UPSTREAM_NO_HEALTHY_TARGET: every target of the upstream is out (upstreams/upstream.ts), answered at once.
const UNAVAILABLE_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED', 'UPSTREAM_NO_HEALTHY_TARGET'])

export function classifyUpstreamError(error: unknown): Failure {
  const e = error as { code?: string; cause?: { code?: string } }
  const codes = [e?.code, e?.cause?.code].filter((c): c is string => typeof c === 'string')
  const cause = codes[codes.length - 1] ?? 'unknown'
  if (codes.some((c) => TIMEOUT_CODES.has(c))) return { error: new GatewayTimeout('Upstream service timed out'), cause }
  if (codes.some((c) => UNAVAILABLE_CODES.has(c))) return { error: new ServiceUnavailable('Upstream service unavailable'), cause }
  // Refused, reset, broken framing, TLS failures: the upstream failed us.
  return { error: new BadGateway('Upstream service error'), cause }
}

/**
 * Hand an upstream failure to the app's one error handler (installErrorEnvelope),
 * which answers it in the envelope and writes its one log line, with the
 * upstream and the cause as fields; the cause goes to logs and metrics, never
 * to the client. The route's context must have that handler: every app
 * installs it on its root before registering routes (a bare Fastify() has
 * Fastify's default handler instead).
 */
export function sendUpstreamFailure(reply: FastifyReply, err: unknown, upstream: string, count: UpstreamErrorCounter): void {
  const { error, cause } = classifyUpstreamError(err)
  count({ upstream, status: String(error.statusCode), cause })
  error.logFields = { upstream, upstreamError: cause }
  reply.send(error)
}
