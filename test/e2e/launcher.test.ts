/** The launcher: embedded database by default, data kept across restarts, configuration errors in one line. */
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { call, runLauncher, startCluster } from './cluster.js'

// The file's bound is a liveness bound: four launcher starts, one of them `npm start` with its build, on a loaded machine.
t.setTimeout(600_000)

t.test('embedded PostgreSQL: no database to install, data survives a restart', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-data-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const email = `e2e-${randomUUID()}@example.com`

  const first = await startCluster(t, { DATA_DIR: dataDir, DATABASE_URL: '' })
  t.match(first.output(), /embedded PostgreSQL \(PGlite\)/)
  t.equal((await call(first.url, 'POST', '/api/auth/signup', { email, password: 'SecurePass123!' })).status, 201)
  t.equal(await first.stop(), 0, 'first run stops cleanly')

  const second = await startCluster(t, { DATA_DIR: dataDir, DATABASE_URL: '' })
  const signin = await call(second.url, 'POST', '/api/auth/signin', { email, password: 'SecurePass123!' })
  t.equal(signin.status, 200, 'the account from the first run is still there')
  t.equal(await second.stop(), 0)
})

t.test('configuration errors are one line naming the variable', async (t) => {
  const short = runLauncher({ BETTER_AUTH_SECRET: 'too-short', DATABASE_URL: 'postgres://127.0.0.1:1/x' })
  t.equal(await short.exited, 1)
  t.match(short.output(), /BETTER_AUTH_SECRET must be at least 32 characters/)
  t.equal(short.output().trim().split('\n').length, 1, 'one line')

  const prod = runLauncher({ NODE_ENV: 'production', DATABASE_URL: 'postgres://127.0.0.1:1/x' })
  t.equal(await prod.exited, 1)
  t.match(prod.output(), /BETTER_AUTH_SECRET is required when NODE_ENV=production/)
})

t.test('without a secret in development one is generated for the run, and said so', async (t) => {
  const databaseUrl = process.env.TEST_DATABASE_URL!
  const cluster = await startCluster(t, { BETTER_AUTH_SECRET: '', DATABASE_URL: databaseUrl })
  t.match(cluster.output(), /generated a random one for this run/)
  const email = `gen-${randomUUID()}@example.com`
  t.equal((await call(cluster.url, 'POST', '/api/auth/signup', { email, password: 'SecurePass123!' })).status, 201)
  const signin = await call(cluster.url, 'POST', '/api/auth/signin', { email, password: 'SecurePass123!' })
  t.equal((await call(cluster.url, 'GET', '/api/auth/me', undefined, signin.json.token)).status, 200, 'all processes share the generated secret')
})

t.test('SIGTERM to `npm start` stops the whole cluster (the README promises it)', async (t) => {
  const { spawn } = await import('node:child_process')
  const { freePort } = await import('../../infra/src/processes.js')
  const port = await freePort()
  const npm = spawn('npm', ['start', '--silent'], {
    cwd: new URL('../../', import.meta.url).pathname,
    env: { ...process.env, BETTER_AUTH_SECRET: 'npm-start-test-secret-0123456789-abcdef', DATABASE_URL: process.env.TEST_DATABASE_URL!, PORT: String(port), LOG_LEVEL: 'warn', BCRYPT_COST: '10' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so a failed test can clean up everything npm started
  })
  let out = ''
  npm.stdout!.on('data', (d) => (out += d))
  npm.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((resolve) => npm.on('exit', (code) => resolve(code)))
  t.teardown(() => {
    try {
      process.kill(-npm.pid!, 'SIGKILL')
    } catch {
      // already gone
    }
  })
  const deadline = Date.now() + 300_000 // its build included
  while (!/Tollgate is up at/.test(out)) {
    if (npm.exitCode !== null || Date.now() > deadline) throw new Error(`npm start did not come up:\n${out}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  t.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200, 'up')
  npm.kill('SIGTERM')
  await exited
  // The launcher and its three processes go too: nothing answers on the public port any more (the deadline
  // is a liveness bound for a loaded machine).
  let answered = true
  for (const deadline = Date.now() + 30_000; answered && Date.now() < deadline; ) {
    answered = await fetch(`http://127.0.0.1:${port}/health`).then(
      () => true,
      () => false,
    )
    if (answered) await new Promise((r) => setTimeout(r, 100))
  }
  t.notOk(answered, 'the gateway stopped with npm')
})
