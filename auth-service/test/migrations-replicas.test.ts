/**
 * Replicas starting at once migrate safely: on a database that has never seen
 * the schema, four auth-service replicas (two in-process runMigrations, two
 * migrate-CLI processes) are released together, twice; every migration is
 * applied exactly once, and the second time nothing is.
 */
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t from 'tap'
import * as testing from '@tollgate/common/testing'
import { MIGRATIONS_DIR, runMigrations } from '../src/migrations.js'
import { DATABASE_URL, SECRET } from './helper.js'

// The file's bound is a liveness bound: two rounds of four replicas, two of them processes, on a loaded machine.
t.setTimeout(300_000)

const LOCK = 7301 // auth-service's advisory lock (src/migrations.ts)
const cli = fileURLToPath(new URL('../dist/migrate-cli.js', import.meta.url))
const expected = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).map((f) => f.replace(/\.sql$/, '')).sort()

t.test('two rounds of four replicas at once: each migration applied exactly once', async (t) => {
  const db = await testing.freshDatabaseOrSkip(t, DATABASE_URL)
  if (!db) return
  t.comment(`fresh database ${db.name} on the ${db.host}`)
  const replicas = [
    { name: 'in-process #1', run: (url: string) => runMigrations(url) },
    { name: 'in-process #2', run: (url: string) => runMigrations(url) },
    testing.cliReplica('cli #1', cli, { BETTER_AUTH_SECRET: SECRET }),
    testing.cliReplica('cli #2', cli, { BETTER_AUTH_SECRET: SECRET }),
  ]

  const first = await testing.raceMigrations(db.url, replicas, [LOCK])
  t.same(Object.values(first).flat().sort(), expected, `round 1: ${JSON.stringify(first)}`)
  const second = await testing.raceMigrations(db.url, replicas, [LOCK])
  t.same(Object.values(second).flat(), [], 'round 2: nothing left to apply')

  const client = new pg.Client({ connectionString: db.url })
  await client.connect()
  t.teardown(() => client.end())
  const { rows } = await client.query<{ name: string; n: number }>(
    'SELECT name, count(*)::int AS n FROM auth_migrations GROUP BY name ORDER BY name',
  )
  t.same(rows, expected.map((name) => ({ name, n: 1 })), 'recorded once each')
  const tables = await client.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
  const names = tables.rows.map((r) => r.tablename as string)
  t.ok(['auth_migrations', 'users', 'revoked_tokens'].every((n) => names.includes(n)), `the schema is there: ${names.sort().join(', ')}`)
})
