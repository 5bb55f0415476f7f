/**
 * The gateway's proxy: one request to one upstream over undici's dispatcher
 * API, the cheapest way Node has to reach a pooled keep-alive connection.
 *
 *   - small answers (the API's JSON) are collected and sent in one write;
 *     larger or unbounded ones are streamed with backpressure;
 *   - the upstream has UPSTREAM_TIMEOUT_MS to start answering, enforced by a
 *     timer of our own (undici checks its timeouts on a ~0.5 s tick), then the
 *     same again between body chunks (undici's bodyTimeout);
 *   - a client that goes away cancels its upstream request;
 *   - GET/HEAD are retried once, only when a pooled connection broke before
 *     any answer (the upstream closed an idle keep-alive socket under us);
 *   - every failure is a 502/503/504 in the envelope, never the upstream's
 *     address, never a crash.
 *
 * Why not @fastify/http-proxy (reply-from): measured here, its per-request
 * stream plumbing costs more than everything else the gateway does (bare
 * http-proxy ~21k req/s against ~35k for this path on one core), and
 * reply-from 12.6 destroys the upstream body without an error listener when
 * the client has already gone, which kills the process.
 */
import { Readable } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import type { Dispatcher } from 'undici'
import type { FastifyReply } from 'fastify'
import { classifyUpstreamError, sendUpstreamFailure, type UpstreamErrorCounter } from './upstream.js'

/** Answers up to this size are buffered and written at once; beyond it they stream. */
export const MAX_BUFFERED_BYTES = 64 * 1024

/** Response headers that describe the upstream hop, not the answer, or that the gateway sets itself. */
const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'content-length', // recomputed for buffered answers, restored for streamed ones
  'date',
  'server',
  'x-powered-by',
  'x-request-id',
  'cache-control', // always no-store: answers are per user
])

const RETRYABLE = new Set(['UND_ERR_SOCKET', 'ECONNRESET'])

export interface ForwarderOptions {
  /** Upstream name, for logs and metrics. */
  name: string
  pool: Dispatcher
  /** Time the upstream has to send its response headers, and then between body chunks. */
  timeoutMs: number
  countError: UpstreamErrorCounter
}

export interface Outgoing {
  method: string
  /** Path and query, exactly as the client sent them (the identity proof signs this path). */
  path: string
  headers: IncomingHttpHeaders
  /** null (no body), a re-serialised body, or the client's request stream. */
  body: string | Buffer | Readable | null
}

export type Forward = (reply: FastifyReply, outgoing: Outgoing) => void

class UpstreamTimeout extends Error {
  code = 'UND_ERR_HEADERS_TIMEOUT'
}
class ClientGone extends Error {
  code = 'CLIENT_GONE'
}

