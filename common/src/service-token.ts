/**
 * Service tokens: how one service calls another through the gateway's
 * internal listener. Short-lived JWTs issued by the auth-service to a service
 * that proves its own credential; they name the service and what it may do.
 *
 * They are kept apart from user tokens in every way a verifier checks: their
 * own key (derived for this purpose only), their own `typ` and audience. A
 * user token is never accepted where a service token is expected, nor the
 * reverse.
 */
import { hkdfSync, randomUUID } from 'node:crypto'
import { SignJWT } from 'jose'

export const SERVICE_TOKEN_TYP = 'svc+jwt'
export const SERVICE_TOKEN_AUDIENCE = 'tollgate-internal'
export const SERVICE_NAME = /^[a-z0-9-]{1,64}$/

export function serviceTokenKey(betterAuthSecret: string, explicit?: string): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', explicit ?? betterAuthSecret, 'tollgate', 'service-token-v1', 32))
}

export interface ServiceTokenClaims {
  service: string
  scope: string[]
  issuer: string
  ttlSeconds: number
}

export async function signServiceToken(key: Uint8Array, claims: ServiceTokenClaims): Promise<{ token: string; expiresAt: Date }> {
  const now = Math.floor(Date.now() / 1000)
  const exp = now + claims.ttlSeconds
  const token = await new SignJWT({ svc: claims.service, scope: claims.scope })
    .setProtectedHeader({ alg: 'HS256', typ: SERVICE_TOKEN_TYP })
    .setSubject(`service:${claims.service}`)
    .setIssuer(claims.issuer)
    .setAudience(SERVICE_TOKEN_AUDIENCE)
    .setIssuedAt(now)
    .setExpirationTime(exp)
    .setJti(randomUUID())
    .sign(key)
  return { token, expiresAt: new Date(exp * 1000) }
}
