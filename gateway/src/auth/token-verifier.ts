/**
 * Verifies bearer JWTs with jose. The key is imported once at start; the
 * algorithm is pinned; issuer, audience, exp and sub are required.
 *
 * Verified tokens are cached by their exact text (header, payload and
 * signature), so only a token that was already verified can hit the cache: a
 * forged or altered token is a different key. An entry dies with its token's
 * `exp`, and the cache is bounded.
 */
import { errors as joseErrors, jwtVerify } from 'jose'
import { errors, type HttpError } from '@tollgate/common'

export interface VerifiedToken {
  sub: string
  jti: string | undefined
  /** Expiry, epoch milliseconds, tolerance included. */
  expiresAt: number
}

export interface VerifierOptions {
  secret: string
  issuer: string
  audience: string
  clockToleranceS: number
  cacheSize: number
}

/** Compact JWS only: three base64url parts. JWE (5 parts) and JSON serialisation never reach jose. */
const COMPACT_JWS = /^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]+$/
const MAX_TOKEN_LENGTH = 8192
/** Subjects are opaque, but bounded and plain, because they travel in headers and paths. */
const SAFE_SUBJECT = /^[A-Za-z0-9._~:@-]{1,128}$/

export type TokenResult = VerifiedToken | HttpError

export interface TokenVerifier {
  verify(token: string): Promise<TokenResult>
  readonly cacheSizeNow: number
}

export async function createTokenVerifier(opts: VerifierOptions): Promise<TokenVerifier> {
  const key = await crypto.subtle.importKey(
    'raw',
    new TextEncoder().encode(opts.secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['verify'],
  )
  const verifyOptions = {
    algorithms: ['HS256'],
    issuer: opts.issuer,
    audience: opts.audience,
    clockTolerance: opts.clockToleranceS,
    requiredClaims: ['exp', 'sub'],
  }
  const toleranceMs = opts.clockToleranceS * 1000
  const cache = new Map<string, VerifiedToken>()

  function remember(token: string, v: VerifiedToken): void {
    if (opts.cacheSize === 0) return
    if (cache.size >= opts.cacheSize) {
      // Oldest first: Map keeps insertion order.
      const oldest = cache.keys().next().value
      if (oldest !== undefined) cache.delete(oldest)
    }
    cache.set(token, v)
  }

  async function verify(token: string): Promise<TokenResult> {
    const hit = cache.get(token)
    if (hit) {
      if (hit.expiresAt > Date.now()) return hit
      cache.delete(token)
      return errors.tokenExpired()
    }
    if (token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) return errors.invalidToken()
    try {
      const { payload } = await jwtVerify(token, key, verifyOptions)
      const sub = payload.sub
      if (typeof sub !== 'string' || !SAFE_SUBJECT.test(sub)) return errors.invalidToken()
      const v: VerifiedToken = {
        sub,
        jti: typeof payload.jti === 'string' ? payload.jti : undefined,
        expiresAt: payload.exp! * 1000 + toleranceMs,
      }
      remember(token, v)
      return v
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return errors.tokenExpired()
      return errors.invalidToken()
    }
  }

  return {
    verify,
    get cacheSizeNow() {
      return cache.size
    },
  }
}
