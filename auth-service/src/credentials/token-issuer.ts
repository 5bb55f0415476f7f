/**
 * Access tokens: JWTs with the claims the gateway checks (docs/API.md). Signed
 * HS256 with BETTER_AUTH_SECRET (the default), or, with JWT_ALG=EdDSA, with
 * the current Ed25519 key of the signing-key store (header `kid`), whose
 * public keys the gateways read from /.well-known/jwks.json. The same issuer
 * verifies a token at signout, pinned to the one algorithm in use: with EdDSA
 * an HS256 token is refused, and the reverse.
 */
import { randomUUID } from 'node:crypto'
import { SignJWT, jwtVerify, errors as joseErrors, type JWSHeaderParameters } from 'jose'
import { ACCESS_TOKEN_TYP, errors, HttpError } from '@tollgate/common'
import type { SigningKeyStore } from './signing-keys.js'

export type TokenAlg = 'HS256' | 'EdDSA'

export interface TokenIssuerOptions {
  secret: string
  issuer: string
  audience: string
  ttlSeconds: number
  /** Default HS256. EdDSA needs `keys`. */
  alg?: TokenAlg
  keys?: SigningKeyStore
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
  /** Resolves with the claims, or throws a 401 HttpError (503 when the keys cannot be read). */
  verify(token: string): Promise<VerifiedToken>
}

interface Signer {
  alg: TokenAlg
  /** The key to sign with now, and the header's kid if any. */
  signingKey(): Promise<{ key: Uint8Array | CryptoKey; kid?: string }>
  verificationKey: Uint8Array | ((header: JWSHeaderParameters) => Promise<CryptoKey>)
}

type CryptoKey = import('node:crypto').webcrypto.CryptoKey

function signer(opts: TokenIssuerOptions): Signer {
  if ((opts.alg ?? 'HS256') === 'HS256') {
    // Encoded once at startup, not per request.
    const key = new TextEncoder().encode(opts.secret)
    return { alg: 'HS256', signingKey: async () => ({ key }), verificationKey: key }
  }
  const keys = opts.keys
  if (!keys) throw new Error('JWT_ALG=EdDSA needs a signing-key store')
  return {
    alg: 'EdDSA',
    signingKey: () => keys.signingKey(),
    // Only a kid among the published keys selects a key; nothing else in the header is followed.
    verificationKey: (header) => keys.verificationKey(header.kid),
  }
}

export function createTokenIssuer(opts: TokenIssuerOptions): TokenIssuer {
  const s = signer(opts)
  return {
    async issue(user) {
      const { key, kid } = await s.signingKey()
      const iat = Math.floor(Date.now() / 1000)
      const exp = iat + opts.ttlSeconds
      const jti = randomUUID()
      const token = await new SignJWT({ email: user.email, name: user.name })
        .setProtectedHeader(kid ? { alg: s.alg, typ: ACCESS_TOKEN_TYP, kid } : { alg: s.alg, typ: ACCESS_TOKEN_TYP })
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
        const { payload } = await jwtVerify(token, s.verificationKey as Uint8Array, {
          algorithms: [s.alg], // pinned: the header's alg is never trusted
          typ: ACCESS_TOKEN_TYP, // an access token, not another kind of ours (RFC 9068)
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
        if (err instanceof HttpError && err.statusCode === 503) throw err
        throw errors.invalidToken()
      }
    },
  }
}
