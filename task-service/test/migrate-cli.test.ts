/**
 * A migration that cannot run fails loudly: the migrate CLI (the built one,
 * as compose and CI run it) exits non-zero with one line on stderr; a broken
 * SQL file rejects migrate() and leaves nothing applied. The CLI cases are
 * shared with the auth-service (@tollgate/common/testing migrateCliCases).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t from 'tap'
import { migrate } from '@tollgate/common/migrate'
import * as testing from '@tollgate/common/testing'
import { describeError } from '@tollgate/common'
import { testDatabaseUrl } from './helper.js'

const cli = fileURLToPath(new URL('../dist/migrate-cli.js', import.meta.url))

async function connect(t: { teardown(fn: () => unknown): void }, url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  t.teardown(() => client.end())
  return client
}

const cases = testing.migrateCliCases({
  service: 'task-service',
  cli,
  testServerUrl: testDatabaseUrl(),
  migrationsTable: 'task_migrations',
  collidingTable: 'tasks',
  collisionError: /relation "tasks" already exists \(42P07\)/,
})
for (const c of cases) t.test(c.name, (t) => c.run(t))

t.test('a broken SQL file: migrate() rejects and the run before it is rolled back', async (t) => {
  const db = await testing.freshDatabaseOrSkip(t, testDatabaseUrl())
  if (!db) return
  const dir = mkdtempSync(join(tmpdir(), 'tg-migrations-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, '001_fine.sql'), '-- Up Migration\nCREATE TABLE fine (id int);\n')
  writeFileSync(join(dir, '002_broken.sql'), '-- Up Migration\nCREATE TABEL broken (id int);\n')

  const failure = await migrate({ databaseUrl: db.url, dir, table: 'probe_migrations', lockValue: 7399 }).then(
    () => null,
    (err: unknown) => err as { code?: string; message?: string },
  )
  t.ok(failure, 'rejected')
  t.equal(failure?.code, '42601', 'syntax error, from PostgreSQL')
  t.match(describeError(failure), /^syntax error at or near "TABEL" \(42601\)$/, 'one line for stderr, with its SQLSTATE')

  const client = await connect(t, db.url)
  t.equal((await client.query("SELECT to_regclass('public.fine') AS t")).rows[0].t, null, '001 rolled back too')
  t.equal((await client.query('SELECT name FROM probe_migrations')).rowCount, 0, 'nothing recorded')
  // And it is not stuck: the lock was released, a fixed file applies.
  writeFileSync(join(dir, '002_broken.sql'), '-- Up Migration\nCREATE TABLE broken (id int);\n')
  t.same(await migrate({ databaseUrl: db.url, dir, table: 'probe_migrations', lockValue: 7399 }), ['001_fine', '002_broken'])
})

t.test('error lines: never empty, never several lines', async (t) => {
  // A refused connection to every address of a host: an AggregateError with no message.
  const refused = Object.assign(
    new AggregateError(
      [new Error('connect ECONNREFUSED ::1:5432'), new Error('connect ECONNREFUSED 127.0.0.1:5432')],
      '',
    ),
    { code: 'ECONNREFUSED' },
  )
  t.equal(describeError(refused), 'connect ECONNREFUSED ::1:5432; connect ECONNREFUSED 127.0.0.1:5432')
  t.equal(describeError(Object.assign(new Error(''), { code: 'ECONNRESET' })), 'ECONNRESET')
  t.equal(describeError(new Error('')), 'unknown error')
  t.equal(describeError(new Error('two\nlines')), 'two lines')
  t.equal(describeError('plain'), 'plain')
})
