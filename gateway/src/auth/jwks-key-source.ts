/**
 * Public keys from a JWKS URL, for tokens signed with asymmetric keys (our
 * auth-service with JWT_ALG=EdDSA, or a trusted external issuer).
 *
 * - An unknown `kid` fetches the set again at once unless a fetch started
 *   less than the cooldown ago; then the token is not invalid, only not
 *   checkable yet: 503 with a Retry-After that says when the next fetch may
 *   start. A flood of random kids still causes at most one fetch per cooldown.
 * - A kid that a fetch looked for and did not find, or that a refresh
 *   removed, is refused (401) without another fetch until the cooldown ends.
 * - While the issuer is unreachable, fetches are retried on a short
 *   exponential backoff (1 s doubling to 5 s, never longer than the
 *   cooldown); keys already fetched keep working; a token whose key was
 *   never fetched gets 503 with a true Retry-After. The change to failing and
 *   back is logged once each way.
 * - Fetches time out, never follow redirects, and are bounded in size.
 * - Keys are refreshed in the background, so a removed key stops verifying;
 *   `current(kid)` lets the token cache drop tokens verified with it at once.
 */
import { importJWK, type JSONWebKeySet, type JWK, type JWSHeaderParameters } from 'jose'
import type { FastifyBaseLogger } from 'fastify'
import { Compile } from '@tollgate/common/typebox'
import { Jwks } from '@tollgate/common/contracts'

type CryptoKey = import('node:crypto').webcrypto.CryptoKey

/** Any issuer's set as RFC 7517 shapes it; every set our auth-service publishes is one (the contract's test says so). */
const validKeySet = Compile(Jwks.keySet)

/** The keys cannot be had now; `retryAfterMs` is when the next fetch may start. */
export class KeySourceUnavailable extends Error {
  constructor(
    url: string,
    readonly retryAfterMs: number,
    cause?: unknown,
  ) {
    super(`JWKS at ${url} unavailable`, { cause })
    this.name = 'KeySourceUnavailable'
  }
}

/** The issuer does not publish this kid (looked for, or removed): the token is invalid. */
export class UnknownKey extends Error {
  constructor() {
    super('no key with this kid in the JWKS')
    this.name = 'UnknownKey'
  }
}

export interface JwksOptions {
  url: string
  /** Keys whose `alg` is outside this list are ignored; verification pins it too. */
  algorithms: string[]
  timeoutMs: number
  cooldownMs: number
  refreshMs: number
  log: FastifyBaseLogger
  /** Epoch milliseconds; tests move it instead of sleeping. */
  now?: () => number
}

/** What the token verifier needs from a key source. */
export interface KeyResolver {
  getKey(header: JWSHeaderParameters): Promise<CryptoKey>
  /** The key now published for this kid (undefined: none), without a fetch. */
  current(kid: string | undefined): CryptoKey | undefined
}

export interface JwksKeySource extends KeyResolver {
  stop(): void
}

const MAX_JWKS_BYTES = 64 * 1024
/** Kids remembered as not published; beyond this the oldest are forgotten (they only cost a 503 then). */
const MAX_ABSENT_KIDS = 10_000
const BACKOFF_FIRST_MS = 1000
const BACKOFF_MAX_MS = 5000
/** The kid of a key published without one. */
const NO_KID = ''

interface PublishedKey {
  key: CryptoKey
  /** The JWK as published: an unchanged key keeps its CryptoKey (and the cached tokens verified with it). */
  fingerprint: string
}

/** The algorithm a published key is for: its own `alg`, or the only one it can be. */
function algorithmOf(jwk: JWK, allowed: string[]): string | undefined {
  if (jwk.alg !== undefined) return allowed.includes(jwk.alg) ? jwk.alg : undefined
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519' && allowed.includes('EdDSA')) return 'EdDSA'
  return allowed.length === 1 ? allowed[0] : undefined
}

