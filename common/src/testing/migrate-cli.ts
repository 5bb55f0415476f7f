/**
 * A migration that cannot run fails loudly, one suite for every service's
 * migrate CLI (the built one, as compose and CI run it): it exits 1 with one
 * line on stderr naming the service, claims nothing on stdout, and a failing
 * migration leaves nothing recorded.
 */
import pg from 'pg'
import type { SuiteTest } from './database-restart.js'
import { runNodeScript } from './processes.js'
import { freshDatabaseOrSkip } from './scratch-database.js'
import type { SkippableTest } from './throwaway-postgres.js'

export interface MigrateCliOptions {
  /** The name the CLI prints first on its error line, e.g. "task-service". */
  service: string
  /** The built CLI (dist/migrate-cli.js). */
  cli: string
  /** Environment besides DATABASE_URL. */
  env?: Record<string, string>
  /** The server that fresh test databases are made on. */
  testServerUrl: string
  /** The table in which the CLI records applied migrations. */
  migrationsTable: string
  /** A table one of the migrations creates: it is created first, so that migration fails. */
  collidingTable: string
  /** The whole error line after "<service>: migration failed: ". */
  collisionError: RegExp
  /** More checks after the failed run, on a connection to that database. */
  afterFailure?(t: SuiteTest, client: pg.Client): Promise<void>
}

export type MigrateCliTest = SuiteTest & SkippableTest

export interface MigrateCliCase {
  name: string
  run(t: MigrateCliTest): Promise<void>
}

/** The cases: `for (const c of migrateCliCases(…)) t.test(c.name, (t) => c.run(t))`. */
export function migrateCliCases(o: MigrateCliOptions): MigrateCliCase[] {
  const migrateCli = (databaseUrl: string) => runNodeScript(o.cli, { ...o.env, DATABASE_URL: databaseUrl })
  const line = (error: RegExp) => new RegExp(`^${o.service}: migration failed: ${error.source}\\n$`)
  return [
    {
      name: 'unreachable database: exit 1, one line, quickly',
      async run(t) {
        const r = await migrateCli('postgres://postgres@127.0.0.1:1/unreachable')
        t.equal(r.code, 1)
        t.match(r.stderr, line(/.*ECONNREFUSED.*/))
        t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
        t.equal(r.stdout, '', 'nothing claims success')
        t.ok(r.ms < 10_000, `gave up in ${r.ms} ms`)
      },
    },
    {
      name: 'a migration that fails: exit 1, one line, nothing recorded',
      async run(t) {
        const db = await freshDatabaseOrSkip(t, o.testServerUrl)
        if (!db) return
        const client = new pg.Client({ connectionString: db.url })
        await client.connect()
        t.teardown(() => client.end())
        await client.query(`CREATE TABLE ${o.collidingTable} (legacy int)`)

        const r = await migrateCli(db.url)
        t.equal(r.code, 1)
        t.match(r.stderr, line(o.collisionError))
        t.equal(r.stdout, '', 'nothing claims success')
        t.equal((await client.query(`SELECT name FROM ${o.migrationsTable}`)).rowCount, 0, 'no migration recorded')
        const legacy = await client.query('SELECT column_name FROM information_schema.columns WHERE table_name = $1', [o.collidingTable])
        t.same(legacy.rows, [{ column_name: 'legacy' }], 'the existing table untouched')
        await o.afterFailure?.(t, client)
      },
    },
  ]
}
