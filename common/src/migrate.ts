/**
 * Forward-only SQL migrations with node-pg-migrate. Each service owns its
 * tables and its own migrations table; an advisory lock per service makes two
 * replicas starting at once take turns instead of racing.
 */
import pg from 'pg'
import { runner } from 'node-pg-migrate'

export interface MigrateOptions {
  databaseUrl: string
  /** Folder of NNN_name.sql files with a `-- Up Migration` section. */
  dir: string
  /** e.g. auth_migrations: one table per service so histories never mix. */
  table: string
  /** Advisory lock id, one per service. */
  lockValue: number
  log?: (msg: string) => void
}

export async function migrate(opts: MigrateOptions): Promise<string[]> {
  const client = new pg.Client({ connectionString: opts.databaseUrl, connectionTimeoutMillis: 10_000 })
  // A connection dying mid-migration is reported by the failing query; unheard, it would crash the process.
  client.on('error', () => {})
  await client.connect()
  try {
    const applied = await runner({
      dbClient: client,
      dir: opts.dir,
      migrationsTable: opts.table,
      direction: 'up',
      count: Infinity,
      checkOrder: true,
      singleTransaction: true,
      advisoryLockMode: 'wait',
      lockValue: opts.lockValue,
      verbose: false,
      log: opts.log ?? (() => {}),
      logger: { debug: () => {}, info: opts.log ?? (() => {}), warn: opts.log ?? (() => {}), error: opts.log ?? (() => {}) },
    })
    return applied.map((m) => m.name)
  } finally {
    await client.end().catch(() => {})
  }
}
