/**
 * The gateway's proxy: one request to one upstream over undici's dispatcher
 * API, the cheapest way Node has to reach a pooled keep-alive connection.
 *
 *   - small answers (the API's JSON) are collected and sent in one write;
 *     larger or unbounded ones are streamed with backpressure;
 *   - the upstream has UPSTREAM_TIMEOUT_MS to start answering, enforced by a
 *     timer of our own (undici checks its timeouts on a ~0.5 s tick; one timer
 *     per forwarder, deadlines.ts), then the same again between body chunks
 *     (undici's bodyTimeout);
 *   - a client that goes away cancels its upstream request; a request that
 *     was answered (504) or abandoned while it waited for a pooled
 *     connection is never written to the upstream;
 *   - bodiless GET/HEAD are retried once, only when a pooled connection broke
 *     before any answer (the upstream closed an idle keep-alive socket under
 *     us) or could not be opened; an upstream with several targets sends the
 *     retry to another one; a request with a body never is retried;
 *   - HEAD goes upstream as HEAD; its answer keeps the declared length;
 *   - every failure (an invalid status included) is a 502/503/504 in the
 *     envelope, never the upstream's address, never a crash.
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
import { errors } from '@tollgate/common'
import { sendUpstreamFailure, type UpstreamErrorCounter } from './upstream.js'
import { COMMON_ANSWER_FIELDS, fieldNameReader } from './field-names.js'
import type { Member } from '../upstreams/member.js'

/** What the access line reads of a forwarded request (see access-log.ts). */
export interface ExchangeInfo {
  readonly upstream: string
  readonly target: Member | null
  readonly upstreamMs: number
  readonly bytesOut: number
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's upstream exchange once it is forwarded; null before (decorated by each app). */
    exchange: ExchangeInfo | null
  }
}
import type { CloseReason, LiveStream } from '../streams/registry.js'
import type { Tracer } from '@opentelemetry/api'
import { tracedExchange, type ExchangeBase } from './forwarder-tracing.js'
import { Deadlines, type DeadlineTimers, type Due } from './deadlines.js'

export type { DeadlineTimers } from './deadlines.js'

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
  'content-length', // recomputed for buffered answers, restored for streamed ones and HEAD
  'date',
  'server',
  'x-powered-by',
  'x-request-id',
  // CORS is the gateway's (cors.ts, its allowlist): a service's own fields would widen it (SECURITY.md S-48).
  'access-control-allow-origin',
  'access-control-allow-credentials',
  'access-control-allow-methods',
  'access-control-allow-headers',
  'access-control-allow-private-network',
  'access-control-expose-headers',
  'access-control-max-age',
])

/** An answer's field names in lower case, the dropped and the common ones as constant strings (field-names.ts). */
export const fieldName = fieldNameReader([...DROPPED_RESPONSE_HEADERS, ...COMMON_ANSWER_FIELDS])

/** Nothing reached the upstream's application: a broken pooled connection, or no connection at all. */
const RETRYABLE = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT'])

/*
 * Where one exchange stands. Every undici callback checks it first, so that a
 * late callback can never touch an answer that is already settled.
 */
/** Handed to the pool, waiting for a connection: nothing written yet. */
const QUEUED = 0
/** On a connection: being written, or waiting for the answer's head. */
const SENT = 1
/** The answer's head arrived; its body is being collected. */
const HEADERS = 2
/** The answer is flowing to the client. */
const STREAMING = 3
/** Answered, failed or abandoned: nothing more goes up or down. */
const DONE = 4

export interface ForwarderOptions {
  /** Upstream name, for logs and metrics. */
  name: string
  pool: Dispatcher
  /** Time the upstream has to send its response headers, and then between body chunks. */
  timeoutMs: number
  countError: UpstreamErrorCounter
  /** Tracing on: each exchange is a client span, its traceparent sent upstream (see tracing.ts). */
  tracer?: Tracer | null
  /** The clock the upstream's deadline runs on; default Node's timers (tests: a controlled clock). */
  timers?: DeadlineTimers
}

export interface Outgoing {
  method: string
  /** Path and query, exactly as the client sent them (the identity proof signs this path). */
  path: string
  headers: IncomingHttpHeaders
  /** null (no body), a re-serialised body, or the client's request stream. */
  body: string | Buffer | Readable | null
  /** The answer is the same for everyone (a route's `cache: 'public'`): the upstream's cache headers pass. */
  publicCache: boolean
  /**
   * A live stream (a route's `stream: sse`): no deadline between chunks once
   * the answer flows, an event-stream answer is relayed event by event as it
   * comes, and the edge may end it (revocation, expiry, shutdown) with a
   * final event written at an event boundary.
   */
  live?: LiveStream
}

