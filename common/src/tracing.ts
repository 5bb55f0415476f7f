/**
 * OpenTelemetry tracing, off unless an OTLP endpoint is configured. When it
 * is off nothing is registered: no context manager, no hook, no per-request
 * work. When on, every process exports its spans over OTLP/HTTP (JSON) with
 * a batch processor, honours the client's W3C `traceparent`/`tracestate`,
 * and the standard OTEL_* variables name the endpoint, the sampler and the
 * service.
 *
 * The tracer, its export worker and the context manager are loaded only
 * when tracing is on (tracing-runtime.ts); this module needs only the API.
 *
 * Spans are made by hand where the work is (the request in installTracing,
 * the queries in db.ts, the gateway's steps and upstream call) rather than by
 * the require-hook instrumentations: the processes are ESM, where those need
 * a loader flag, and the hand-made spans cost only what they record.
 */
import { context, diag, DiagLogLevel, propagation, ROOT_CONTEXT, SpanStatusCode, trace, type Context, type Span, type Tracer } from '@opentelemetry/api'
import { Type } from './typebox.js'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Socket } from 'node:net'
import { REQUEST_ID_LOG_LABEL } from './logging.js'

export const TRACES_SAMPLERS = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'] as const

/** The OpenTelemetry SDK's own variable names (specification "Environment Variable Specification"). */
export const tracingConfig = {
  /** OTLP/HTTP base URL (`/v1/traces` is appended); tracing is off when neither this nor the traces one is set. */
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(Type.String({ pattern: '^https?://' })),
  /** Full URL of the traces endpoint, used as is (wins over OTEL_EXPORTER_OTLP_ENDPOINT). */
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Type.Optional(Type.String({ pattern: '^https?://' })),
  OTEL_SDK_DISABLED: Type.Boolean({ default: false }),
  OTEL_SERVICE_NAME: Type.Optional(Type.String({ minLength: 1 })),
  OTEL_TRACES_SAMPLER: Type.Union(
    TRACES_SAMPLERS.map((s) => Type.Literal(s)),
    { default: 'parentbased_always_on' },
  ),
  /** The ratio of the *traceidratio samplers, 0 to 1. */
  OTEL_TRACES_SAMPLER_ARG: Type.Number({ minimum: 0, maximum: 1, default: 1 }),
  /** Milliseconds between two exports of the batch processor. */
  OTEL_BSP_SCHEDULE_DELAY: Type.Integer({ minimum: 1, maximum: 600000, default: 5000 }),
}

export interface TracingSettings {
  OTEL_EXPORTER_OTLP_ENDPOINT?: string
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?: string
  OTEL_SDK_DISABLED?: boolean
  OTEL_SERVICE_NAME?: string
  OTEL_TRACES_SAMPLER?: string
  OTEL_TRACES_SAMPLER_ARG?: number
  OTEL_BSP_SCHEDULE_DELAY?: number
}

export interface Tracing {
  tracer: Tracer
  serviceName: string
  /**
   * The trace of a request with these headers: its (recording) span when it
   * is sampled (`name` is asked for then only); else, made without the tracer
   * and without a span object, the `traceparent` to pass on (the client's
   * context unchanged, or a new unsampled trace's ids).
   */
  requestSpan(headers: Record<string, unknown>, name: () => string, requestId?: string): Span | string
  /**
   * A request's id (Fastify's genReqId): the client's sane one as given, else the id of the new trace this request
   * will start, 32 hex digits, so that its id, its log lines' `reqId` and its trace are one. Called just before the
   * request's requestSpan, which starts that trace when its id is the one minted here and the client sent no
   * traceparent (a client that continues its own trace gets an id drawn alike that names no trace).
   */
  requestId(given: string | undefined): string
  /** Export what is pending (tests, shutdown). */
  flush(): Promise<void>
  shutdown(): Promise<void>
}

