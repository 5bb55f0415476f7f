/**
 * One pooled keep-alive connection set per upstream service, with explicit
 * timeouts (undici's own default is 300 s) and verified TLS, and the mapping
 * of every upstream failure to 502/503/504 in the envelope.
 */
import { Pool } from 'undici'
import type { FastifyReply } from 'fastify'
import { envelope, ErrorCode } from '@tollgate/common'

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

export type Failure = { status: 502 | 503 | 504; code: ErrorCode; detail: string; cause: string }
export type UpstreamErrorCounter = (labels: { upstream: string; status: string; cause: string }) => void

const TIMEOUT = { status: 504, code: ErrorCode.GATEWAY_TIMEOUT, detail: 'Upstream service timed out' } as const
const BAD_GATEWAY = { status: 502, code: ErrorCode.BAD_GATEWAY, detail: 'Upstream service error' } as const
const UNAVAILABLE = { status: 503, code: ErrorCode.SERVICE_UNAVAILABLE, detail: 'Upstream service unavailable' } as const

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT'])
// UPSTREAM_NO_HEALTHY_TARGET: every target of the upstream is out (upstreams/upstream.ts), answered at once.
const UNAVAILABLE_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED', 'UPSTREAM_NO_HEALTHY_TARGET'])

export function classifyUpstreamError(error: unknown): Failure {
  const e = error as { code?: string; cause?: { code?: string } }
  const codes = [e?.code, e?.cause?.code].filter((c): c is string => typeof c === 'string')
  const cause = codes[codes.length - 1] ?? 'unknown'
  if (codes.some((c) => TIMEOUT_CODES.has(c))) return { ...TIMEOUT, cause }
  if (codes.some((c) => UNAVAILABLE_CODES.has(c))) return { ...UNAVAILABLE, cause }
  // Refused, reset, broken framing, TLS failures: the upstream failed us.
  return { ...BAD_GATEWAY, cause }
}

/** Answer an upstream failure in the envelope; the cause goes to logs and metrics, never to the client. */
export function sendUpstreamFailure(reply: FastifyReply, failure: Failure, upstream: string, count: UpstreamErrorCounter): void {
  count({ upstream, status: String(failure.status), cause: failure.cause })
  reply.request.log.warn({ upstream, upstreamError: failure.cause, status: failure.status }, 'upstream request failed')
  if (failure.status === 503) reply.header('retry-after', '2')
  reply
    .code(failure.status)
    .header('cache-control', 'no-store')
    .type('application/json; charset=utf-8')
    .send(envelope(failure.status, failure.code, failure.detail))
}
