/** The gateway's configuration, validated once at start (see README for each variable). */
import { Type, type Static } from '@tollgate/common/typebox'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { commonConfig, ConfigError } from '@tollgate/common'
import { DEFAULT_ALLOWLIST } from './internal/routes.js'

/** RATE_LIMIT_<NAME>_MAX requests per RATE_LIMIT_<NAME>_WINDOW_S seconds. */
function limit<N extends string>(name: N, max: number, windowS: number) {
  return {
    [`RATE_LIMIT_${name}_MAX`]: Type.Integer({ minimum: 1, default: max }),
    [`RATE_LIMIT_${name}_WINDOW_S`]: Type.Integer({ minimum: 1, maximum: 86_400, default: windowS }),
  } as Record<`RATE_LIMIT_${N}_MAX` | `RATE_LIMIT_${N}_WINDOW_S`, ReturnType<typeof Type.Integer>>
}

/** Comma-separated http(s) base URLs. */
const SERVICE_URLS = '^https?://[^\\s,]+(\\s*,\\s*https?://[^\\s,]+)*$'

/** The bundled declarative file: today's auth and task routes (GATEWAY_CONFIG's default). */
export const bundledGatewayFile = fileURLToPath(new URL('../tollgate.yaml', import.meta.url))

export const configSchema = Type.Object({
  ...commonConfig,
  /** The declarative file of routes, upstreams, issuers and policies (YAML or JSON); unset: the bundled tollgate.yaml. */
  GATEWAY_CONFIG: Type.Optional(Type.String({ minLength: 1 })),
  /** Reload the file when it changes on disk (besides SIGHUP). */
  GATEWAY_CONFIG_WATCH: Type.Boolean({ default: false }),
  // 'localhost' binds both 127.0.0.1 and ::1, so http://localhost:8000 works whichever a client picks.
  HOST: Type.String({ default: 'localhost' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 8000 }),
  /** One base URL, or several separated by commas (targets of one service, same scheme). */
  AUTH_SERVICE_URL: Type.String({ pattern: SERVICE_URLS, default: 'http://127.0.0.1:3001' }),
  TASK_SERVICE_URL: Type.String({ pattern: SERVICE_URLS, default: 'http://127.0.0.1:3002' }),
  /** Comma-separated browser origins allowed to call the API. Empty: no cross-origin access. */
  CORS_ORIGINS: Type.String({ default: '' }),
  /** How our auth-service signs: HS256 with BETTER_AUTH_SECRET, or EdDSA with keys published as a JWKS. */
  JWT_ALG: Type.Union([Type.Literal('HS256'), Type.Literal('EdDSA')], { default: 'HS256' }),
  /** With JWT_ALG=EdDSA: where the auth-service publishes its keys. Default: AUTH_SERVICE_URL + /.well-known/jwks.json */
  AUTH_JWKS_URL: Type.Optional(Type.String({ format: 'uri' })),
  /**
   * External issuers whose tokens are accepted too (e.g. a Better Auth app), as JSON:
   * [{"issuer":"https://app.example.com","audience":"https://app.example.com",
   *   "jwks_url":"https://app.example.com/api/auth/jwks","algorithms":["EdDSA"],
   *   "required_claims":["iat"],"max_lifetime_s":900}]   (the last two optional)
   */
  JWT_TRUSTED_ISSUERS: Type.String({ default: '[]' }),
  JWKS_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 30_000, default: 2000 }),
  /**
   * An unknown kid triggers at most one JWKS fetch per this long; in between,
   * a kid not looked for yet gets 503 with Retry-After (a key rotated in
   * moments ago is not an invalid token).
   */
  JWKS_COOLDOWN_MS: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 5000 }),
  /** Background refresh of every JWKS (removed keys stop verifying). */
  JWKS_REFRESH_MS: Type.Integer({ minimum: 1000, maximum: 86_400_000, default: 600_000 }),
  JWT_ISSUER: Type.String({ default: 'tollgate' }),
  JWT_AUDIENCE: Type.String({ default: 'tollgate-api' }),
  JWT_CLOCK_TOLERANCE_S: Type.Integer({ minimum: 0, maximum: 300, default: 30 }),
  /** The auth-service's token lifetime (same variable, same value): its tokens may not claim a longer one. */
  TOKEN_TTL_S: Type.Integer({ minimum: 60, maximum: 2_592_000, default: 604_800 }),
  /** Verified tokens kept in memory so a repeat request skips the signature check. */
  TOKEN_CACHE_SIZE: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 10_000 }),
  /** Shared rate-limit counters for all replicas; unset: counted in each process's memory. */
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  /** true: REDIS_URL names seed nodes of a Redis Cluster (comma-separated); keys are hash-tagged per counter. */
  REDIS_CLUSTER: Type.Boolean({ default: false }),
  /**
   * Which proxies in front may set X-Forwarded-For: empty (none: the socket
   * address is the client), a hop count, or comma-separated addresses/CIDRs.
   */
  TRUST_PROXY: Type.String({ default: '' }),
  /**
   * Policies counted locally and added to Redis in batches (comma-separated names); the others
   * count atomically in Redis; `none`: every policy exact. The sign-in failure budgets are always exact.
   */
  RATE_LIMIT_BATCHED: Type.String({ default: 'ip,user' }),
  /** Batched policies send their increments to Redis at most this often (one pipelined call per interval). */
  RATE_LIMIT_SYNC_MS: Type.Integer({ minimum: 10, maximum: 60_000, default: 100 }),
  ...limit('IP', 12_000, 60),
  ...limit('USER', 6_000, 60),
  /** Sign-in attempts per address, failed or not. */
  ...limit('SIGNIN_IP', 100, 60),
  /** Failed sign-ins per (email, address): the hard limit on guessing one password from one place. */
  ...limit('SIGNIN_EMAIL_IP_FAILURES', 10, 900),
  /** Failed sign-ins per address, any email: credential stuffing from one place. */
  ...limit('SIGNIN_IP_FAILURES', 30, 900),
  /** Failed sign-ins per email, any address: a much higher ceiling, a shorter window (a distributed attack). */
  ...limit('SIGNIN_EMAIL_FAILURES', 100, 300),
  ...limit('SIGNUP_IP', 300, 3600),
  /** The internal listener for service-to-service calls: never publish it. */
  INTERNAL_HOST: Type.String({ default: '127.0.0.1' }),
  INTERNAL_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 8001 }),
  /** The admin listener (GET /ready with detail, GET /metrics): never publish it; scrape it from inside. */
  ADMIN_HOST: Type.String({ default: '127.0.0.1' }),
  ADMIN_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 9000 }),
  /** GET /docs on the public listener; unset: on, except with NODE_ENV=production. */
  DOCS_ENABLED: Type.Optional(Type.Boolean()),
  /** Which service may call which internal route: {"service": ["METHOD /path/:param"]}. Deny by default. */
  INTERNAL_ALLOWLIST: Type.String({ default: DEFAULT_ALLOWLIST }),
  /** Key of service tokens; derived from BETTER_AUTH_SECRET (separately from user tokens) when unset. */
  SERVICE_TOKEN_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  ...limit('SERVICE', 600, 60),
  /** How often each replica polls the auth-service for signed-out tokens. */
  REVOCATION_POLL_MS: Type.Integer({ minimum: 50, maximum: 60_000, default: 250 }),
  /** Past this without a successful poll, protected routes answer 503 (unless REVOCATION_FAIL_OPEN). */
  REVOCATION_MAX_STALENESS_MS: Type.Integer({ minimum: 500, maximum: 3_600_000, default: 5000 }),
  /** true: keep accepting signature-valid tokens while the revocation list cannot be refreshed. */
  REVOCATION_FAIL_OPEN: Type.Boolean({ default: false }),
  UPSTREAM_CONNECT_TIMEOUT_MS: Type.Integer({ minimum: 50, maximum: 60_000, default: 1000 }),
  UPSTREAM_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 300_000, default: 10_000 }),
  UPSTREAM_CONNECTIONS: Type.Integer({ minimum: 1, maximum: 10_000, default: 128 }),
  /** Services with several targets: round-robin, or the target with the fewest requests in flight. */
  UPSTREAM_BALANCING: Type.Union([Type.Literal('round-robin'), Type.Literal('least-busy')], { default: 'round-robin' }),
  /** Active health checks (GET /health) of services with several targets or a DNS name; 0 turns them off. */
  UPSTREAM_HEALTH_CHECK_INTERVAL_MS: Type.Integer({ minimum: 0, maximum: 300_000, default: 5000 }),
  /** Re-resolve service host names this often (one pool per address); 0 turns it off. */
  UPSTREAM_DNS_REFRESH_MS: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 5000 }),
  /** Serve HTTPS: PEM certificate (chain) and private key files; both or neither. */
  TLS_CERT_FILE: Type.Optional(Type.String({ minLength: 1 })),
  TLS_KEY_FILE: Type.Optional(Type.String({ minLength: 1 })),
  /** Extra CA (PEM) trusted for https upstream URLs; certificates are always verified. */
  UPSTREAM_CA_FILE: Type.Optional(Type.String({ minLength: 1 })),
  /** Slow clients: time to send the headers, and the whole request. */
  HEADERS_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 300_000, default: 10_000 }),
  REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600_000, default: 30_000 }),
  /** Live streams (SSE and WebSocket) one user may hold open at once, per gateway process; the next open gets 429. */
  STREAMS_PER_USER: Type.Integer({ minimum: 1, maximum: 10_000, default: 10 }),
  BODY_LIMIT_BYTES: Type.Integer({ minimum: 1024, maximum: 100 * 1024 * 1024, default: 1024 * 1024 }),
})