/** The configured tracing, or null (off): then nothing is loaded and nothing global is touched. */
export async function startTracing(config: TracingSettings, defaultServiceName: string): Promise<Tracing | null> {
  if (config.OTEL_SDK_DISABLED) return null
  const url =
    config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
    (config.OTEL_EXPORTER_OTLP_ENDPOINT ? `${config.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces` : undefined)
  if (url === undefined) return null
  const { createTracing } = await import('./tracing-runtime.js')
  return createTracing(config, url, config.OTEL_SERVICE_NAME ?? defaultServiceName)
}

/** The context of a W3C `traceparent` (and `tracestate`) in these headers; the root context when there is none. */
export function extractContext(headers: Record<string, unknown>): Context {
  return propagation.extract(ROOT_CONTEXT, headers)
}

/** Write the span's `traceparent` (and the trace state it carries) into outgoing headers. */
export function injectContext(span: Span, headers: Record<string, unknown>): void {
  propagation.inject(trace.setSpan(ROOT_CONTEXT, span), headers)
}

/** The headers carrying the active span's context (outgoing calls made outside a request: the outbox). */
export function activeTraceHeaders(): Record<string, string> {
  const headers: Record<string, string> = {}
  propagation.inject(context.active(), headers)
  return headers
}

export function failSpan(span: Span, err: unknown): void {
  const e = err as { message?: string; code?: unknown } | undefined
  span.setStatus({ code: SpanStatusCode.ERROR, message: e?.message ?? String(err) })
  if (typeof e?.code === 'string') span.setAttribute('error.type', e.code)
}

let diagnostics = false

/**
 * Tracing's warnings and errors (an export the collector refused or never
 * answered, spans dropped from a full queue) as warnings in the process's
 * log, rather than nowhere (its default). Once per process.
 */
function routeDiagnostics(log: FastifyBaseLogger): void {
  if (diagnostics) return
  diagnostics = true
  const warn = (message: string, ...args: unknown[]) => {
    const detail = args.length > 0 ? args.map((a) => (a instanceof Error ? a.message : String(a))).join(' ').slice(0, 500) : undefined
    log.warn(detail === undefined ? {} : { detail }, `tracing: ${plain(message).slice(0, 500)}`)
  }
  const quiet = () => {}
  // Errors reach the diag logger as JSON (stack and all): their message is enough here.
  const plain = (message: string) => {
    if (!message.startsWith('{')) return message
    try {
      const e = JSON.parse(message) as { message?: unknown }
      return typeof e.message === 'string' ? e.message : message
    } catch {
      return message
    }
  }
  diag.setLogger({ error: warn, warn, info: quiet, debug: quiet, verbose: quiet }, DiagLogLevel.WARN)
}

declare module 'fastify' {
  interface FastifyInstance {
    /** This process's tracing when it is on (OTEL_EXPORTER_OTLP_ENDPOINT set); null otherwise. */
    tracing: Tracing | null
  }
  interface FastifyRequest {
    /** The request's server span when its trace is sampled (recording); null otherwise (tracing off, or not sampled). */
    traceSpan: Span | null
    /**
     * Tracing on and the trace not sampled: the `traceparent` calls made for this request carry on (flags 00, so
     * the next hop does not sample it either); null otherwise. A string, not a span: such a request makes no
     * object for its trace.
     */
    unsampledTraceparent: string | null
  }
}

/** The request span's two ends, called by createService's own onRequest and onResponse hooks (no hook of their own). */
export interface RequestTracing {
  begin(request: FastifyRequest, reply: FastifyReply): void
  end(request: FastifyRequest, reply: FastifyReply): void
}

/**
 * The server span of every request: its parent is the client's traceparent,
 * its name the route. When the trace is sampled, its trace and span ids go on
 * every log line of the request and route handlers run inside it (so queries
 * become its children); when it is not, only its traceparent is kept, to pass on.
 */
