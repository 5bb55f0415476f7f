import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { database, migrateOnce, testDatabaseUrl } from './helper.js'
import { MIGRATIONS_DIR, runMigrations } from '../src/migrations.js'

t.test('migrations are idempotent and recorded in task_migrations', async (t) => {
  await migrateOnce()
  t.same(await runMigrations(testDatabaseUrl()), [], 'a second run applies nothing')
  const db = database(t)
  const { rows } = await db.query('SELECT name FROM task_migrations ORDER BY id')
  t.same(rows.map((r) => r.name), readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).sort().map((f) => f.replace(/\.sql$/, '')))
})

t.test('migration files are forward-only node-pg-migrate SQL', async (t) => {
  for (const file of readdirSync(MIGRATIONS_DIR)) {
    t.match(file, /^\d{3}_[a-z0-9-]+\.sql$/, file)
    const sql = readFileSync(join(MIGRATIONS_DIR, file), 'utf8')
    t.equal(sql.split('\n')[0], '-- Up Migration', `${file}: first line`)
    t.notMatch(sql, /Down Migration/i, `${file}: no down section`)
  }
})

t.test('the table refuses what the API must never store', async (t) => {
  await migrateOnce()
  const db = database(t)
  const bad: Array<[string, unknown[]]> = [
    ['INSERT INTO tasks (user_id, title) VALUES ($1, $2)', ['u'.repeat(129), 't']],
    ['INSERT INTO tasks (user_id, title) VALUES ($1, $2)', ['', 't']],
    ['INSERT INTO tasks (user_id, title) VALUES ($1, $2)', ['u', '']],
    ['INSERT INTO tasks (user_id, title) VALUES ($1, $2)', ['u', 'x'.repeat(201)]],
    ['INSERT INTO tasks (user_id, title, description) VALUES ($1, $2, $3)', ['u', 't', 'd'.repeat(1001)]],
    ['INSERT INTO tasks (user_id, title) VALUES ($1, NULL)', ['u']],
  ]
  for (const [sql, values] of bad) {
    await t.rejects(db.query(sql, values), { code: /^(23|22)/ }, `${sql} ${JSON.stringify(values).slice(0, 40)}`)
  }
})