export type Forward = (reply: FastifyReply, outgoing: Outgoing) => void

class UpstreamTimeout extends Error {
  code = 'UND_ERR_HEADERS_TIMEOUT'
}
class ClientGone extends Error {
  code = 'CLIENT_GONE'
}
class BadStatus extends Error {
  code = 'UPSTREAM_BAD_STATUS'
}
/** The edge ended a live stream before its answer flowed. */
class LiveClosed extends Error {
  code = 'LIVE_CLOSED'
  constructor(readonly reason: CloseReason) {
    super(`live stream closed: ${reason}`)
  }
}

/** An event-stream answer's last event, written by the gateway when it ends the stream. */
export function finalEvent(reason: CloseReason): string {
  // shutdown and a revocation list gone stale: come back later (Last-Event-ID); the others: the token no longer holds.
  const event = reason === 'shutdown' || reason === 'revocation_unavailable' ? 'shutdown' : 'revoked'
  return `event: ${event}\ndata: {"reason":"${reason}"}\n\n`
}

/** Past this, an event-stream answer without an event boundary is passed on as it is. */
const MAX_PARTIAL_EVENT_BYTES = 64 * 1024

/** Just after the last complete event (a blank line ends one), or -1. */
function eventBoundary(data: Buffer): number {
  const lf = data.lastIndexOf('\n\n')
  const crlf = data.lastIndexOf('\r\n\r\n')
  const end = Math.max(lf === -1 ? -1 : lf + 2, crlf === -1 ? -1 : crlf + 4)
  return end
}
/**
 * Thrown from onConnect when the exchange was settled while its request
 * waited in the pool: undici (7.30, client-h1 writeH1) calls onConnect just
 * before writing, turns the throw into onError and skips the request without
 * writing a byte, and the connection stays open for the next one (calling
 * `abort` there would drop the request too, but destroy the connection).
 */
const NOT_SENT = Object.assign(new Error('request settled while queued: not sent'), { code: 'NOT_SENT' })

