/**
 * The gateway's own spans, children of the request's server span (see
 * installTracing in common): each access step (token check, rate limit) and
 * the upstream call. Built only when tracing is on; with it off the route
 * pipeline and the forwarder are the untraced ones, unchanged.
 */
import { ROOT_CONTEXT, SpanStatusCode, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api'
import type { Step } from './hook-steps.js'

/** The step's span: its outcome (ok, or the refusal's error code) recorded when it calls done. */
export function tracedStep(tracer: Tracer, name: string, attributes: Attributes, step: Step): Step {
  return (request, reply, done) => {
    const parent = request.traceSpan
    if (parent === null) return step(request, reply, done) // tracing off, or the trace not sampled
    const span = tracer.startSpan(name, { attributes }, trace.setSpan(ROOT_CONTEXT, parent))
    const previous = current
    current = span
    try {
      step(request, reply, (err) => {
        endStep(span, err)
        done(err)
      })
    } finally {
      current = previous
    }
  }
}

/**
 * A listener's access steps as spans when tracing is on (a tracer), else the steps themselves: wrapped once, when
 * the routes are composed. Shared by the public and the internal listener, so their spans have the same names and
 * attributes.
 */
export function stepSpans(tracer: Tracer | null | undefined) {
  const traced = (name: string, attributes: Attributes, step: Step): Step => (tracer ? tracedStep(tracer, name, attributes, step) : step)
  return {
    traced,
    /** One rate-limit policy's step. */
    limit: (policy: { name: string; key: string }, step: Step): Step =>
      traced('rate limit', { 'tollgate.rate_limit.policy': policy.name, 'tollgate.rate_limit.key': policy.key }, step),
  }
}

function endStep(span: Span, err: Error | undefined): void {
  if (err === undefined) {
    span.setAttribute('tollgate.outcome', 'ok')
  } else {
    const e = err as { errorCode?: unknown; code?: unknown; statusCode?: unknown }
    const code = typeof e.errorCode === 'string' ? e.errorCode : typeof e.code === 'string' ? e.code : 'error'
    span.setAttribute('tollgate.outcome', code)
    if (typeof e.statusCode === 'number') span.setAttribute('http.response.status_code', e.statusCode)
    if (typeof e.statusCode !== 'number' || e.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: err.message })
  }
  span.end()
}

/**
 * The span of the step running synchronously now: the token check reports
 * its cache hit or miss while its synchronous part runs (the cache is looked
 * up before any promise), so no per-request slot is needed.
 */
let current: Span | null = null

/** For the token check: whether the token was answered from the verified-token cache. */
export function recordTokenCache(hit: boolean): void {
  current?.setAttribute('tollgate.token.cache', hit ? 'hit' : 'miss')
}
