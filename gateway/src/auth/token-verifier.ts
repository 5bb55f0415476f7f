/**
 * Verifies bearer JWTs with jose against the key source of the token's
 * issuer: our auth-service (HS256 with BETTER_AUTH_SECRET, or EdDSA through
 * its JWKS) or a trusted external issuer (its JWKS). Each source pins its own
 * algorithms, issuer and audience; `exp` and `sub` are required. Keys are
 * imported once at start.
 *
 * Verified tokens are cached by their exact text (header, payload and
 * signature), so only a token that was already verified can hit the cache: a
 * forged or altered token is a different key. An entry dies with its token's
 * `exp`, and the cache is bounded.
 */
import { errors as joseErrors, jwtVerify, type JWSHeaderParameters } from 'jose'
import { errors, type HttpError } from '@tollgate/common'
import { KeySourceUnavailable } from './jwks-key-source.js'

type CryptoKey = import('node:crypto').webcrypto.CryptoKey

export interface VerifiedToken {
  sub: string
  jti: string | undefined
  /** Issued at, epoch seconds (0 when absent): per-user revocations cut by it. */
  iat: number
  /** Expiry, epoch milliseconds, tolerance included. */
  expiresAt: number
}

export interface KeySource {
  issuer: string
  audience: string
  algorithms: string[]
  key: CryptoKey | ((header: JWSHeaderParameters) => Promise<CryptoKey>)
}

export interface VerifierOptions {
  sources: KeySource[]
  clockToleranceS: number
  cacheSize: number
}

/** Compact JWS only: three base64url parts. JWE (5 parts) and JSON serialisation never reach jose. */
const COMPACT_JWS = /^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]+$/
const MAX_TOKEN_LENGTH = 8192
/** Subjects are opaque, but bounded and plain, because they travel in headers and paths. */
const SAFE_SUBJECT = /^[A-Za-z0-9._~:@-]{1,128}$/
/** Header parameters that point at keys: never followed, and a token carrying one is refused. */
const KEY_POINTERS = ['jku', 'jwk', 'x5u', 'x5c']

export type TokenResult = VerifiedToken | HttpError

export interface TokenVerifier {
  /** A token verified before and still in the cache: its result at once, without a promise. */
  cached(token: string): TokenResult | undefined
  verify(token: string): Promise<TokenResult>
  readonly cacheSizeNow: number
}

/** The HS256 key for BETTER_AUTH_SECRET, imported once. */
export function importHmacKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify'])
}

function decodePart(part: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
    return value && typeof value === 'object' && !Array.isArray(value) ? value : undefined
  } catch {
    return undefined
  }
}

export function createTokenVerifier(opts: VerifierOptions): TokenVerifier {
  const byIssuer = new Map(opts.sources.map((s) => [s.issuer, s]))
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

  function cached(token: string): TokenResult | undefined {
    const hit = cache.get(token)
    if (hit === undefined) return undefined
    if (hit.expiresAt > Date.now()) return hit
    cache.delete(token)
    return errors.tokenExpired()
  }

  async function verify(token: string): Promise<TokenResult> {
    const hit = cached(token)
    if (hit !== undefined) return hit
    if (token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) return errors.invalidToken()
    const [h, p] = token.split('.') as [string, string]
    const header = decodePart(h)
    if (!header || KEY_POINTERS.some((k) => k in header)) return errors.invalidToken()
    // The issuer picks the key source; the signature check below proves the claim.
    const iss = decodePart(p)?.iss
    const source = typeof iss === 'string' ? byIssuer.get(iss) : undefined
    if (!source) return errors.invalidToken()
    try {
      const { payload } = await jwtVerify(token, source.key as CryptoKey, {
        algorithms: source.algorithms,
        issuer: source.issuer,
        audience: source.audience,
        clockTolerance: opts.clockToleranceS,
        requiredClaims: ['exp', 'sub'],
      })
      const sub = payload.sub
      if (typeof sub !== 'string' || !SAFE_SUBJECT.test(sub)) return errors.invalidToken()
      const v: VerifiedToken = {
        sub,
        jti: typeof payload.jti === 'string' ? payload.jti : undefined,
        iat: typeof payload.iat === 'number' ? payload.iat : 0,
        expiresAt: payload.exp! * 1000 + toleranceMs,
      }
      remember(token, v)
      return v
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return errors.tokenExpired()
      if (err instanceof KeySourceUnavailable) return errors.unavailable('Token keys unavailable')
      return errors.invalidToken()
    }
  }

  return {
    cached,
    verify,
    get cacheSizeNow() {
      return cache.size
    },
  }
}
