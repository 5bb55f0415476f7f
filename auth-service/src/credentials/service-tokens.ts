/**
 * Service identities. Each service that calls others has its own credential
 * (SERVICE_CREDENTIALS); presenting it earns a short-lived service token that
 * names the service and its scope. The auth-service, being the issuer, mints
 * its own tokens directly, the same way.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { ConfigError, SERVICE_NAME, serviceTokenKey, signServiceToken } from '@tollgate/common'

export interface ServiceCredential {
  secretHash: Buffer
  scope: string[]
}

const sha256 = (s: string) => createHash('sha256').update(s).digest()

/** SERVICE_CREDENTIALS: {"service-name": {"secret": "...(32+ chars)", "scope": ["..."]}} */
export function parseServiceCredentials(json: string): Map<string, ServiceCredential> {
  let raw: unknown
  try {
    raw = JSON.parse(json)
  } catch {
    throw new ConfigError('SERVICE_CREDENTIALS must be a JSON object')
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('SERVICE_CREDENTIALS must be a JSON object')
  const out = new Map<string, ServiceCredential>()
  for (const [service, value] of Object.entries(raw)) {
    const v = value as { secret?: unknown; scope?: unknown }
    if (!SERVICE_NAME.test(service)) throw new ConfigError('SERVICE_CREDENTIALS has an invalid service name')
    if (typeof v?.secret !== 'string' || v.secret.length < 32) throw new ConfigError(`SERVICE_CREDENTIALS.${service}.secret must be at least 32 characters`)
    const scope = v.scope ?? []
    if (!Array.isArray(scope) || !scope.every((s) => typeof s === 'string')) throw new ConfigError(`SERVICE_CREDENTIALS.${service}.scope must be a list of strings`)
    out.set(service, { secretHash: sha256(v.secret), scope: scope as string[] })
  }
  return out
}

export interface ServiceTokenIssuerOptions {
  betterAuthSecret: string
  serviceTokenSecret?: string
  issuer: string
  ttlSeconds: number
  credentials: Map<string, ServiceCredential>
}

export function createServiceTokenIssuer(opts: ServiceTokenIssuerOptions) {
  const key = serviceTokenKey(opts.betterAuthSecret, opts.serviceTokenSecret)
  const mint = (service: string, scope: string[]) => signServiceToken(key, { service, scope, issuer: opts.issuer, ttlSeconds: opts.ttlSeconds })
  let own: { token: string; expiresAt: Date } | undefined

  return {
    /** A token for a service that proved its credential, or null (constant-time check). */
    async exchange(service: string, secret: string) {
      const credential = opts.credentials.get(service)
      const given = sha256(secret)
      const expected = credential?.secretHash ?? sha256('no such service: compare anyway')
      if (!timingSafeEqual(given, expected) || !credential) return null
      return mint(service, credential.scope)
    },
    /** This service's own token, reused until a minute before it expires. */
    async own(): Promise<string> {
      if (!own || own.expiresAt.getTime() - Date.now() < 60_000) own = await mint('auth-service', ['tasks:purge'])
      return own.token
    },
  }
}

export type ServiceTokenIssuer = ReturnType<typeof createServiceTokenIssuer>
