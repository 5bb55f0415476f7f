/**
 * The auth-service configuration: common fragments plus what signing in needs.
 * Read once by server.ts / migrate-cli.ts; tests build their own.
 */
import { Type, type Static } from '@tollgate/common/typebox'
import { commonConfig, databaseConfig } from '@tollgate/common'

export const configSchema = Type.Object({
  ...commonConfig,
  ...databaseConfig,
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3001 }),
  /** bcrypt work factor; stored hashes below it are upgraded at the next sign-in. */
  BCRYPT_COST: Type.Integer({ minimum: 10, maximum: 15, default: 12 }),
  /**
   * bcrypt hashes and comparisons running at once. They run on libuv's thread
   * pool (UV_THREADPOOL_SIZE, 4 by default), so more than its size only queues
   * there; keep it at or below the pool size.
   */
  BCRYPT_MAX_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 64, default: 4 }),
  /**
   * bcrypt operations that may wait for a slot. Beyond it sign-in and sign-up
   * answer 503 SERVICE_UNAVAILABLE with Retry-After at once, so a flood costs
   * bounded memory and bounded waiting (about queue / concurrency x one hash).
   */
  BCRYPT_MAX_QUEUE: Type.Integer({ minimum: 0, maximum: 1000, default: 16 }),
  /** Token lifetime in seconds (docs/API.md: 7 days by default); signout revokes earlier. */
  TOKEN_TTL_S: Type.Integer({ minimum: 60, maximum: 2_592_000, default: 604_800 }),
  JWT_ISSUER: Type.String({ minLength: 1, default: 'tollgate' }),
  JWT_AUDIENCE: Type.String({ minLength: 1, default: 'tollgate-api' }),
  MIGRATE_ON_START: Type.Boolean({ default: true }),
  /** The gateway's internal listener: how this service reaches others (the account purge). */
  GATEWAY_INTERNAL_URL: Type.String({ format: 'uri', default: 'http://127.0.0.1:8001' }),
  /** How often undelivered outbox messages are retried (each with its own backoff). */
  OUTBOX_POLL_MS: Type.Integer({ minimum: 100, maximum: 600_000, default: 1000 }),
  /** Key of service tokens; derived from BETTER_AUTH_SECRET when unset (the gateway must agree). */
  SERVICE_TOKEN_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  SERVICE_TOKEN_TTL_S: Type.Integer({ minimum: 30, maximum: 3600, default: 300 }),
  /** Credentials of services that may ask for a service token: {"name": {"secret": "...", "scope": [...]}}. */
  SERVICE_CREDENTIALS: Type.String({ default: '{}' }),
  /**
   * How user tokens are signed: HS256 with BETTER_AUTH_SECRET, or EdDSA
   * (Ed25519) with keys kept in the database and published at
   * /.well-known/jwks.json. The gateway must be set the same way.
   */
  JWT_ALG: Type.Union([Type.Literal('HS256'), Type.Literal('EdDSA')], { default: 'HS256' }),
  /** Key that encrypts the stored private signing keys; derived from BETTER_AUTH_SECRET when unset. Must not change while keys exist. */
  SIGNING_KEY_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  /**
   * A rotated-in key is published this long before it signs. It must cover
   * the replicas' reload (JWT_KEY_REFRESH_S, 30 s), the gateways' unknown-kid
   * cooldown (JWKS_COOLDOWN_MS, 30 s) and the JWKS max-age (60 s) any HTTP
   * cache between them may honour: 120 s. 0 only with one replica and no cache.
   */
  JWT_KEY_PUBLISH_AHEAD_S: Type.Integer({ minimum: 0, maximum: 86_400, default: 120 }),
  /** Automatic rotation when the newest key is this many days old (checked at each reload); 0 = off. */
  JWT_KEY_ROTATION_DAYS: Type.Integer({ minimum: 0, maximum: 3650, default: 0 }),
  /** How often each replica reloads the signing keys (rotations by others, retirements). */
  JWT_KEY_REFRESH_S: Type.Integer({ minimum: 1, maximum: 3600, default: 30 }),
})

export type Config = Static<typeof configSchema>
