/**
 * The one error envelope of the public contract (docs/API.md):
 * `{ detail, error_code, status_code }`, with status_code equal to the HTTP status.
 * Every component answers errors through this module, so the shape cannot drift.
 */
import { randomUUID } from 'node:crypto'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { lingerOnRefusal } from './refused-upload.js'

export const ErrorCode = {
  VALIDATION_ERROR: 'VALIDATION_ERROR',
  UNAUTHORIZED: 'UNAUTHORIZED',
  INVALID_TOKEN: 'INVALID_TOKEN',
  TOKEN_EXPIRED: 'TOKEN_EXPIRED',
  TOKEN_REVOKED: 'TOKEN_REVOKED',
  INVALID_CREDENTIALS: 'INVALID_CREDENTIALS',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  METHOD_NOT_ALLOWED: 'METHOD_NOT_ALLOWED',
  CONFLICT: 'CONFLICT',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  URI_TOO_LONG: 'URI_TOO_LONG',
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  HEADERS_TOO_LARGE: 'HEADERS_TOO_LARGE',
  REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  RATE_LIMITED: 'RATE_LIMITED',
  INTERNAL_ERROR: 'INTERNAL_ERROR',
  BAD_GATEWAY: 'BAD_GATEWAY',
  SERVICE_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
  GATEWAY_TIMEOUT: 'GATEWAY_TIMEOUT',
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

export interface ErrorEnvelope {
  detail: string
  error_code: string
  status_code: number
}

/** Default code and constant detail per status, used when an error carries no code of ours. */
const byStatus: Record<number, [ErrorCode, string]> = {
  400: [ErrorCode.VALIDATION_ERROR, 'Invalid request'],
  401: [ErrorCode.UNAUTHORIZED, 'Authentication required'],
  403: [ErrorCode.FORBIDDEN, 'Access forbidden'],
  404: [ErrorCode.NOT_FOUND, 'Not found'],
  405: [ErrorCode.METHOD_NOT_ALLOWED, 'Method not allowed'],
  408: [ErrorCode.REQUEST_TIMEOUT, 'Request timed out'],
  409: [ErrorCode.CONFLICT, 'Conflict'],
  413: [ErrorCode.PAYLOAD_TOO_LARGE, 'Request body is too large'],
  414: [ErrorCode.URI_TOO_LONG, 'Request URI is too long'],
  415: [ErrorCode.UNSUPPORTED_MEDIA_TYPE, 'Unsupported media type'],
  429: [ErrorCode.RATE_LIMITED, 'Rate limit exceeded, retry later'],
  431: [ErrorCode.HEADERS_TOO_LARGE, 'Request headers are too large'],
  500: [ErrorCode.INTERNAL_ERROR, 'Internal server error'],
  502: [ErrorCode.BAD_GATEWAY, 'Upstream service error'],
  503: [ErrorCode.SERVICE_UNAVAILABLE, 'Service temporarily unavailable'],
  504: [ErrorCode.GATEWAY_TIMEOUT, 'Upstream service timed out'],
}

export function defaultsForStatus(status: number): [ErrorCode, string] {
  return byStatus[status] ?? (status >= 500 ? byStatus[500]! : [ErrorCode.VALIDATION_ERROR, 'Invalid request'])
}

export function envelope(status: number, code?: string, detail?: string): ErrorEnvelope {
  const [defCode, defDetail] = defaultsForStatus(status)
  return { detail: detail ?? defDetail, error_code: code ?? defCode, status_code: status }
}

/**
 * An error we raise on purpose: its status, code and detail are safe to show.
 * Headers (WWW-Authenticate, Retry-After) travel with it. Raise one of the
 * classes per code below; hooks hand it to `done(err)`, handlers throw it,
 * and the one error handler (installErrorEnvelope) answers it.
 */
export class HttpError extends Error {
  readonly statusCode: number
  /** The envelope's error_code; also `code`, as @fastify/error names it. */
  readonly errorCode: string
  readonly code: string
  readonly detail: string
  readonly headers: Record<string, string>
  /** Fields for the error handler's one log line about it (an upstream's name and the cause, say); never sent to the client. */
  logFields: Record<string, unknown> | undefined = undefined

  constructor(statusCode: number, errorCode: string, detail?: string, headers: Record<string, string> = {}) {
    const d = detail ?? defaultsForStatus(statusCode)[1]
    super(d)
    this.name = 'HttpError'
    this.statusCode = statusCode
    this.errorCode = errorCode
    this.code = errorCode
    this.detail = d
    this.headers = headers
  }
}

export const BEARER_REALM = 'api'

/** RFC 6750 challenges: none of these ever echo client input. */
export const challenge = {
  missing: `Bearer realm="${BEARER_REALM}"`,
  invalidToken: (description: string) =>
    `Bearer realm="${BEARER_REALM}", error="invalid_token", error_description="${description}"`,
}

/**
 * A class per error code, in the @fastify/error style (`createError(code,
 * message, statusCode)`): the class fixes code and status, an instance may
 * say more in its detail. Not @fastify/error itself: its constructor never
 * runs the base class's, so the headers an instance carries (a Retry-After
 * of its own) could only be patched on afterwards.
 */
function defineError(code: ErrorCode, statusCode: number, defaultDetail = defaultsForStatus(statusCode)[1], defaultHeaders: Record<string, string> = {}) {
  return class extends HttpError {
    static readonly code = code
    static readonly statusCode = statusCode
    constructor(detail: string = defaultDetail, headers: Record<string, string> = { ...defaultHeaders }) {
      super(statusCode, code, detail, headers)
    }
  }
}

export const ValidationError = defineError(ErrorCode.VALIDATION_ERROR, 400)
export const Unauthorized = defineError(ErrorCode.UNAUTHORIZED, 401, undefined, { 'www-authenticate': challenge.missing })
export const InvalidToken = defineError(ErrorCode.INVALID_TOKEN, 401, 'Invalid token', { 'www-authenticate': challenge.invalidToken('Invalid token') })
export const TokenExpired = defineError(ErrorCode.TOKEN_EXPIRED, 401, 'Token has expired', {
  'www-authenticate': challenge.invalidToken('The access token expired'),
})
export const TokenRevoked = defineError(ErrorCode.TOKEN_REVOKED, 401, 'Token has been revoked', {
  'www-authenticate': challenge.invalidToken('The access token has been revoked'),
})
export const InvalidCredentials = defineError(ErrorCode.INVALID_CREDENTIALS, 401, 'Invalid email or password', { 'www-authenticate': challenge.missing })
export const Forbidden = defineError(ErrorCode.FORBIDDEN, 403)
export const NotFound = defineError(ErrorCode.NOT_FOUND, 404)
export const MethodNotAllowed = defineError(ErrorCode.METHOD_NOT_ALLOWED, 405)
export const Conflict = defineError(ErrorCode.CONFLICT, 409)
export const PayloadTooLarge = defineError(ErrorCode.PAYLOAD_TOO_LARGE, 413)
export const UriTooLong = defineError(ErrorCode.URI_TOO_LONG, 414)
export const UnsupportedMediaType = defineError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, 415)
export const RateLimited = defineError(ErrorCode.RATE_LIMITED, 429)
export const HeadersTooLarge = defineError(ErrorCode.HEADERS_TOO_LARGE, 431)
export const InternalError = defineError(ErrorCode.INTERNAL_ERROR, 500)
export const BadGateway = defineError(ErrorCode.BAD_GATEWAY, 502)
export const ServiceUnavailable = defineError(ErrorCode.SERVICE_UNAVAILABLE, 503, undefined, { 'retry-after': '2' })
export const GatewayTimeout = defineError(ErrorCode.GATEWAY_TIMEOUT, 504)

