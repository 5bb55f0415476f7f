/**
 * The embedded PostgreSQL (infra/src/embedded-postgres.ts) that `npm start` and `npm test` use: PGlite has no lock
 * between processes and two of them on one data folder lose writes silently, so a folder held by another live
 * process is refused with a message saying what to do; a lock left by a process that is gone does not block the next
 * start; and a start that fails (its port taken) leaves no lock behind, so the next start works. And what `npm test`
 * without TEST_DATABASE_URL relies on: a test asking it for a fresh database is not handed the shared one (PGlite
 * serves its one database under every name) but gets one on a throwaway cluster.
 */
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import * as testing from '@tollgate/common/testing'
import { startEmbeddedPostgres } from '../src/embedded-postgres.js'

const distEntry = fileURLToPath(new URL('../dist/embedded-postgres.js', import.meta.url))

async function selectOne(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<{ one: number }>('SELECT 1 AS one')
    return rows[0]!.one
  } finally {
    await client.end()
  }
}

/** A separate process holding an embedded database on `dataDir` until killed; resolves once it has started. */
function holder(t: Test, dataDir: string): Promise<number> {
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', `const { startEmbeddedPostgres } = await import(${JSON.stringify(distEntry)}); await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)} }); console.log('up'); setInterval(() => {}, 1000)`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  const exited = new Promise((resolve) => child.on('exit', resolve))
  t.teardown(async () => {
    child.kill('SIGKILL')
    await exited
  })
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('up')) resolve(child.pid!)
    })
    child.on('exit', (code) => reject(new Error(`the holder exited (${code}) before starting`)))
  })
}

// One folder for the file: PGlite initialises a new one in seconds, and reopens it in well under one.
const dataDir = t.testdir({})
const lockFile = join(dataDir, 'tollgate.lock')

t.test('a lock left by a process that is gone does not block the next start, and data persists in the folder', async (t) => {
  // A process that exited: its pid is free (the lock is what a killed launcher leaves behind).
  const gone = spawn(process.execPath, ['-e', ''])
  await new Promise((resolve) => gone.on('exit', resolve))
  writeFileSync(lockFile, String(gone.pid))

  const first = await startEmbeddedPostgres({ dataDir })
  t.equal(readFileSync(lockFile, 'utf8'), String(process.pid), 'the lock is ours now')
  const client = new pg.Client({ connectionString: first.url })
  await client.connect()
  await client.query('CREATE TABLE kept (v text)')
  await client.query(`INSERT INTO kept VALUES ('still here')`)
  await client.end()
  await first.stop()
  await first.stop() // a second stop is harmless
  t.notOk(existsSync(lockFile), 'stop releases the lock')

  const second = await startEmbeddedPostgres({ dataDir })
  const again = new pg.Client({ connectionString: second.url })
  await again.connect()
  const { rows } = await again.query<{ v: string }>('SELECT v FROM kept')
  await again.end()
  await second.stop()
  t.same(rows, [{ v: 'still here' }], 'the folder keeps the data across starts')
})

t.test('a start that fails (its port taken) leaves no lock, and the next start works', async (t) => {
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => taken.close(resolve)))
  const port = (taken.address() as { port: number }).port

  await t.rejects(startEmbeddedPostgres({ dataDir, port }), { code: 'EADDRINUSE' })
  t.notOk(existsSync(lockFile), 'no lock left behind')

  const db = await startEmbeddedPostgres({ dataDir })
  t.teardown(() => db.stop())
  t.equal(await selectOne(db.url), 1, 'the same folder starts and answers')
})

t.test('a data folder another live process holds is refused, naming the process and what to do', async (t) => {
  const pid = await holder(t, dataDir)
  await t.rejects(startEmbeddedPostgres({ dataDir }), {
    message: `the embedded database in ${dataDir} is in use by process ${pid}; stop it first or set DATA_DIR`,
  })
  t.equal(readFileSync(lockFile, 'utf8'), String(pid), 'the holder keeps its lock')
})

t.test('a fresh database asked of the embedded server comes from a throwaway cluster, never the shared one', async (t) => {
  const embedded = await startEmbeddedPostgres({ dataDir })
  t.teardown(() => embedded.stop())
  await t.rejects(testing.createScratchDatabase(embedded.url), { name: 'ScratchDatabaseUnsupportedError' }, 'not on the embedded server')

  const db = await testing.freshDatabaseOrSkip(t, embedded.url) // skipped where no PostgreSQL is installed
  if (!db) return
  t.equal(db.host, 'throwaway cluster')
  const client = new pg.Client({ connectionString: db.url })
  await client.connect()
  const { rows } = await client.query<{ db: string; tables: number }>(
    "SELECT current_database() AS db, (SELECT count(*)::int FROM pg_tables WHERE tablename = 'kept') AS tables",
  )
  await client.end()
  t.same(rows, [{ db: db.name, tables: 0 }], 'a database of its own name, without the shared one\'s tables')
  await db.drop()
  await t.rejects(selectOne(db.url), 'dropped with its cluster')
})