export type Config = Static<typeof configSchema>

/** Fastify's trustProxy from TRUST_PROXY: never blanket trust, which would let clients pick their address. */
export function trustProxy(config: Pick<Config, 'TRUST_PROXY'>): false | number | string {
  const v = config.TRUST_PROXY.trim()
  if (!v || v === 'false') return false
  if (/^\d+$/.test(v)) return Number(v)
  return v
}

export interface TrustedIssuer {
  issuer: string
  audience: string
  jwksUrl: string
  algorithms: string[]
  /** Claims required beyond exp and sub (`required_claims`). */
  requiredClaims?: Array<'iat' | 'jti'>
  /** Longest accepted exp - iat in seconds (`max_lifetime_s`; implies iat). */
  maxLifetimeS?: number
}

const EXTRA_CLAIMS = new Set(['iat', 'jti'])

const ASYMMETRIC = new Set(['EdDSA', 'ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'])

/** JWT_TRUSTED_ISSUERS parsed and checked; a mistake is a ConfigError naming the variable. */
export function trustedIssuers(config: Pick<Config, 'JWT_TRUSTED_ISSUERS' | 'JWT_ISSUER'>): TrustedIssuer[] {
  const fail = (why: string): never => {
    throw new ConfigError(`JWT_TRUSTED_ISSUERS ${why}`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(config.JWT_TRUSTED_ISSUERS)
  } catch {
    fail('must be a JSON array')
  }
  if (!Array.isArray(raw)) fail('must be a JSON array')
  return (raw as unknown[]).map((entry, i) => {
    const e = entry as Record<string, unknown>
    const str = (k: string) => (typeof e?.[k] === 'string' && (e[k] as string).length > 0 ? (e[k] as string) : fail(`[${i}].${k} must be a non-empty string`))
    const issuer = str('issuer')
    if (issuer === config.JWT_ISSUER) fail(`[${i}].issuer must differ from JWT_ISSUER`)
    const jwksUrl = str('jwks_url')
    if (!/^https?:\/\//.test(jwksUrl)) fail(`[${i}].jwks_url must be an http(s) URL`)
    const algorithms = e.algorithms
    // One kind of key per source, never a shared secret: asymmetric algorithms only (RFC 8725 3.1).
    if (!Array.isArray(algorithms) || algorithms.length === 0 || !algorithms.every((a) => typeof a === 'string' && ASYMMETRIC.has(a))) {
      fail(`[${i}].algorithms must list asymmetric JWS algorithms, e.g. ["EdDSA"]`)
    }
    const out: TrustedIssuer = { issuer, audience: str('audience'), jwksUrl, algorithms: algorithms as string[] }
    if (e.required_claims !== undefined) {
      const claims = e.required_claims
      if (!Array.isArray(claims) || !claims.every((c) => typeof c === 'string' && EXTRA_CLAIMS.has(c))) {
        fail(`[${i}].required_claims must list claims among "iat", "jti"`)
      }
      out.requiredClaims = claims as Array<'iat' | 'jti'>
    }
    if (e.max_lifetime_s !== undefined) {
      const max = e.max_lifetime_s
      if (typeof max !== 'number' || !Number.isInteger(max) || max < 1) fail(`[${i}].max_lifetime_s must be a positive integer (seconds)`)
      out.maxLifetimeS = max as number
    }
    return out
  })
}

/** The HTTPS options for the public listener, or undefined for plain HTTP; a bad file is a ConfigError. */
export function tlsOptions(config: Pick<Config, 'TLS_CERT_FILE' | 'TLS_KEY_FILE'>): { cert: Buffer; key: Buffer } | undefined {
  if (!config.TLS_CERT_FILE && !config.TLS_KEY_FILE) return undefined
  if (!config.TLS_CERT_FILE || !config.TLS_KEY_FILE) throw new ConfigError('TLS_CERT_FILE and TLS_KEY_FILE go together')
  return { cert: readPem('TLS_CERT_FILE', config.TLS_CERT_FILE), key: readPem('TLS_KEY_FILE', config.TLS_KEY_FILE) }
}

export function readPem(name: string, file: string): Buffer {
  try {
    return readFileSync(file)
  } catch {
    throw new ConfigError(`${name} cannot be read: ${file}`)
  }
}