/** Shorthands for the common cases (each a new instance of its class). */
export const errors = {
  validation: (detail: string) => new ValidationError(detail),
  unauthorized: (detail?: string) => new Unauthorized(detail),
  invalidToken: () => new InvalidToken(),
  tokenExpired: () => new TokenExpired(),
  tokenRevoked: () => new TokenRevoked(),
  invalidCredentials: () => new InvalidCredentials(),
  forbidden: () => new Forbidden(),
  notFound: (detail?: string) => new NotFound(detail),
  conflict: (detail: string) => new Conflict(detail),
  unavailable: (detail?: string, retryAfterSeconds = 2) => new ServiceUnavailable(detail, { 'retry-after': String(retryAfterSeconds) }),
}

/**
 * Any failure as one line for stderr or a log field: its message with its
 * line breaks folded, or the messages of an AggregateError's parts (a connection refused on
 * every address of a host, localhost as ::1 and 127.0.0.1, has an empty
 * one), with its code when the text does not already name it (a SQLSTATE
 * such as 42P07, which the message never says).
 */
export function describeError(err: unknown): string {
  const e = err as { message?: unknown; code?: unknown; errors?: unknown } | null | undefined
  let message = typeof e?.message === 'string' ? e.message : e instanceof Error ? '' : String(err)
  if (!message && Array.isArray(e?.errors)) {
    message = [...new Set(e.errors.map((x) => (x as { message?: unknown })?.message).filter((m) => typeof m === 'string' && m))].join('; ')
  }
  message = message.replace(/\s+/g, ' ').trim()
  const code = typeof e?.code === 'string' ? e.code : ''
  if (!message) return code || 'unknown error'
  return code && !message.includes(code) ? `${message} (${code})` : message
}

