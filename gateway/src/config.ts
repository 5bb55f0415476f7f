/** The gateway's configuration, validated once at start (see README for each variable). */
import { Type, type Static } from 'typebox'
import { commonConfig } from '@tollgate/common'

export const configSchema = Type.Object({
  ...commonConfig,
  // 'localhost' binds both 127.0.0.1 and ::1, so http://localhost:8000 works whichever a client picks.
  HOST: Type.String({ default: 'localhost' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 8000 }),
  AUTH_SERVICE_URL: Type.String({ format: 'uri', default: 'http://127.0.0.1:3001' }),
  TASK_SERVICE_URL: Type.String({ format: 'uri', default: 'http://127.0.0.1:3002' }),
  /** Comma-separated browser origins allowed to call the API. Empty: no cross-origin access. */
  CORS_ORIGINS: Type.String({ default: '' }),
  JWT_ISSUER: Type.String({ default: 'tollgate' }),
  JWT_AUDIENCE: Type.String({ default: 'tollgate-api' }),
  JWT_CLOCK_TOLERANCE_S: Type.Integer({ minimum: 0, maximum: 300, default: 30 }),
  /** Verified tokens kept in memory so a repeat request skips the signature check. */
  TOKEN_CACHE_SIZE: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 10_000 }),
  /** How often each replica polls the auth-service for signed-out tokens. */
  REVOCATION_POLL_MS: Type.Integer({ minimum: 50, maximum: 60_000, default: 250 }),
  /** Past this without a successful poll, protected routes answer 503 (unless REVOCATION_FAIL_OPEN). */
  REVOCATION_MAX_STALENESS_MS: Type.Integer({ minimum: 500, maximum: 3_600_000, default: 5000 }),
  /** true: keep accepting signature-valid tokens while the revocation list cannot be refreshed. */
  REVOCATION_FAIL_OPEN: Type.Boolean({ default: false }),
  UPSTREAM_CONNECT_TIMEOUT_MS: Type.Integer({ minimum: 50, maximum: 60_000, default: 1000 }),
  UPSTREAM_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 300_000, default: 10_000 }),
  UPSTREAM_CONNECTIONS: Type.Integer({ minimum: 1, maximum: 10_000, default: 128 }),
  BODY_LIMIT_BYTES: Type.Integer({ minimum: 1024, maximum: 100 * 1024 * 1024, default: 1024 * 1024 }),
})

export type Config = Static<typeof configSchema>

export function corsOrigins(config: Pick<Config, 'CORS_ORIGINS'>): string[] {
  return config.CORS_ORIGINS.split(',')
    .map((o) => o.trim())
    .filter(Boolean)
}
