/**
 * The auth-service configuration: common fragments plus what signing in needs.
 * Read once by server.ts / migrate-cli.ts; tests build their own.
 */
import { Type, type Static } from 'typebox'
import { commonConfig, databaseConfig } from '@tollgate/common'

export const configSchema = Type.Object({
  ...commonConfig,
  ...databaseConfig,
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3001 }),
  /** bcrypt work factor; stored hashes below it are upgraded at the next sign-in. */
  BCRYPT_COST: Type.Integer({ minimum: 10, maximum: 15, default: 12 }),
  /** Token lifetime in seconds (API.md: 7 days by default); signout revokes earlier. */
  TOKEN_TTL_S: Type.Integer({ minimum: 60, maximum: 2_592_000, default: 604_800 }),
  JWT_ISSUER: Type.String({ minLength: 1, default: 'tollgate' }),
  JWT_AUDIENCE: Type.String({ minLength: 1, default: 'tollgate-api' }),
  MIGRATE_ON_START: Type.Boolean({ default: true }),
})

export type Config = Static<typeof configSchema>
