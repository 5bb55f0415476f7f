/**
 * Access tokens: HS256 JWTs signed with BETTER_AUTH_SECRET (API.md), with the
 * claims the gateway checks. The same issuer verifies a token at signout.
 */
import { randomUUID } from 'node:crypto'
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose'
import { errors } from '@tollgate/common'

export interface TokenIssuerOptions {
  secret: string
  issuer: string
  audience: string
  ttlSeconds: number
}

export interface IssuedToken {
  token: string
  jti: string
  /** Seconds since the epoch. */
  exp: number
}

export interface VerifiedToken {
  sub: string
  jti: string
  exp: number
}

export interface TokenIssuer {
  issue(user: { id: string; email: string; name: string | null }): Promise<IssuedToken>
  /** Resolves with the claims, or throws a 401 HttpError. */
  verify(token: string): Promise<VerifiedToken>
}

const ALG = 'HS256'

export function createTokenIssuer(opts: TokenIssuerOptions): TokenIssuer {
  // Encoded once at startup, not per request.
  const key = new TextEncoder().encode(opts.secret)
  return {
    async issue(user) {
      const iat = Math.floor(Date.now() / 1000)
      const exp = iat + opts.ttlSeconds
      const jti = randomUUID()
      const token = await new SignJWT({ email: user.email, name: user.name })
        .setProtectedHeader({ alg: ALG, typ: 'JWT' })
        .setSubject(user.id)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .setJti(jti)
        .setIssuer(opts.issuer)
        .setAudience(opts.audience)
        .sign(key)
      return { token, jti, exp }
    },
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, key, {
          algorithms: [ALG], // pinned: the header's alg is never trusted
          issuer: opts.issuer,
          audience: opts.audience,
          requiredClaims: ['sub', 'jti', 'exp', 'iat'],
          clockTolerance: 30,
        })
        const { sub, jti, exp } = payload
        if (typeof sub !== 'string' || !sub || typeof jti !== 'string' || !jti || typeof exp !== 'number') {
          throw errors.invalidToken()
        }
        return { sub, jti, exp }
      } catch (err) {
        if (err instanceof joseErrors.JWTExpired) throw errors.tokenExpired()
        throw errors.invalidToken()
      }
    },
  }
}