/** Fastify's own error codes that map to a specific answer. */
const fastifyCodes: Record<string, [number, ErrorCode, string]> = {
  FST_ERR_CTP_INVALID_JSON_BODY: [400, ErrorCode.VALIDATION_ERROR, 'Malformed JSON body'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, ErrorCode.VALIDATION_ERROR, 'Request body is empty'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, ErrorCode.VALIDATION_ERROR, 'Invalid Content-Length'],
  FST_ERR_CTP_BODY_TOO_LARGE: [413, ErrorCode.PAYLOAD_TOO_LARGE, 'Request body is too large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, 'Unsupported media type'],
  FST_ERR_BAD_URL: [400, ErrorCode.VALIDATION_ERROR, 'Malformed URL'],
  FST_ERR_MAX_PARAM_LENGTH: [414, ErrorCode.URI_TOO_LONG, 'Request URI is too long'],
  FST_ERR_ASYNC_CONSTRAINT: [400, ErrorCode.VALIDATION_ERROR, 'Invalid request'],
}

/** Turn any thrown thing into (status, envelope, headers); never leaks a 5xx message. */
export function toEnvelope(err: unknown): { status: number; body: ErrorEnvelope; headers: Record<string, string> } {
  if (err instanceof HttpError) {
    return { status: err.statusCode, body: envelope(err.statusCode, err.errorCode, err.detail), headers: err.headers }
  }
  const e = err as Partial<FastifyError> & { validation?: unknown; validationContext?: string }
  if (e && e.validation) {
    // Fastify's message names the field, e.g. "body/email must match format \"email\"".
    return { status: 400, body: envelope(400, ErrorCode.VALIDATION_ERROR, cleanValidationMessage(e.message)), headers: {} }
  }
  if (e && typeof e.code === 'string' && fastifyCodes[e.code]) {
    const [status, code, detail] = fastifyCodes[e.code]!
    return { status, body: envelope(status, code, detail), headers: {} }
  }
  if (e instanceof SyntaxError) {
    return { status: 400, body: envelope(400, ErrorCode.VALIDATION_ERROR, 'Malformed JSON body'), headers: {} }
  }
  const status = typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500
  // Plugin messages are not ours to show: a constant per status instead.
  return { status, body: envelope(status), headers: {} }
}

function cleanValidationMessage(message: string | undefined): string {
  if (!message) return 'Invalid request'
  const oneLine = message.replace(/\s+/g, ' ').trim()
  return oneLine.length > 300 ? `${oneLine.slice(0, 297)}...` : oneLine
}

/**
 * Installs the envelope on an app: error handler, not-found handler. Register
 * on the root instance before routes so every encapsulated child inherits it.
 */
export function installErrorEnvelope(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const { status, body, headers } = toEnvelope(err)
    // One we raised on purpose (an upstream down, the database away) says all in its code; anything else is a bug: its stack.
    const ours = err instanceof HttpError
    if (status >= 500 && ours) request.log.warn({ ...err.logFields, code: body.error_code, status }, 'request failed')
    else if (status >= 500) request.log.error({ err }, 'request failed')
    else request.log.info({ ...(ours ? err.logFields : undefined), code: body.error_code, status }, 'request rejected')
    // Headers set by a plugin before the error (e.g. Retry-After) are kept;
    // ours win where both exist.
    for (const [k, v] of Object.entries(headers)) reply.header(k, v)
    if (status === 401 && !reply.hasHeader('www-authenticate')) reply.header('www-authenticate', challenge.missing)
    // Refused before the body was read (413, a hook's 401...): let the client finish sending, bounded.
    lingerOnRefusal(request, reply)
    // An error is about this request only: never kept by a cache (a 401 or 403 least of all).
    reply.code(status).header('cache-control', 'no-store').type('application/json; charset=utf-8').send(body)
  })
  app.setNotFoundHandler((_request, reply) => {
    reply.code(404).header('cache-control', 'no-store').type('application/json; charset=utf-8').send(envelope(404, ErrorCode.NOT_FOUND, 'Route not found'))
  })
}

/** For Node's clientError (malformed HTTP, oversized headers): raw socket, no Fastify. */
export function clientErrorResponse(err: NodeJS.ErrnoException & { code?: string }): string {
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
  const body = JSON.stringify(envelope(status))
  const reason = status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    // Every answer carries a request id (docs/API.md), this one too: there is no request to take it from.
    `x-request-id: ${randomUUID()}\r\nCache-Control: no-store\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  )
}
