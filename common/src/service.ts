/**
 * The Fastify base every Tollgate process is built on: request ids, the error
 * envelope, JSON logs, health and readiness, Prometheus metrics, and the
 * server limits (body, headers, timeouts) that hold against slow or hostile
 * clients. Each service's buildApp starts here and adds its own routes.
 */
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import AjvCompiler from '@fastify/ajv-compiler'
import swagger from '@fastify/swagger'
import { clientErrorResponse, installErrorEnvelope, toEnvelope } from './errors.js'
import { readinessHandler } from './readiness.js'
import { installJsonBodyParser } from './json-body.js'
import { lingerOnRefusal } from './refused-upload.js'
import { replyHeaderSetter } from './reply-headers.js'
import { accessLine, writeAccessLine, genReqId, saneRequestId, loggerOptions, REQUEST_ID_HEADER, REQUEST_ID_LOG_LABEL, stdoutDestination, type AccessLogExtension } from './logging.js'
import { createMetricsKit, installMetrics, type MetricsKit } from './metrics.js'
import { installTracing, type Tracing } from './tracing.js'

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>

export interface ServiceOptions {
  name: string
  logLevel: string
  /** Pass a pino-compatible stream to capture logs (tests); default stdout. */
  logStream?: NodeJS.WritableStream
  bodyLimit?: number
  /**
   * Readiness checks: each resolves when its dependency answers (a string it
   * resolves to is shown as that check's state, e.g. "degraded"); a rejection
   * makes the process not ready.
   */
  readiness?: Record<string, () => Promise<unknown>>
  /** Time a client has to send its headers (slowloris); default 10 s. */
  headersTimeoutMs?: number
  /** Time a client has to send its whole request; default 30 s. */
  requestTimeoutMs?: number
  /** Serve GET /ready and GET /metrics on this app (default true); the gateway serves them on its admin listener instead. */
  probes?: boolean
  /** A registry kept across instances (the gateway's reload); default: a new one. */
  metrics?: MetricsKit
  /**
   * A check every request passes first, right after the response headers and request id are set: an error it
   * returns is the answer (the gateway's URL and declared body length). Part of the service's own onRequest hook.
   */
  admit?: (request: FastifyRequest) => Error | undefined
  /** Publish the routes' OpenAPI document at /openapi.json (default true). */
  openapi?: boolean
  /** Headers every answer carries, framework errors included (the gateway's security headers). */
  responseHeaders?: Record<string, string>
  /**
   * Adds fields of its own to a request's access line before it is written (the gateway: user, upstream, target,
   * upstream time). Called once per request with the line's object; no other object or serialisation is made.
   */
  accessLog?: AccessLogExtension
  /** Extra Fastify options (https, etc.). */
  fastify?: Partial<FastifyServerOptions>
  /** OpenTelemetry tracing (startTracing), or null/absent: off, nothing installed. */
  tracing?: Tracing | null
  /** The tracing outlives this app: its owner shuts it down (the gateway's runtime, across reloads). */
  tracingShared?: boolean
}

export const ONE_MIB = 1024 * 1024

