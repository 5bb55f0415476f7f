/**
 * Verifies bearer JWTs with jose against the key source of the token's
 * issuer: our auth-service (HS256 with BETTER_AUTH_SECRET, or EdDSA through
 * its JWKS) or a trusted external issuer (its JWKS). Each source pins its own
 * algorithms, issuer and audience; `exp` and `sub` are required, and each
 * source may require more: our auth-service's tokens need `iat` and `jti`,
 * a lifetime (exp - iat) within TOKEN_TTL_S and `typ: at+jwt` (RFC 9068: a
 * service token or any other kind is never taken for an access token). A token claiming to be
 * issued in the future (beyond the clock tolerance) is refused from any
 * issuer: it would escape an "issued before" revocation. Keys are imported
 * once at start (or when their JWKS publishes them).
 *
 * Verified tokens are cached by their exact text (header, payload and
 * signature), so only a token that was already verified can hit the cache: a
 * forged or altered token is a different key. An entry dies with its token's
 * `exp`, and with its key: a hit whose key is no longer published is
 * verified again (and refused). The cache is bounded.
 */
import { errors as joseErrors, jwtVerify, type JWSHeaderParameters } from 'jose'
import { errors, type HttpError } from '@tollgate/common'
import { KeySourceUnavailable, type KeyResolver } from './jwks-key-source.js'

type CryptoKey = import('node:crypto').webcrypto.CryptoKey

export interface VerifiedToken {
  /** The issuer (`iss`) whose key source verified the token. */
  iss: string
  sub: string
  jti: string | undefined
  /** Issued at, epoch seconds (0 when absent): per-subject revocations cut by it. */
  iat: number
  /** Expiry, epoch milliseconds, tolerance included. */
  expiresAt: number
}

/** Claims a source may require beyond `exp` and `sub`. */
export type ExtraClaim = 'iat' | 'jti'

export interface KeySource {
  issuer: string
  audience: string
  algorithms: string[]
  key: CryptoKey | KeyResolver
  requiredClaims?: ExtraClaim[]
  /** Longest accepted exp - iat, seconds (implies `iat`). */
  maxLifetimeS?: number
  /** The `typ` header its tokens must carry (ours: at+jwt); unset: not checked. */
  typ?: string
}

export interface VerifierOptions {
  sources: KeySource[]
  clockToleranceS: number
  cacheSize: number
  /** Epoch milliseconds; tests move it instead of sleeping. */
  now?: () => number
}

/** Compact JWS only: three base64url parts. JWE (5 parts) and JSON serialisation never reach jose. */
const COMPACT_JWS = /^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]+$/
const MAX_TOKEN_LENGTH = 8192
/** Subjects are opaque, but bounded and plain, because they travel in headers and paths. */
const SAFE_SUBJECT = /^[A-Za-z0-9._~:@-]{1,128}$/
/** Header parameters that point at keys: never followed, and a token carrying one is refused. */
const KEY_POINTERS = ['jku', 'jwk', 'x5u', 'x5c']

/**
 * Why a token was refused, as data: the authenticate step raises the error
 * class instance for it (refusalError) where it hands it to done(err).
 */
export type Refusal =
  | { readonly refused: 'invalid_token' }
  | { readonly refused: 'token_expired' }
  /** Its issuer's keys cannot be fetched now: come back after retryAfterS. */
  | { readonly refused: 'keys_unavailable'; readonly retryAfterS: number }
export type TokenResult = VerifiedToken | Refusal

/** The refusals without data: one frozen object each, never allocated per request. */
const INVALID: Refusal = Object.freeze({ refused: 'invalid_token' })
const EXPIRED: Refusal = Object.freeze({ refused: 'token_expired' })

export function isRefusal(result: TokenResult): result is Refusal {
  return 'refused' in result
}

/** The error class instance a refusal is answered with (401 INVALID_TOKEN, 401 TOKEN_EXPIRED, 503 with Retry-After). */
export function refusalError(refusal: Refusal): HttpError {
  switch (refusal.refused) {
    case 'token_expired':
      return errors.tokenExpired()
    case 'keys_unavailable':
      return errors.unavailable('Token keys unavailable', refusal.retryAfterS)
    default:
      return errors.invalidToken()
  }
}

export interface TokenVerifier {
  /** A token verified before and still in the cache: its result at once, without a promise. */
  cached(token: string): TokenResult | undefined
  verify(token: string): Promise<TokenResult>
}

