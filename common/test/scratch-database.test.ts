/**
 * The scratch databases of the tests (testing/scratch-database.ts): dropped
 * at a test's teardown without cutting a session that is still finishing its
 * work or saying goodbye (a pool's end() resolves before its sockets close);
 * cut, it showed as an uncaught "terminating connection due to administrator
 * command" in the test that had ended its pool (CI, under load).
 */
import t from 'tap'
import pg from 'pg'
import { freshDatabaseOrSkip } from '../src/testing/index.js'

const url = process.env.TEST_DATABASE_URL
if (!url) throw new Error('TEST_DATABASE_URL is required (the test runner sets it)')

t.test('a session still at work when the database is dropped finishes, then the database goes', async (t) => {
  const db = await freshDatabaseOrSkip(t, url)
  if (!db) return
  const client = new pg.Client({ connectionString: db.url })
  const errors: Error[] = []
  client.on('error', (err) => errors.push(err))
  await client.connect()
  // The session's last statement, then its goodbye; the drop comes in the middle.
  const work = client.query('SELECT pg_sleep(0.3)').then(() => client.end())
  const drop = db.drop()
  await t.resolves(work, 'its statement answered and its goodbye said, not terminated')
  await drop
  t.same(errors, [], 'no error on its connection')
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  t.teardown(() => admin.end())
  const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [db.name])
  t.equal(rowCount, 0, 'the database is gone')
})
