/**
 * The upstream call as a client span, child of the request's server span:
 * the upstream and target it went to, its status, and the time to the
 * answer's first byte. The client's traceparent was the parent of the
 * request's span; upstream, ours replaces it (its tracestate passes on).
 * Only used when tracing is on: the forwarder's plain exchange is untouched.
 */
import { performance } from 'node:perf_hooks'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span, type Tracer } from '@opentelemetry/api'
import { failSpan, injectContext } from '@tollgate/common'
import type { FastifyReply } from 'fastify'
import type { Outgoing } from './forwarder.js'

/** What the traced exchange needs of the forwarder's. */
export interface ExchangeBase {
  readonly reply: FastifyReply
  readonly outgoing: Outgoing
  /** The target the last attempt went to (set by the upstream's balancer). */
  readonly target: { readonly label: string } | null
  start(): void
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean
  finish(): void
  fail(err: Error): void
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a mixin's constructor (TS2545)
type ExchangeClass = new (...args: any[]) => ExchangeBase

export function tracedExchange<C extends ExchangeClass>(Base: C, tracer: Tracer, upstream: string): C {
  return class TracedExchange extends Base {
    span: Span | null = null
    startedAt = 0

    override start(): void {
      const request = this.reply.request
      const parent = request.traceSpan
      if (parent === null) {
        // Not sampled: the upstream continues the trace, unsampled too (the client's tracestate passes on as it came).
        const traceparent = request.unsampledTraceparent
        if (traceparent !== null) (this.outgoing.headers as Record<string, unknown>).traceparent = traceparent
      } else if (!this.reply.raw.destroyed) {
        const o = this.outgoing
        const q = o.path.indexOf('?')
        const span = tracer.startSpan(
          `${o.method} ${upstream}`,
          {
            kind: SpanKind.CLIENT,
            attributes: { 'http.request.method': o.method, 'url.path': q === -1 ? o.path : o.path.slice(0, q), 'tollgate.upstream': upstream },
          },
          parentContext(parent),
        )
        injectContext(span, o.headers as Record<string, unknown>)
        this.span = span
        this.startedAt = performance.now()
      }
      super.start()
    }

    override onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
      const span = this.span
      if (span !== null && statusCode >= 200) {
        const ttfb = Math.round((performance.now() - this.startedAt) * 1000) / 1000
        if (this.target !== null) span.setAttribute('server.address', this.target.label)
        span.setAttribute('http.response.status_code', statusCode)
        span.setAttribute('tollgate.upstream.ttfb_ms', ttfb)
        span.addEvent('first byte')
        if (statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR })
      }
      return super.onHeaders(statusCode, rawHeaders, resume)
    }

    override fail(err: Error): void {
      if (this.span !== null) {
        if (this.target !== null) this.span.setAttribute('server.address', this.target.label)
        failSpan(this.span, err)
      }
      super.fail(err)
    }

    override finish(): void {
      super.finish()
      const span = this.span
      if (span !== null) {
        this.span = null
        span.end()
      }
    }
  }
}

function parentContext(parent: Span) {
  return trace.setSpan(ROOT_CONTEXT, parent)
}
