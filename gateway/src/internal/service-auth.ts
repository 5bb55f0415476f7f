/**
 * Service tokens on the internal listener: verified with their own key,
 * `typ` and audience (a user token never passes), then checked against the
 * per-service allowlist of routes.
 */
import type { FastifyRequest } from 'fastify'
import { errors as joseErrors, jwtVerify } from 'jose'
import { ConfigError, errors, HttpError, SERVICE_NAME, SERVICE_TOKEN_AUDIENCE, SERVICE_TOKEN_TYP } from '@tollgate/common'
import { bearerToken } from '../auth/authenticate.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The calling service, set from a verified service token on the internal listener. */
    service: string | null
  }
}

/** Service tokens live minutes; one claiming longer is not ours. */
const MAX_SERVICE_TOKEN_LIFETIME_S = 3600

export async function verifyServiceToken(token: string, key: Uint8Array, issuer: string, clockToleranceS: number): Promise<string | HttpError> {
  try {
    const { payload } = await jwtVerify(token, key, {
      algorithms: ['HS256'],
      typ: SERVICE_TOKEN_TYP,
      audience: SERVICE_TOKEN_AUDIENCE,
      issuer,
      clockTolerance: clockToleranceS,
      requiredClaims: ['exp', 'iat', 'sub'],
    })
    const svc = payload.svc
    if (typeof svc !== 'string' || !SERVICE_NAME.test(svc) || payload.sub !== `service:${svc}`) return errors.invalidToken()
    if (payload.exp! - payload.iat! > MAX_SERVICE_TOKEN_LIFETIME_S) return errors.invalidToken()
    return svc
  } catch (err) {
    return err instanceof joseErrors.JWTExpired ? errors.tokenExpired() : errors.invalidToken()
  }
}

/** INTERNAL_ALLOWLIST: {"service": ["METHOD /route/:pattern", ...]} -> service -> allowed routes. */
export function parseAllowlist(json: string): Map<string, Set<string>> {
  let raw: unknown
  try {
    raw = JSON.parse(json)
  } catch {
    throw new ConfigError('INTERNAL_ALLOWLIST must be a JSON object')
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('INTERNAL_ALLOWLIST must be a JSON object')
  const out = new Map<string, Set<string>>()
  for (const [service, routes] of Object.entries(raw)) {
    if (!SERVICE_NAME.test(service)) throw new ConfigError(`INTERNAL_ALLOWLIST has an invalid service name: ${service.slice(0, 64)}`)
    if (!Array.isArray(routes) || !routes.every((r) => typeof r === 'string' && /^[A-Z]+ \//.test(r))) {
      throw new ConfigError(`INTERNAL_ALLOWLIST.${service} must list "METHOD /path" strings`)
    }
    out.set(service, new Set(routes as string[]))
  }
  return out
}

export function authenticateService(key: Uint8Array, issuer: string, clockToleranceS: number, allowlist: Map<string, Set<string>>, onFailure: (code: string) => void) {
  const refuse = (err: HttpError): never => {
    onFailure(err.errorCode)
    throw err
  }
  return async function serviceAuthHook(request: FastifyRequest): Promise<void> {
    const token = bearerToken(request.headers.authorization)
    if (token instanceof HttpError) refuse(token)
    const service = await verifyServiceToken(token as string, key, issuer, clockToleranceS)
    if (service instanceof HttpError) refuse(service)
    const route = `${request.method} ${request.routeOptions.url}`
    if (!allowlist.get(service as string)?.has(route)) refuse(errors.forbidden())
    request.service = service as string
  }
}