export function createForwarder(opts: ForwarderOptions): Forward {
  const { pool, timeoutMs, name, countError } = opts
  const deadlines = new Deadlines(timeoutMs, opts.timers)

  /** One upstream exchange, as an undici dispatch handler (legacy callbacks: undici 7). */
  class Exchange implements Dispatcher.DispatchHandler, ExchangeBase, Due {
    /** For the access line: the upstream's name, the target the last attempt went to (set by Upstream.dispatch). */
    readonly upstream = name
    target: Member | null = null
    /** Milliseconds from handing the request to the pool to the answer's head; -1 without an answer. */
    upstreamMs = -1
    /** Body bytes of the answer passed on to the client. */
    bytesOut = 0
    private dispatchedAt = 0
    private state = QUEUED
    private abortUpstream: ((err?: Error) => void) | null = null
    /** The upstream's deadline (Due, kept by `deadlines`): until the answer's head. */
    dueAt = 0
    prevDue: Due | null = null
    nextDue: Due | null = null
    waiting = false
    private status = 0
    private chunks: Buffer[] = []
    private size = 0
    private stream: Readable | null = null
    private resumeUpstream: (() => void) | null = null
    private declaredLength: string | undefined
    /** An event-stream answer on a live route: relayed whole events at a time. */
    private sse = false
    /** The start of an event not complete yet. */
    private partial: Buffer | null = null
    /** Headers copied from the upstream's answer: taken back if that answer fails before it is sent. */
    private readonly upstreamKeys: string[] = []
    private attempt = 0
    /** The response closed before the upstream finished: the client went away. */
    private readonly onClientClose = () => this.abort(new ClientGone('client closed the connection'))

    constructor(
      readonly reply: FastifyReply,
      readonly outgoing: Outgoing,
    ) {
      reply.request.exchange = this
    }

    start(): void {
      // The client left while an earlier step (a counter in Redis, say) was running: nothing to send, no one to answer.
      if (this.reply.raw.destroyed) {
        this.state = DONE
        this.outgoing.live?.release()
        return
      }
      deadlines.add(this)
      // on, not once: a response closes once, and finish() takes the listener off (once() would wrap it per request).
      this.reply.raw.on('close', this.onClientClose)
      this.dispatch()
      this.outgoing.live?.bind((reason) => this.closeLive(reason))
    }

    /** The upstream did not start answering in time. */
    expire(): void {
      this.abort(new UpstreamTimeout('upstream did not answer in time'))
    }

    /** The edge ends a live stream: a final event at an event boundary, or, before the answer flows, the refusal. */
    private closeLive(reason: CloseReason): void {
      const state = this.state
      if (state === DONE) return
      if (state === STREAMING && this.sse) {
        const stream = this.stream!
        this.finish()
        stream.push(finalEvent(reason))
        stream.push(null)
        this.abortUpstream?.(new LiveClosed(reason))
        return
      }
      this.abort(new LiveClosed(reason))
    }

    private dispatch(): void {
      const o = this.outgoing
      this.state = QUEUED
      this.dispatchedAt = performance.now()
      const options: Dispatcher.DispatchOptions = { method: o.method as Dispatcher.HttpMethod, path: o.path, headers: o.headers as Record<string, string>, body: o.body }
      // A live stream may stay quiet between events for as long as it likes: no deadline once it flows.
      if (o.live !== undefined) options.bodyTimeout = 0
      pool.dispatch(options, this)
    }

    /** Our deadline passed, or the client left. */
    private abort(err: Error): void {
      const state = this.state
      if (state === DONE) return
      // On a connection: undici cancels it and calls onError at once. Still queued: settle now, onConnect drops it.
      if (state !== QUEUED && this.abortUpstream !== null) this.abortUpstream(err)
      if (this.state !== DONE) this.fail(err)
    }

    finish(): void {
      this.state = DONE
      deadlines.remove(this)
      this.reply.raw.removeListener('close', this.onClientClose)
      this.outgoing.live?.release()
    }

    onConnect(abort: (err?: Error) => void): void {
      if (this.state === DONE) throw NOT_SENT
      this.abortUpstream = abort
      this.state = SENT
    }

    onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
      if (this.state !== SENT) return false
      if (statusCode < 200 && statusCode >= 100) return true // 1xx: the real answer follows
      const reply = this.reply
      if (statusCode < 100 || statusCode > 599) {
        reply.request.log.warn({ upstream: name, upstreamStatus: statusCode }, 'upstream answered with an invalid status')
        this.abort(new BadStatus('invalid upstream status'))
        return false
      }
      deadlines.remove(this)
      const ms = performance.now() - this.dispatchedAt
      this.upstreamMs = Math.round(ms * 10) / 10
      this.target?.latency?.observe(ms / 1000)
      this.state = HEADERS
      this.status = statusCode
      this.resumeUpstream = resume
      const publicCache = this.outgoing.publicCache
      const hopByHop = connectionFields(rawHeaders)
      const upstreamKeys = this.upstreamKeys
      for (let i = 0; i < rawHeaders.length; i += 2) {
        const key = fieldName(rawHeaders[i]!)
        if (key === 'content-length') {
          this.declaredLength = rawHeaders[i + 1]!.toString('latin1')
          continue
        }
        if (DROPPED_RESPONSE_HEADERS.has(key) || (hopByHop !== null && hopByHop.includes(key))) continue
        if (key === 'cache-control' && !publicCache) continue // answers about one user: always no-store
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
      if (!publicCache) reply.header('cache-control', 'no-store')
      // The upstream answered before it had the whole request body: the rest cannot be skipped on this connection.
      const body = this.outgoing.body
      if (body !== null && (body as { complete?: boolean }).complete === false) reply.header('connection', 'close')
      if (this.outgoing.live !== undefined && statusCode === 200 && isEventStream(reply.getHeader('content-type'))) {
        // Events go out as they come: no collecting, and no proxy buffering further along.
        this.sse = true
        reply.header('x-accel-buffering', 'no')
        // The connection ends with the stream: one the edge closes (sign-out, shutdown) never lingers as an idle keep-alive.
        reply.header('connection', 'close')
        this.startStreaming()
      } else if (this.declaredLength !== undefined && Number(this.declaredLength) > MAX_BUFFERED_BYTES && this.outgoing.method !== 'HEAD') {
        this.startStreaming()
      }
      return true
    }

    onData(chunk: Buffer): boolean {
      const state = this.state
      if (state === STREAMING) {
        this.bytesOut += chunk.length
        return this.sse ? this.pushEvents(chunk) : this.stream!.push(chunk)
      }
      if (state !== HEADERS) return false
      this.chunks.push(chunk)
      this.size += chunk.length
      this.bytesOut += chunk.length
      if (this.size > MAX_BUFFERED_BYTES) this.startStreaming()
      return true
    }

    onComplete(): void {
      const state = this.state
      if (state === STREAMING) {
        this.finish()
        if (this.partial !== null) this.stream!.push(this.partial)
        this.stream!.push(null)
        return
      }
      if (state !== HEADERS) return
      try {
        const reply = this.reply
        reply.code(this.status)
        if (this.outgoing.method === 'HEAD') {
          // The GET's head without its body: the length the upstream declared stands.
          if (this.declaredLength !== undefined) reply.header('content-length', this.declaredLength)
          reply.send()
        } else if (this.size === 0) {
          reply.send(this.status === 204 || this.status === 304 ? undefined : '')
        } else {
          reply.send(this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size))
        }
        this.finish()
      } catch (err) {
        this.reply.request.log.error({ err }, 'upstream answer could not be written')
        this.fail(err as Error)
      }
    }

    onError(err: Error): void {
      if (this.state === DONE) return
      const code = (err as { code?: string }).code ?? ''
      // A pooled connection broke before any answer, or none opened: a bodiless GET/HEAD is safe to ask once more.
      if (
        this.state <= SENT &&
        this.attempt === 0 &&
        this.outgoing.body === null &&
        RETRYABLE.has(code) &&
        (this.outgoing.method === 'GET' || this.outgoing.method === 'HEAD')
      ) {
        this.attempt++
        this.abortUpstream = null
        this.dispatch()
        return
      }
      this.fail(err)
    }

    /** Settle the exchange on a failure: a 502/503/504 when nothing was sent yet, else cut the answer short. */
    fail(err: Error): void {
      const streaming = this.state === STREAMING
      this.finish()
      const reply = this.reply
      if (streaming) {
        // Headers are already on their way: all we can do is cut the answer short.
        this.stream!.destroy(err)
        return
      }
      if (err instanceof ClientGone || reply.raw.destroyed) return
      if (err instanceof LiveClosed) {
        // Closed before the answer began: the refusal the open would now get.
        if (reply.raw.headersSent || reply.sent) return
        for (const key of this.upstreamKeys) reply.removeHeader(key)
        reply.send(
          err.reason === 'token_expired'
            ? errors.tokenExpired()
            : err.reason === 'shutdown'
              ? errors.unavailable('The gateway is shutting down')
              : err.reason === 'revocation_unavailable'
                ? errors.unavailable('Token revocation status unavailable')
                : errors.tokenRevoked(),
        )
        return
      }
      if (reply.raw.headersSent) {
        reply.raw.destroy(err)
        return
      }
      if (reply.sent) return
      // The answer broke before we sent it: none of its headers (cookies, location...) go on our error.
      for (const key of this.upstreamKeys) reply.removeHeader(key)
      sendUpstreamFailure(reply, err, name, countError)
    }

    /** Whole events only, so the gateway's own last event can never land inside one of the upstream's. */
    private pushEvents(chunk: Buffer): boolean {
      const data = this.partial === null ? chunk : Buffer.concat([this.partial, chunk])
      const end = eventBoundary(data)
      if (end === -1 && data.length <= MAX_PARTIAL_EVENT_BYTES) {
        this.partial = data
        return true
      }
      if (end === -1 || end === data.length) {
        this.partial = null
        return this.stream!.push(data)
      }
      this.partial = data.subarray(end)
      return this.stream!.push(data.subarray(0, end))
    }

    /** From here on, chunks flow to the client as they come, paced by the client. */
    private startStreaming(): void {
      const resume = this.resumeUpstream
      const stream = new Readable({ read: () => resume?.() })
      for (const chunk of this.chunks) stream.push(chunk)
      this.chunks = []
      const reply = this.reply
      if (this.declaredLength !== undefined) reply.header('content-length', this.declaredLength)
      reply.code(this.status).send(stream)
      this.stream = stream
      this.state = STREAMING
    }
  }

  if (opts.tracer) {
    const Traced = tracedExchange(Exchange, opts.tracer, name)
    return (reply, outgoing) => new Traced(reply, outgoing).start()
  }
  return (reply, outgoing) => new Exchange(reply, outgoing).start()
}

function isEventStream(value: unknown): boolean {
  return typeof value === 'string' && value.toLowerCase().startsWith('text/event-stream')
}

/** Extra field names the upstream's Connection header lists (hop-by-hop too), or null (nearly always). */
function connectionFields(rawHeaders: Buffer[]): string[] | null {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const key = rawHeaders[i]!
    if (key.length !== 10 || fieldName(key) !== 'connection') continue
    const value = rawHeaders[i + 1]!.toString('latin1').toLowerCase()
    if (value === 'keep-alive' || value === 'close') return null
    return value.split(',').map((f) => f.trim())
  }
  return null
}
