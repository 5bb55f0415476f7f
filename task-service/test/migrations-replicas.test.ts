/**
 * Replicas starting at once migrate safely. On databases that have never seen
 * the schema, replicas are released together (each blocked on its advisory
 * lock first), twice; every migration is applied exactly once, and the second
 * time nothing is. Then both services at once on one database: their own
 * tables and locks, nothing shared, nothing applied twice.
 */
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t from 'tap'
import * as testing from '@tollgate/common/testing'
import { MIGRATIONS_DIR, runMigrations } from '../src/migrations.js'
import { SECRET, testDatabaseUrl } from './helper.js'

// The file's bound is a liveness bound: two rounds of four replicas, two of them processes, on a loaded machine.
t.setTimeout(300_000)

const TASK_LOCK = 7302 // src/migrations.ts
const AUTH_LOCK = 7301 // auth-service/src/migrations.ts
const taskCli = fileURLToPath(new URL('../dist/migrate-cli.js', import.meta.url))
const authCli = fileURLToPath(new URL('../../auth-service/dist/migrate-cli.js', import.meta.url))
const names = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.sql')).map((f) => f.replace(/\.sql$/, '')).sort()
const taskExpected = names(MIGRATIONS_DIR)
const authExpected = names(fileURLToPath(new URL('../../auth-service/migrations', import.meta.url)))

async function recorded(t: { teardown(fn: () => unknown): void }, url: string, table: string): Promise<Array<{ name: string; n: number }>> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  t.teardown(() => client.end())
  const { rows } = await client.query<{ name: string; n: number }>(
    `SELECT name, count(*)::int AS n FROM ${table} GROUP BY name ORDER BY name`,
  )
  return rows
}

t.test('two rounds of four task-service replicas at once: each migration applied exactly once', async (t) => {
  const db = await testing.freshDatabaseOrSkip(t, testDatabaseUrl())
  if (!db) return
  t.comment(`fresh database ${db.name} on the ${db.host}`)
  const replicas = [
    { name: 'in-process #1', run: (url: string) => runMigrations(url) },
    { name: 'in-process #2', run: (url: string) => runMigrations(url) },
    testing.cliReplica('cli #1', taskCli),
    testing.cliReplica('cli #2', taskCli),
  ]
  const first = await testing.raceMigrations(db.url, replicas, [TASK_LOCK])
  t.same(Object.values(first).flat().sort(), taskExpected, `round 1: ${JSON.stringify(first)}`)
  const second = await testing.raceMigrations(db.url, replicas, [TASK_LOCK])
  t.same(Object.values(second).flat(), [], 'round 2: nothing left to apply')
  t.same(await recorded(t, db.url, 'task_migrations'), taskExpected.map((name) => ({ name, n: 1 })), 'recorded once each')
})

t.test('both services, two replicas each, at once on one database, twice', async (t) => {
  const db = await testing.freshDatabaseOrSkip(t, testDatabaseUrl())
  if (!db) return
  const replicas = [
    testing.cliReplica('task #1', taskCli),
    testing.cliReplica('task #2', taskCli),
    testing.cliReplica('auth #1', authCli, { BETTER_AUTH_SECRET: SECRET }),
    testing.cliReplica('auth #2', authCli, { BETTER_AUTH_SECRET: SECRET }),
  ]
  const applied = (r: Record<string, string[]>, prefix: string) =>
    Object.entries(r).filter(([k]) => k.startsWith(prefix)).flatMap(([, v]) => v).sort()

  const first = await testing.raceMigrations(db.url, replicas, [TASK_LOCK, AUTH_LOCK])
  t.same(applied(first, 'task'), taskExpected, `round 1, task-service: ${JSON.stringify(first)}`)
  t.same(applied(first, 'auth'), authExpected, 'round 1, auth-service')
  const second = await testing.raceMigrations(db.url, replicas, [TASK_LOCK, AUTH_LOCK])
  t.same(Object.values(second).flat(), [], 'round 2: nothing left to apply')
  t.same(await recorded(t, db.url, 'task_migrations'), taskExpected.map((name) => ({ name, n: 1 })))
  t.same(await recorded(t, db.url, 'auth_migrations'), authExpected.map((name) => ({ name, n: 1 })))
})
