import t from 'tap'
import { db, migrateOnce } from './helper.js'
import { readdirSync } from 'node:fs'
import { MIGRATIONS_DIR, runMigrations } from '../src/migrations.js'
import { DATABASE_URL } from './helper.js'

t.test('migrations are applied once and are idempotent', async (t) => {
  await migrateOnce()
  t.same(await runMigrations(DATABASE_URL), [], 'nothing left to apply')
  const client = await db(t)
  const { rows } = await client.query("SELECT name FROM auth_migrations ORDER BY id")
  const files = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).sort().map((f) => f.replace(/\.sql$/, ''))
  t.same(rows.map((r) => r.name), files, 'every file, in order')
  t.same(files.slice(0, 2), ['001_create-users', '002_create-revoked-tokens'])
})

t.test('the schema the service relies on', async (t) => {
  await migrateOnce()
  const client = await db(t)
  const indexes = await client.query(
    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('users', 'revoked_tokens') ORDER BY indexname",
  )
  const defs = indexes.rows.map((r) => r.indexdef as string)
  t.ok(defs.some((d) => /UNIQUE INDEX .* ON .*users .*\(lower\(\(email\)::text\)\)/.test(d)), 'unique lower(email)')
  t.ok(defs.some((d) => /INDEX .* ON .*users .*\(created_at\)/.test(d)), 'users.created_at')
  t.ok(defs.some((d) => /INDEX .* ON .*revoked_tokens .*\(expires_at\)/.test(d)), 'revoked_tokens.expires_at')
  t.ok(defs.some((d) => /UNIQUE INDEX .* ON .*revoked_tokens .*\(seq\)/.test(d)), 'revoked_tokens.seq unique')
})
