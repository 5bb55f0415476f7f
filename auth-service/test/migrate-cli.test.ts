/**
 * A migration that cannot run fails loudly: the migrate CLI (the built one,
 * as compose and CI run it) exits non-zero with one line on stderr, and a
 * failure half-way leaves nothing applied.
 */
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t from 'tap'
import * as testing from '@tollgate/common/testing'
import { DATABASE_URL, SECRET } from './helper.js'

const cli = fileURLToPath(new URL('../dist/migrate-cli.js', import.meta.url))
const migrateCli = (databaseUrl: string) => testing.runNodeScript(cli, { DATABASE_URL: databaseUrl, BETTER_AUTH_SECRET: SECRET })

t.test('unreachable database: exit 1, one line, quickly', async (t) => {
  const r = await migrateCli('postgres://postgres@127.0.0.1:1/auth')
  t.equal(r.code, 1)
  t.match(r.stderr, /^auth-service: migration failed: .*ECONNREFUSED.*\n$/)
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  t.equal(r.stdout, '', 'nothing claims success')
  t.ok(r.ms < 10_000, `gave up in ${r.ms} ms`)
})

t.test('a migration failing half-way: exit 1, one line, nothing applied', async (t) => {
  const db = await testing.freshDatabaseOrSkip(t, DATABASE_URL)
  if (!db) return
  const client = new pg.Client({ connectionString: db.url })
  await client.connect()
  t.teardown(() => client.end())
  // 001 would succeed; 002 then collides with a table already there.
  await client.query('CREATE TABLE revoked_tokens (legacy int)')

  const r = await migrateCli(db.url)
  t.equal(r.code, 1)
  t.match(r.stderr, /^auth-service: migration failed: relation "revoked_tokens" already exists \(42P07\)\n$/)
  t.equal(r.stdout, '')

  const recorded = await client.query('SELECT name FROM auth_migrations')
  t.equal(recorded.rowCount, 0, 'no migration recorded')
  const users = await client.query("SELECT to_regclass('public.users') AS t")
  t.equal(users.rows[0].t, null, '001 rolled back with 002: one transaction')
  const legacy = await client.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'revoked_tokens'")
  t.same(legacy.rows, [{ column_name: 'legacy' }], 'the existing table untouched')
})