export function createJwksKeySource(opts: JwksOptions): JwksKeySource {
  const now = opts.now ?? Date.now
  let keys = new Map<string, PublishedKey>()
  let loaded = false
  /** Start of the last fetch attempt, and whether the last attempt failed (and how many in a row). */
  let lastAttemptAt = -Infinity
  let failures = 0
  let pending: Promise<void> | undefined
  /** kid -> when a fetch found it missing (looked for, or removed). */
  const absent = new Map<string, number>()

  /** How long after the last attempt an on-demand fetch may start. */
  const minIntervalMs = () => (failures === 0 ? opts.cooldownMs : Math.min(BACKOFF_FIRST_MS * 2 ** (failures - 1), BACKOFF_MAX_MS, opts.cooldownMs))
  const nextFetchAt = () => lastAttemptAt + minIntervalMs()

  async function download(): Promise<JSONWebKeySet> {
    const res = await fetch(opts.url, {
      redirect: 'manual',
      signal: AbortSignal.timeout(opts.timeoutMs),
      headers: { accept: 'application/jwk-set+json, application/json' },
    })
    if (res.status !== 200) {
      await res.body?.cancel()
      throw new Error(`JWKS answered ${res.status}`)
    }
    const text = await res.text()
    if (text.length > MAX_JWKS_BYTES) throw new Error('JWKS too large')
    const jwks: unknown = JSON.parse(text)
    if (!validKeySet.Check(jwks)) throw new Error('not a JWK set')
    return jwks as JSONWebKeySet
  }

  async function publish(jwks: JSONWebKeySet, fetchedAt: number): Promise<void> {
    const next = new Map<string, PublishedKey>()
    for (const jwk of jwks.keys) {
      // Only signing keys for an allowed algorithm, never symmetric ones.
      if (!jwk || typeof jwk !== 'object' || jwk.kty === 'oct' || (jwk.use !== undefined && jwk.use !== 'sig')) continue
      const alg = algorithmOf(jwk, opts.algorithms)
      if (!alg) continue
      const kid = typeof jwk.kid === 'string' ? jwk.kid : NO_KID
      if (next.has(kid)) continue
      const fingerprint = JSON.stringify([alg, jwk.kty, jwk.crv, jwk.x, jwk.y, jwk.n, jwk.e])
      const known = keys.get(kid)
      if (known?.fingerprint === fingerprint) {
        next.set(kid, known)
        continue
      }
      try {
        next.set(kid, { key: (await importJWK({ ...jwk, ext: false }, alg)) as CryptoKey, fingerprint })
      } catch {
        // A key that does not import is not published for us.
      }
    }
    for (const kid of keys.keys()) if (!next.has(kid)) markAbsent(kid, fetchedAt)
    for (const kid of next.keys()) absent.delete(kid)
    keys = next
    loaded = true
  }

  function markAbsent(kid: string, at: number): void {
    absent.delete(kid)
    if (absent.size >= MAX_ABSENT_KIDS) absent.delete(absent.keys().next().value!)
    absent.set(kid, at)
  }

  function refresh(): Promise<void> {
    pending ??= (async () => {
      const startedAt = now()
      lastAttemptAt = startedAt
      try {
        await publish(await download(), startedAt)
      } catch (err) {
        if (failures === 0) opts.log.warn({ jwks: opts.url, err: { message: (err as Error).message } }, 'JWKS fetch failing; keeping the keys already fetched')
        failures++
        throw err
      }
      if (failures > 0) opts.log.info({ jwks: opts.url }, 'JWKS fetched again')
      failures = 0
    })().finally(() => {
      pending = undefined
    })
    return pending
  }

  const timer = setInterval(() => refresh().catch(() => {}), opts.refreshMs)
  timer.unref()

  const unavailable = (cause?: unknown) => new KeySourceUnavailable(opts.url, Math.max(0, nextFetchAt() - now()), cause)

  async function getKey(header: JWSHeaderParameters): Promise<CryptoKey> {
    const kid = typeof header.kid === 'string' ? header.kid : NO_KID
    const found = keys.get(kid)
    if (found) return found.key
    const arrivedAt = now()
    const missingSince = absent.get(kid)
    // Looked for (or removed) since the cooldown began: the issuer does not publish it.
    if (loaded && missingSince !== undefined && arrivedAt - missingSince < opts.cooldownMs) throw new UnknownKey()
    if (!pending) {
      if (arrivedAt < nextFetchAt()) throw unavailable()
      void refresh().catch(() => {})
    }
    const startedAt = lastAttemptAt
    try {
      await pending
    } catch (err) {
      throw unavailable(err)
    }
    const key = keys.get(kid)?.key
    if (key) return key
    // Only a fetch that started after this request arrived proves the kid is not published.
    if (arrivedAt > startedAt) throw unavailable()
    markAbsent(kid, startedAt)
    throw new UnknownKey()
  }

  return {
    getKey,
    current: (kid) => keys.get(kid ?? NO_KID)?.key,
    stop: () => clearInterval(timer),
  }
}
