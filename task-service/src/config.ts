/**
 * The task-service's configuration: the shared fragments plus its own port and
 * whether it migrates its tables at start. Validated once by server.ts.
 */
import { Type, type Static } from '@tollgate/common/typebox'
import { commonConfig, databaseConfig } from '@tollgate/common'

export const configSchema = Type.Object({
  ...commonConfig,
  ...databaseConfig,
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3002 }),
  /** Replicas starting together take turns on an advisory lock, so this is safe by default. */
  MIGRATE_ON_START: Type.Boolean({ default: true }),
  /** Live task updates: comment (SSE) or ping (WebSocket) this often on every open stream. */
  TASK_EVENTS_HEARTBEAT_MS: Type.Integer({ minimum: 10, maximum: 300_000, default: 15_000 }),
  /** Read new events this often while LISTEN/NOTIFY is off or not proven to work (every 10x this, as a backstop, when it is). */
  TASK_EVENTS_POLL_MS: Type.Integer({ minimum: 10, maximum: 60_000, default: 500 }),
  /** Events are kept (and Last-Event-ID can resume) this long; at least 5 minutes. */
  TASK_EVENTS_RETENTION_S: Type.Integer({ minimum: 300, maximum: 604_800, default: 600 }),
  /** false: never LISTEN, poll only (e.g. behind a pooler in transaction mode). */
  TASK_EVENTS_LISTEN: Type.Boolean({ default: true }),
})

export type Config = Static<typeof configSchema>

/** `npm run migrate` needs only the database: no secret required to run DDL. */
export const migrateConfigSchema = Type.Object({
  DATABASE_URL: databaseConfig.DATABASE_URL,
})
