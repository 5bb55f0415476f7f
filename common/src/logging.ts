/**
 * pino through Fastify. JSON lines; secrets are redacted at the logger so no
 * code path can print a token, a password or a proof.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyServerOptions } from 'fastify'

/**
 * Explicit paths only (wildcards cost on every line). Headers are never
 * logged by our serializers; these catch a careless `log.info({ headers })`
 * or `log.info({ body })`.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-tollgate-signature"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'password',
  'token',
  'body.password',
  'body.token',
  'user.password_hash',
]

/** Credentials a careless client may put in a query string: never logged. */
const SECRET_QUERY = /([?&](?:access_token|token|id_token|refresh_token|password|secret|api_key)=)[^&#]*/gi

export function redactUrl(url: string): string {
  return url.includes('?') ? url.replace(SECRET_QUERY, '$1[redacted]') : url
}

export function loggerOptions(level: string, service: string): FastifyServerOptions['logger'] {
  return {
    level,
    base: { service },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      // Method and URL only (no headers: they hold the bearer token and proofs).
      req: (req: { method: string; url: string }) => ({ method: req.method, url: redactUrl(req.url) }),
    },
  }
}

/** A client's request id is kept only when it is short and plain; otherwise we mint one. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export function genReqId(req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  if (typeof given === 'string' && SANE_REQUEST_ID.test(given)) return given
  return randomUUID()
}

export const REQUEST_ID_HEADER = 'x-request-id'