export function createForwarder(opts: ForwarderOptions): Forward {
  const { pool, timeoutMs, name, countError } = opts

  /** One upstream exchange, as an undici dispatch handler (legacy callbacks: undici 7). */
  class Exchange implements Dispatcher.DispatchHandler {
    private abortUpstream: ((err?: Error) => void) | null = null
    private timer: NodeJS.Timeout | null = null
    private status = 0
    private chunks: Buffer[] = []
    private size = 0
    private stream: Readable | null = null
    private resumeUpstream: (() => void) | null = null
    private declaredLength: string | undefined
    /** Headers copied from the upstream's answer: taken back if that answer fails before it is sent. */
    private readonly upstreamKeys: string[] = []
    private done = false
    private attempt = 0
    /** The response closed before the upstream finished: the client went away. */
    private readonly onClientClose = () => this.abort(new ClientGone('client closed the connection'))

    constructor(
      private readonly reply: FastifyReply,
      private readonly outgoing: Outgoing,
    ) {}

    start(): void {
      this.timer = setTimeout(() => this.abort(new UpstreamTimeout('upstream did not answer in time')), timeoutMs)
      this.reply.raw.once('close', this.onClientClose)
      this.dispatch()
    }

    private dispatch(): void {
      const o = this.outgoing
      pool.dispatch({ method: o.method as Dispatcher.HttpMethod, path: o.path, headers: o.headers as Record<string, string>, body: o.body }, this)
    }

    private abort(err: Error): void {
      if (this.done) return
      if (this.abortUpstream) this.abortUpstream(err)
      else this.onError(err)
    }

    private finish(): void {
      this.done = true
      if (this.timer) clearTimeout(this.timer)
      this.reply.raw.removeListener('close', this.onClientClose)
    }

    onConnect(abort: (err?: Error) => void): void {
      this.abortUpstream = abort
    }

    onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
      if (statusCode < 200) return true // 1xx: the real answer follows
      if (this.timer) {
        clearTimeout(this.timer)
        this.timer = null
      }
      this.status = statusCode
      this.resumeUpstream = resume
      const reply = this.reply
      const hopByHop = connectionFields(rawHeaders)
      const upstreamKeys = this.upstreamKeys
      for (let i = 0; i < rawHeaders.length; i += 2) {
        const key = rawHeaders[i]!.toString('latin1').toLowerCase()
        if (key === 'content-length') {
          this.declaredLength = rawHeaders[i + 1]!.toString('latin1')
          continue
        }
        if (DROPPED_RESPONSE_HEADERS.has(key) || (hopByHop !== null && hopByHop.includes(key))) continue
        const value = rawHeaders[i + 1]!.toString('latin1')
        const prior = key === 'set-cookie' ? undefined : reply.getHeader(key)
        if (prior === undefined) {
          reply.header(key, value) // set-cookie: Fastify keeps each one
          upstreamKeys.push(key)
        } else if (key === 'vary' || upstreamKeys.includes(key)) {
          // A field the upstream repeats, or Vary (ours and theirs both apply): every value is kept.
          reply.header(key, `${String(prior)}, ${value}`)
        }
        // Otherwise the gateway set it (security headers, rate-limit fields, CORS): ours stands.
      }
      if (this.declaredLength !== undefined && Number(this.declaredLength) > MAX_BUFFERED_BYTES) this.startStreaming()
      return true
    }

    onData(chunk: Buffer): boolean {
      if (this.stream) return this.stream.push(chunk)
      this.chunks.push(chunk)
      this.size += chunk.length
      if (this.size > MAX_BUFFERED_BYTES) this.startStreaming()
      return true
    }

    onComplete(): void {
      this.finish()
      if (this.stream) {
        this.stream.push(null)
        return
      }
      const reply = this.reply
      reply.header('cache-control', 'no-store')
      reply.code(this.status)
      if (this.size === 0) reply.send(this.status === 204 || this.status === 304 ? undefined : '')
      else reply.send(this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size))
    }

    onError(err: Error): void {
      if (this.done) return
      const code = (err as { code?: string }).code ?? ''
      // A pooled connection that broke before any answer: safe to ask once more for GET/HEAD.
      if (this.status === 0 && this.attempt === 0 && RETRYABLE.has(code) && (this.outgoing.method === 'GET' || this.outgoing.method === 'HEAD')) {
        this.attempt++
        this.abortUpstream = null
        this.dispatch()
        return
      }
      this.finish()
      if (this.stream) {
        // Headers are already on their way: all we can do is cut the answer short.
        this.stream.destroy(err)
        return
      }
      if (err instanceof ClientGone) return
      if (this.reply.sent || this.reply.raw.destroyed) return
      // The answer broke before we sent it: none of its headers (cookies, location...) go on our error.
      for (const key of this.upstreamKeys) this.reply.removeHeader(key)
      sendUpstreamFailure(this.reply, classifyUpstreamError(err), name, countError)
    }

    /** From here on, chunks flow to the client as they come, paced by the client. */
    private startStreaming(): void {
      const resume = this.resumeUpstream
      const stream = new Readable({ read: () => resume?.() })
      for (const chunk of this.chunks) stream.push(chunk)
      this.chunks = []
      this.stream = stream
      const reply = this.reply
      if (this.declaredLength !== undefined) reply.header('content-length', this.declaredLength)
      reply.header('cache-control', 'no-store')
      reply.code(this.status).send(stream)
    }
  }

  return (reply, outgoing) => new Exchange(reply, outgoing).start()
}

/** Extra field names the upstream's Connection header lists (hop-by-hop too), or null (nearly always). */
function connectionFields(rawHeaders: Buffer[]): string[] | null {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const key = rawHeaders[i]!
    if (key.length !== 10 || key.toString('latin1').toLowerCase() !== 'connection') continue
    const value = rawHeaders[i + 1]!.toString('latin1').toLowerCase()
    if (value === 'keep-alive' || value === 'close') return null
    return value.split(',').map((f) => f.trim())
  }
  return null
}

/** One forwarder per upstream service. */
export function forwardersFor<N extends string>(
  upstreams: Record<N, { pool: Dispatcher }>,
  timeoutMs: number,
  countError: UpstreamErrorCounter,
): Record<N, Forward> {
  const out = {} as Record<N, Forward>
  for (const name of Object.keys(upstreams) as N[]) out[name] = createForwarder({ name, pool: upstreams[name].pool, timeoutMs, countError })
  return out
}