/** `shutdownOnClose: false` when the tracing outlives the app (the gateway's runtime, across reloads). */
export function installTracing(app: FastifyInstance, tracing: Tracing, shutdownOnClose = true): RequestTracing {
  routeDiagnostics(app.log)
  const appLog = app.log
  app.decorateRequest('traceSpan', null)
  app.decorateRequest('unsampledTraceparent', null)
  const begin = (request: FastifyRequest, reply: FastifyReply): void => {
    const span = tracing.requestSpan(request.headers, () => spanName(request), request.id)
    // A trace not sampled (OTEL_TRACES_SAMPLER_ARG) costs no more than its traceparent, which goes on upstream.
    if (typeof span === 'string') {
      request.unsampledTraceparent = span
      return
    }
    request.traceSpan = span
    const route = request.routeOptions.url
    span.setAttribute('http.request.method', request.method)
    span.setAttribute('url.path', pathOf(request.url))
    if (route !== undefined) span.setAttribute('http.route', route)
    const ids = span.spanContext()
    // A child of the app's logger, as Fastify made the request's own (not a child of that one): a logger one level
    // deeper has another shape, and 1 % of requests carrying one made every logging call site polymorphic, which
    // cost all requests about 5 % of their CPU (lab A/B, both load tools). The reply's logger too: Fastify's
    // error handler logs through it.
    reply.log = request.log = appLog.child({ [REQUEST_ID_LOG_LABEL]: request.id, trace_id: ids.traceId, span_id: ids.spanId }, { level: request.log.level })
    // A client that leaves before the answer ends the span too (onResponse never runs then): watchConnection.
    watchConnection(request.raw.socket, reply)
  }
  // Handlers run with the request's span active: what they call (queries, fetches) is its child.
  app.addHook('onRoute', (route) => {
    const handler = route.handler
    route.handler = function traced(this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      const span = request.traceSpan
      if (span === null) return handler.call(this, request, reply)
      return context.with(trace.setSpan(ROOT_CONTEXT, span), handler, this, request, reply)
    } as typeof handler
  })
  if (shutdownOnClose) {
    app.addHook('onClose', async () => {
      await tracing.shutdown()
    })
  }
  return { begin, end: endServerSpan }
}

/**
 * The sampled requests in flight on each connection. A client that leaves closes its connection (and a response
 * destroyed mid-way destroys it too), so one close listener per connection, added at its first sampled request, sees
 * every abandoned span. Not a listener on each response: one on only the sampled 1 % gave their responses another set
 * of listeners than all the others' and turned the event emitter's paths polymorphic (3.5-4.5 % of every request's
 * CPU; docs/benchmark-history.md, "Session 32"), and the same one on every response made every request add and remove a
 * listener for the few that need one (no CPU difference measured either way: "Session 34"). Weak: a connection that
 * is gone holds nothing.
 */
const sampledOnConnection = new WeakMap<Socket, Set<FastifyReply>>()

function watchConnection(socket: Socket | null, reply: FastifyReply): void {
  if (socket === null || socket === undefined) return
  let open = sampledOnConnection.get(socket)
  if (open === undefined) {
    open = new Set()
    sampledOnConnection.set(socket, open)
    socket.on('close', onConnectionClose)
  }
  open.add(reply)
}

/** A connection closed: its sampled requests whose answer did not finish (the client left first) end as 499. */
function onConnectionClose(this: Socket): void {
  const open = sampledOnConnection.get(this)
  if (open === undefined) return
  sampledOnConnection.delete(this)
  for (const reply of open) {
    if (reply.request.traceSpan !== null && !reply.raw.writableFinished) abortServerSpan(reply.request)
  }
}

function spanName(request: FastifyRequest): string {
  const route = request.routeOptions.url
  return route === undefined ? request.method : `${request.method} ${route}`
}

function abortServerSpan(request: FastifyRequest): void {
  const span = request.traceSpan!
  request.traceSpan = null
  span.setStatus({ code: SpanStatusCode.ERROR, message: 'client aborted' })
  span.setAttribute('http.response.status_code', 499)
  span.end()
}

function endServerSpan(request: FastifyRequest, reply: FastifyReply): void {
  const span = request.traceSpan
  if (span === null) return
  request.traceSpan = null
  const socket = request.raw.socket as Socket | null
  if (socket !== null) sampledOnConnection.get(socket)?.delete(reply)
  const status = reply.statusCode
  span.setAttribute('http.response.status_code', status)
  if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR })
  span.end()
}

function pathOf(url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}
