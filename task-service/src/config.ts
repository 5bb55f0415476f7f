/**
 * The task-service's configuration: the shared fragments plus its own port and
 * whether it migrates its tables at start. Validated once by server.ts.
 */
import { Type, type Static } from 'typebox'
import { commonConfig, databaseConfig } from '@tollgate/common'

export const configSchema = Type.Object({
  ...commonConfig,
  ...databaseConfig,
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3002 }),
  /** Replicas starting together take turns on an advisory lock, so this is safe by default. */
  MIGRATE_ON_START: Type.Boolean({ default: true }),
})

export type Config = Static<typeof configSchema>

/** `npm run migrate` needs only the database: no secret required to run DDL. */
export const migrateConfigSchema = Type.Object({
  DATABASE_URL: databaseConfig.DATABASE_URL,
})