export function createService(opts: ServiceOptions): App {
  const logger = loggerOptions(opts.logLevel, opts.name)
  // The fields every answer carries and its request id, on a route's answer and on the router's refusals alike.
  const setResponseHeaders = replyHeaderSetter(opts.responseHeaders ?? {}, REQUEST_ID_HEADER)
  const traceIds = opts.tracing ?? null
  const app = Fastify({
    logger: { ...(logger as object), stream: opts.logStream ?? stdoutDestination() },
    // With tracing on, an id the service mints is the id of the trace the request starts (Tracing.requestId).
    genReqId: traceIds !== null ? (req: IncomingMessage) => traceIds.requestId(saneRequestId(req)) : genReqId,
    // One access line of our own per request instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: REQUEST_ID_LOG_LABEL }),
    bodyLimit: opts.bodyLimit ?? ONE_MIB,
    // Slowloris and stuck clients: bounded time to send headers and the whole request.
    connectionTimeout: 0,
    requestTimeout: opts.requestTimeoutMs ?? 30_000,
    http: {
      headersTimeout: opts.headersTimeoutMs ?? 10_000,
      // Node checks those timeouts only this often (default 30 s): check often enough to mean them.
      connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor((opts.headersTimeoutMs ?? 10_000) / 2))),
    },
    // Errors raised by Node's HTTP parser never reach a route: answer them in the envelope too.
    clientErrorHandler(err: NodeJS.ErrnoException, socket: import('node:net').Socket) {
      if (!socket.writable || err.code === 'ECONNRESET') {
        socket.destroy()
        return
      }
      socket.end(clientErrorResponse(err))
    },
    keepAliveTimeout: 72_000,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: false, caseSensitive: true, maxParamLength: 200 },
    // The router's own errors (a malformed percent-encoding, a path parameter over
    // maxParamLength) skip every hook: answer them in the envelope here, without the input.
    frameworkErrors(error: Error, request: FastifyRequest, reply: FastifyReply) {
      const { status, body } = toEnvelope(error)
      setResponseHeaders(reply, request.id)
      request.log.info({ method: request.method, code: body.error_code, status }, 'request rejected by the router')
      lingerOnRefusal(request, reply)
      reply.code(status).type('application/json; charset=utf-8').send(body)
    },
    ajv: { customOptions: { removeAdditional: true, coerceTypes: 'array', allErrors: false } },
    schemaController: { compilersFactory: { buildValidator: strictBodyValidator() } },
    ...opts.fastify,
  } as FastifyServerOptions).withTypeProvider<TypeBoxTypeProvider>() as unknown as App

  installErrorEnvelope(app as unknown as FastifyInstance)
  installJsonBodyParser(app as unknown as FastifyInstance)
  app.decorate('tracing', opts.tracing ?? null)
  const tracing = opts.tracing ? installTracing(app as unknown as FastifyInstance, opts.tracing, opts.tracingShared !== true) : null

  // Callback-style hooks on the hot path, cheaper than async ones, and one per phase: each hook is a step of
  // Fastify's hook runner for every request.
  const admit = opts.admit
  app.addHook('onRequest', (request, reply, done) => {
    setResponseHeaders(reply, request.id)
    if (tracing !== null) tracing.begin(request, reply)
    done(admit === undefined ? undefined : admit(request))
  })
  // Draining: answers to requests still in flight tell the client to close the
  // connection, so keep-alive sockets do not hold the shutdown open.
  let draining = false
  app.addHook('preClose', async () => {
    draining = true
  })
  const metrics = opts.metrics ?? createMetricsKit(opts.name)
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (draining) reply.header('connection', 'close')
    metrics.countAnswer(reply, payload)
    done(null, payload)
  })

  // One access-log line per request, at the end (Fastify's own two lines are off).
  // Routes declared with logLevel 'warn' (probes, polls) stay quiet.
  const accessLog = opts.accessLog
  app.addHook('onResponse', (request, reply, done) => {
    if (tracing !== null) tracing.end(request, reply)
    const line = accessLine(request, reply)
    if (accessLog !== undefined) accessLog(request, reply, line)
    writeAccessLine(request.log, line)
    metrics.observe(request, reply)
    done()
  })

  installMetrics(app as unknown as FastifyInstance, metrics, opts.probes !== false)

  // The OpenAPI document of this service's routes, generated from their schemas.
  // The gateway reads it to publish /docs; internal routes are left out.
  if (opts.openapi !== false) {
    void app.register(swagger, {
      openapi: { openapi: '3.0.3', info: { title: opts.name, version: '0.1.0' } },
      transform: ({ schema, url }) => ({
        schema: url.startsWith('/internal') ? ({ ...schema, hide: true } as typeof schema) : schema,
        url,
      }),
    })
    app.get('/openapi.json', { logLevel: 'warn' }, async () => (app as unknown as { swagger(): unknown }).swagger())
  }

  const readiness = opts.readiness ?? {}
  // /health on every listener; /ready and /metrics only where probes are on (the gateway serves them on its admin listener).
  app.get('/health', { logLevel: 'warn' }, async () => ({ status: 'ok' }))
  if (opts.probes !== false) app.get('/ready', { logLevel: 'warn' }, readinessHandler(readiness))

  return app
}

/**
 * Query strings and path params arrive as text and need coercion ("10" -> 10);
 * JSON bodies already carry types, and coercing them would turn ["a"] into "a"
 * or 5 into "5". Bodies get a non-coercing compiler, the rest Fastify's default.
 */
function strictBodyValidator() {
  const factory = AjvCompiler()
  return (externalSchemas: unknown, options: { customOptions?: Record<string, unknown> }) => {
    const coercing = factory(externalSchemas as never, options as never)
    const strict = factory(externalSchemas as never, {
      ...options,
      customOptions: { ...options.customOptions, coerceTypes: false },
    } as never)
    return (def: { httpPart?: string }) => (def.httpPart === 'body' ? strict : coercing)(def as never)
  }
}
