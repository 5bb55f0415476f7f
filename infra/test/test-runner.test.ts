/**
 * `npm test`'s runner (infra/src/test-runner.ts): without TEST_DATABASE_URL the suites run against an embedded
 * PostgreSQL it starts for the run; with it, against that server (its credentials kept out of the output); the
 * arguments go to tap and tap's exit code is the runner's. Run here on a one-file project of its own, so the
 * inner tap run keeps its files (.tap/) out of this repository's.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const runner = fileURLToPath(new URL('../dist/test-runner.js', import.meta.url))

const project = mkdtempSync(join(tmpdir(), 'tollgate-runner-'))
writeFileSync(join(project, 'package.json'), JSON.stringify({ private: true, type: 'module', tap: { 'disable-coverage': true, reporter: 'tap' } }))
// tap and pg from this repository's install.
symlinkSync(fileURLToPath(new URL('../../node_modules', import.meta.url)), join(project, 'node_modules'), 'dir')
t.teardown(() => {
  unlinkSync(join(project, 'node_modules')) // the link first: nothing of the install is removed
  rmSync(project, { recursive: true, force: true })
})
// Raw TAP on stdout: does a PostgreSQL answer at TEST_DATABASE_URL?
const probe = join(project, 'database.test.mjs')
writeFileSync(
  probe,
  `import pg from 'pg'
console.log('TAP version 14')
const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL, connectionTimeoutMillis: 10000 })
try {
  await client.connect()
  const { rows } = await client.query('SELECT 1 AS one')
  console.log(rows[0].one === 1 ? 'ok 1 - a PostgreSQL answers at TEST_DATABASE_URL' : 'not ok 1 - an unexpected answer')
  await client.end()
} catch (err) {
  console.log('not ok 1 - no PostgreSQL at TEST_DATABASE_URL: ' + (err.code ?? err.message))
}
console.log('1..1')
`,
)

function runTests(env: Record<string, string>): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    // Nothing from this test's environment but PATH and HOME (it has its own TEST_DATABASE_URL and tap settings).
    const child = spawn(process.execPath, [runner, probe], {
      cwd: project,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let stdout = ''
    child.stdout.on('data', (d) => (stdout += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout })
    })
  })
}

t.test('without TEST_DATABASE_URL the suites get an embedded PostgreSQL, and a passing run exits 0', async (t) => {
  const r = await runTests({})
  t.match(r.stdout, /# embedded PostgreSQL \(PGlite\) for this run at postgres:\/\//)
  t.match(r.stdout, /ok 1 - a PostgreSQL answers at TEST_DATABASE_URL/, 'the test file named on the command line ran against it')
  t.equal(r.code, 0)
})

t.test('with TEST_DATABASE_URL the suites use that server, its credentials not printed, and a failing run exits 1', async (t) => {
  const r = await runTests({ TEST_DATABASE_URL: 'postgres://runner:s3cret-word@127.0.0.1:1/none' })
  t.match(r.stdout, /# tests use TEST_DATABASE_URL postgres:\/\/127\.0\.0\.1:1\/none/)
  t.notMatch(r.stdout, /s3cret-word/, 'no password in the output')
  t.notMatch(r.stdout, /embedded PostgreSQL/, 'nothing embedded started')
  t.match(r.stdout, /not ok 1 - no PostgreSQL at TEST_DATABASE_URL: ECONNREFUSED/)
  t.equal(r.code, 1, "tap's failure is the runner's exit code")
})
