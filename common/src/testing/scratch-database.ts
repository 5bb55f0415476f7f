/**
 * A fresh, empty database for a test that must see a schema built from
 * nothing (migrations), created with a random name and dropped afterwards.
 *
 * On the test server when it can hold separate databases. The embedded PGlite
 * server cannot: it accepts CREATE DATABASE but serves its one database under
 * every name, so "fresh" would be the shared one. Then a throwaway cluster
 * (./throwaway-postgres.ts) hosts it instead.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import {
  PostgresUnavailableError,
  startThrowawayPostgres,
  type SkippableTest,
  type ThrowawayPostgres,
} from './throwaway-postgres.js'

export class ScratchDatabaseUnsupportedError extends Error {
  constructor(reason: string) {
    super(reason)
    this.name = 'ScratchDatabaseUnsupportedError'
  }
}

export interface ScratchDatabase {
  url: string
  name: string
  /** Where it lives, for test names and reports. */
  host: 'test server' | 'throwaway cluster'
  /** Drops it (and stops the throwaway cluster if one was started). Idempotent. */
  drop(): Promise<void>
}

function withDatabase(serverUrl: string, database: string): string {
  const u = new URL(serverUrl)
  u.pathname = `/${database}`
  return u.toString()
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 })
  client.on('error', () => {}) // a dropped connection is reported by the query that sees it
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end().catch(() => {})
  }
}

async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await withClient(serverUrl, async (c) => {
    // A pool's end() resolves before its sessions' sockets are closed: give sessions still saying goodbye up to about
    // 2 s to go, so that FORCE below never ends one mid-goodbye (its client then sees "terminating connection due to
    // administrator command" as an error, an uncaught one in the test that ended the pool: seen in CI under load).
    // The wait is the server's (pg_sleep): the test may have faked this process's clock and timers.
    for (let i = 0; i < 80; i++) {
      const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name])
      if (rows[0]!.n === 0) break
      await c.query('SELECT pg_sleep(0.025)')
    }
    // WITH (FORCE) (PostgreSQL 13+) ends sessions a failed test may have left behind.
    await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => c.query(`DROP DATABASE IF EXISTS "${name}"`))
  })
}

/** A new database on the server of `serverUrl`; throws ScratchDatabaseUnsupportedError where that is impossible. */
export async function createScratchDatabase(serverUrl: string, prefix = 'tollgate_scratch'): Promise<ScratchDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`
  await withClient(serverUrl, (c) => c.query(`CREATE DATABASE "${name}"`))
  const url = withDatabase(serverUrl, name)
  let dropped = false
  const drop = async () => {
    if (dropped) return
    dropped = true
    await dropDatabase(serverUrl, name)
  }
  try {
    const current = await withClient(url, async (c) => (await c.query<{ db: string }>('SELECT current_database() AS db')).rows[0]?.db)
    if (current !== name) {
      throw new ScratchDatabaseUnsupportedError(`the server answers for ${current} when asked for ${name} (one database only)`)
    }
  } catch (err) {
    await drop().catch(() => {})
    throw err
  }
  return { url, name, host: 'test server', drop }
}

/**
 * A fresh database on the test server, else on a throwaway cluster. Rejects
 * with PostgresUnavailableError when neither is possible (reason to skip with).
 */
export async function freshDatabase(testServerUrl: string): Promise<ScratchDatabase> {
  try {
    return await createScratchDatabase(testServerUrl)
  } catch (err) {
    if (!(err instanceof ScratchDatabaseUnsupportedError)) throw err
  }
  const cluster: ThrowawayPostgres = await startThrowawayPostgres()
  try {
    const db = await createScratchDatabase(cluster.url)
    return {
      ...db,
      host: 'throwaway cluster',
      async drop() {
        await db.drop().catch(() => {})
        await cluster.destroy()
      },
    }
  } catch (err) {
    await cluster.destroy()
    throw err
  }
}

/** freshDatabase, dropped at the test's teardown; null after marking the test skipped with the reason. */
export async function freshDatabaseOrSkip(t: SkippableTest, testServerUrl: string): Promise<ScratchDatabase | null> {
  try {
    const db = await freshDatabase(testServerUrl)
    t.teardown(() => db.drop())
    return db
  } catch (err) {
    if (err instanceof PostgresUnavailableError) {
      t.skip(`no fresh database: the test server holds only one and ${err.message}`, () => {})
      return null
    }
    throw err
  }
}