interface CacheEntry {
  token: VerifiedToken
  /** For keys from a JWKS: the resolver, kid and key it was verified with (a changed key drops the entry). */
  resolver?: KeyResolver
  kid?: string
  key?: CryptoKey
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

const isResolver = (key: KeySource['key']): key is KeyResolver => typeof (key as KeyResolver).getKey === 'function'

export function createTokenVerifier(opts: VerifierOptions): TokenVerifier {
  const now = opts.now ?? Date.now
  const byIssuer = new Map(opts.sources.map((s) => [s.issuer, s]))
  const toleranceMs = opts.clockToleranceS * 1000
  const cache = new Map<string, CacheEntry>()

  function remember(token: string, entry: CacheEntry): void {
    if (opts.cacheSize === 0) return
    if (cache.size >= opts.cacheSize) {
      // Oldest first: Map keeps insertion order.
      const oldest = cache.keys().next().value
      if (oldest !== undefined) cache.delete(oldest)
    }
    cache.set(token, entry)
  }

  function cached(token: string): TokenResult | undefined {
    const hit = cache.get(token)
    if (hit === undefined) return undefined
    if (hit.resolver && hit.resolver.current(hit.kid) !== hit.key) {
      // Its key left the JWKS (or changed): verify again, which refuses it.
      cache.delete(token)
      return undefined
    }
    if (hit.token.expiresAt > now()) return hit.token
    cache.delete(token)
    return EXPIRED
  }

  /** The shape rules beyond jose's: iat not in the future, a required jti, a bounded lifetime. */
  function wellFormed(source: KeySource, payload: Record<string, unknown>): boolean {
    const { iat, exp, jti } = payload as { iat?: number; exp: number; jti?: unknown }
    if (iat !== undefined && iat * 1000 > now() + toleranceMs) return false
    if (source.requiredClaims?.includes('jti') && (typeof jti !== 'string' || jti.length === 0)) return false
    if (source.maxLifetimeS !== undefined && (iat === undefined || exp - iat > source.maxLifetimeS)) return false
    return true
  }

  async function verify(token: string): Promise<TokenResult> {
    const hit = cached(token)
    if (hit !== undefined) return hit
    if (token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) return INVALID
    const [h, p] = token.split('.') as [string, string]
    const header = decodePart(h)
    if (!header || KEY_POINTERS.some((k) => k in header)) return INVALID
    // The issuer picks the key source; the signature check below proves the claim.
    const iss = decodePart(p)?.iss
    const source = typeof iss === 'string' ? byIssuer.get(iss) : undefined
    if (!source) return INVALID
    const entry: Omit<CacheEntry, 'token'> = {}
    const resolver = isResolver(source.key) ? source.key : undefined
    const key = resolver
      ? async (jwsHeader: JWSHeaderParameters) => {
          const k = await resolver.getKey(jwsHeader)
          Object.assign(entry, { resolver, kid: jwsHeader.kid, key: k })
          return k
        }
      : (source.key as CryptoKey)
    const required = new Set<string>(['exp', 'sub', ...(source.requiredClaims ?? [])])
    if (source.maxLifetimeS !== undefined) required.add('iat')
    try {
      const { payload } = await jwtVerify(token, key as CryptoKey, {
        algorithms: source.algorithms,
        issuer: source.issuer,
        audience: source.audience,
        clockTolerance: opts.clockToleranceS,
        currentDate: new Date(now()),
        requiredClaims: [...required],
        ...(source.typ !== undefined ? { typ: source.typ } : {}),
      })
      const sub = payload.sub
      if (typeof sub !== 'string' || !SAFE_SUBJECT.test(sub)) return INVALID
      if (!wellFormed(source, payload)) return INVALID
      const v: VerifiedToken = {
        iss: source.issuer,
        sub,
        jti: typeof payload.jti === 'string' ? payload.jti : undefined,
        iat: typeof payload.iat === 'number' ? payload.iat : 0,
        expiresAt: payload.exp! * 1000 + toleranceMs,
      }
      remember(token, { token: v, ...entry })
      return v
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return EXPIRED
      if (err instanceof KeySourceUnavailable) return { refused: 'keys_unavailable', retryAfterS: Math.max(1, Math.ceil(err.retryAfterMs / 1000)) }
      return INVALID
    }
  }

  return { cached, verify }
}
