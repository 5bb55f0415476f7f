/**
 * One pooled keep-alive connection set per upstream service, with explicit
 * timeouts (undici's own default is 300 s), and the mapping of every upstream
 * failure to 502/503/504 in the envelope: reply-from's defaults answer 500 and
 * put the upstream's address in the body.
 */
import { Pool } from 'undici'
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { envelope, ErrorCode } from '@tollgate/common'

export interface UpstreamOptions {
  /** Extra CA certificates (PEM) for https upstreams; verification is never off. */
  ca?: Buffer
  connectTimeoutMs: number
  timeoutMs: number
  connections: number
}

export function createUpstreamPool(url: string, opts: UpstreamOptions): Pool {
  return new Pool(new URL(url).origin, {
    connections: opts.connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    connectTimeout: opts.connectTimeoutMs,
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs,
    // reply-from's own default is rejectUnauthorized: false; ours verifies.
    connect: { rejectUnauthorized: true, ...(opts.ca ? { ca: opts.ca } : {}) },
  })
}

type Failure = { status: 502 | 503 | 504; code: ErrorCode; detail: string }

const TIMEOUT: Failure = { status: 504, code: ErrorCode.GATEWAY_TIMEOUT, detail: 'Upstream service timed out' }
const BAD_GATEWAY: Failure = { status: 502, code: ErrorCode.BAD_GATEWAY, detail: 'Upstream service error' }
const UNAVAILABLE: Failure = { status: 503, code: ErrorCode.SERVICE_UNAVAILABLE, detail: 'Upstream service unavailable' }

const TIMEOUT_CODES = new Set([
  'FST_REPLY_FROM_GATEWAY_TIMEOUT',
  'FST_REPLY_FROM_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'ETIMEDOUT',
])
const UNAVAILABLE_CODES = new Set(['FST_REPLY_FROM_SERVICE_UNAVAILABLE', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED'])

export function classifyUpstreamError(error: unknown): Failure & { cause: string } {
  const e = error as { code?: string; cause?: { code?: string } }
  const codes = [e?.code, e?.cause?.code].filter((c): c is string => typeof c === 'string')
  const cause = codes[codes.length - 1] ?? 'unknown'
  if (codes.some((c) => TIMEOUT_CODES.has(c))) return { ...TIMEOUT, cause }
  if (codes.some((c) => UNAVAILABLE_CODES.has(c))) return { ...UNAVAILABLE, cause }
  // Refused, reset, broken framing, TLS failures: the upstream failed us.
  return { ...BAD_GATEWAY, cause }
}

/** reply-from's onError: answer in the envelope, log the cause (never to the client). */
export function upstreamErrorHandler(upstream: string, count: (labels: { upstream: string; status: string; cause: string }) => void) {
  return (reply: FastifyReply, { error }: { error: unknown }) => onUpstreamError(reply, error, upstream, count)
}

function onUpstreamError(
  reply: FastifyReply,
  error: unknown,
  upstream: string,
  count: (labels: { upstream: string; status: string; cause: string }) => void,
): void {
  const failure = classifyUpstreamError(error)
  count({ upstream, status: String(failure.status), cause: failure.cause })
  reply.request.log.warn({ upstream, upstreamError: failure.cause, status: failure.status }, 'upstream request failed')
  if (failure.status === 503) reply.header('retry-after', '2')
  reply
    .code(failure.status)
    .header('cache-control', 'no-store')
    .type('application/json; charset=utf-8')
    .send(envelope(failure.status, failure.code, failure.detail))
}

const RETRYABLE = new Set(['UND_ERR_SOCKET', 'ECONNRESET'])

/**
 * At most one retry, only for GET/HEAD, only when a pooled connection broke
 * under us (the upstream closed a keep-alive socket). Never on a 503 answer:
 * reply-from would otherwise retry those up to ten times.
 */
export function retryDelay({ err, req, attempt }: { err?: { code?: string } | null; req: { method: string }; attempt: number }): number | null {
  if (attempt >= 1 || !err || !RETRYABLE.has(err.code ?? '')) return null
  return req.method === 'GET' || req.method === 'HEAD' ? 0 : null
}

export interface ProxyRouteOptions {
  upstream: { name: string; url: string; pool: Pool }
  urls: string[]
  methods: string[]
  /** Stream bodies through untouched (true), or parse them here first (false). */
  streamBodies: boolean
  /** The upstream request's headers: identity, proof, request id. */
  headers: (request: FastifyRequest, headers: IncomingHttpHeaders) => IncomingHttpHeaders
  countError: (labels: { upstream: string; status: string; cause: string }) => void
}

/** @fastify/http-proxy options shared by both listeners: pooled upstream, our errors, no caching, bounded retries. */
export function proxyOptions(o: ProxyRouteOptions) {
  return {
    proxyPayloads: o.streamBodies,
    upstream: o.upstream.url,
    undici: o.upstream.pool as never,
    routes: o.urls,
    httpMethods: o.methods,
    disableRequestLogging: true,
    replyOptions: {
      rewriteRequestHeaders: (request: unknown, headers: IncomingHttpHeaders) => o.headers(request as FastifyRequest, headers),
      rewriteHeaders: (headers: Record<string, unknown>) => ({ ...headers, 'cache-control': 'no-store' }),
      onError: upstreamErrorHandler(o.upstream.name, o.countError) as never,
      retryDelay: retryDelay as never,
    },
  }
}
