/**
 * Public keys from a JWKS URL, for tokens signed with asymmetric keys (our
 * auth-service with JWT_ALG=EdDSA, or a trusted external issuer).
 *
 * - An unknown `kid` triggers at most one fetch per cooldown, whatever the
 *   outcome of the previous fetch: a flood of random kids cannot become a
 *   flood of fetches.
 * - Fetches time out, never follow redirects, and are bounded in size.
 * - An outage keeps the keys already fetched working; only with no key at
 *   all is the answer "unavailable" (503), never a 500.
 * - Keys are refreshed in the background, so a removed key stops verifying.
 */
import { createLocalJWKSet, errors as joseErrors, type JSONWebKeySet, type JWSHeaderParameters } from 'jose'
import type { FastifyBaseLogger } from 'fastify'

type CryptoKey = import('node:crypto').webcrypto.CryptoKey

export class KeySourceUnavailable extends Error {
  constructor(url: string, cause?: unknown) {
    super(`JWKS at ${url} unavailable`, { cause })
    this.name = 'KeySourceUnavailable'
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
}

const MAX_JWKS_BYTES = 64 * 1024

export interface JwksKeySource {
  getKey: (header: JWSHeaderParameters) => Promise<CryptoKey>
  stop(): void
  readonly keyCount: number
}

export function createJwksKeySource(opts: JwksOptions): JwksKeySource {
  let local: ReturnType<typeof createLocalJWKSet> | undefined
  let keyCount = 0
  let lastAttemptAt = 0
  let pending: Promise<void> | undefined

  async function fetchKeys(): Promise<void> {
    lastAttemptAt = Date.now()
    const res = await fetch(opts.url, {
      redirect: 'manual',
      signal: AbortSignal.timeout(opts.timeoutMs),
      headers: { accept: 'application/jwk-set+json, application/json' },
    })
    if (res.status !== 200) throw new Error(`JWKS answered ${res.status}`)
    const text = await res.text()
    if (text.length > MAX_JWKS_BYTES) throw new Error('JWKS too large')
    const jwks = JSON.parse(text) as JSONWebKeySet
    if (!jwks || !Array.isArray(jwks.keys)) throw new Error('not a JWK set')
    // Only keys meant for an allowed algorithm, never symmetric ones.
    const keys = jwks.keys.filter((k) => k.kty !== 'oct' && (k.alg === undefined || opts.algorithms.includes(k.alg)))
    local = createLocalJWKSet({ keys })
    keyCount = keys.length
  }

  function refresh(): Promise<void> {
    pending ??= fetchKeys().finally(() => {
      pending = undefined
    })
    return pending
  }

  const timer = setInterval(() => {
    refresh().catch((err) => opts.log.warn({ jwks: opts.url, err: { message: (err as Error).message } }, 'JWKS refresh failed; keeping cached keys'))
  }, opts.refreshMs)
  timer.unref()

  async function getKey(header: JWSHeaderParameters): Promise<CryptoKey> {
    const coolingDown = Date.now() - lastAttemptAt < opts.cooldownMs
    if (!local) {
      if (coolingDown && !pending) throw new KeySourceUnavailable(opts.url)
      try {
        await refresh()
      } catch (err) {
        throw new KeySourceUnavailable(opts.url, err)
      }
    }
    try {
      return (await local!(header, { payload: '', signature: '' } as never)) as CryptoKey
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey) || coolingDown) throw err
      // Perhaps a key rotated in since the last fetch: look once, then not again for a while.
      await refresh().catch(() => {})
      return (await local!(header, { payload: '', signature: '' } as never)) as CryptoKey
    }
  }

  return {
    getKey,
    stop: () => clearInterval(timer),
    get keyCount() {
      return keyCount
    },
  }
}
