import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { newUserId, SECRET, testDatabaseUrl } from './helper.js'
import { openEvents, openLive } from './live-client.js'

// server.ts as a process: the wiring a unit test of buildApp cannot see. The built one (npm test builds first):
// src/server.ts would need a TypeScript loader of its own, whose transform of src/ differs from the one this test
// process runs, and coverage merged by file URL would then mix the two (see startServiceProcess).
const serverJs = fileURLToPath(new URL('../dist/server.js', import.meta.url))

function start(env: Record<string, string>) {
  const child = spawn(process.execPath, [serverJs], {
    env: { ...process.env, LOG_LEVEL: 'info', HOST: '127.0.0.1', PORT: '0', BETTER_AUTH_SECRET: SECRET, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return { child, exited, out: () => stdout, err: () => stderr }
}

/**
 * A server process that has logged its listen line (killed at the test's end if still running). The
 * deadline is a liveness bound only (a loaded 2-core machine compiles and migrates in tens of seconds);
 * an early exit fails at once.
 */
async function startListening(t: { teardown(fn: () => unknown): void }, env: Record<string, string>) {
  const p = start(env)
  t.teardown(() => {
    if (p.child.exitCode === null) p.child.kill('SIGKILL')
  })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listen line: ${p.out()} ${p.err()}`)), 90_000)
    void p.exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`exited ${code} before listening: ${p.out()} ${p.err()}`))
    })
    p.child.stdout.on('data', () => {
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(p.out())
      if (m) {
        clearTimeout(timer)
        resolve(m[1]!)
      }
    })
  })
  return { p, url }
}

t.test('invalid configuration: exit 1 with one line naming the variable', async (t) => {
  const p = start({ DATABASE_URL: testDatabaseUrl(), BETTER_AUTH_SECRET: 'short' })
  t.equal(await p.exited, 1)
  t.match(p.err(), /^task-service: invalid configuration: BETTER_AUTH_SECRET must be at least 32 characters.*\n$/)
  t.equal(p.err().trim().split('\n').length, 1)
})

t.test('unreachable database with MIGRATE_ON_START: exit 1 with one line', async (t) => {
  const p = start({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x' })
  t.equal(await p.exited, 1)
  t.match(p.err(), /^task-service: migration failed: .+\n$/)
  t.equal(p.err().trim().split('\n').length, 1)
})

t.test('a port already taken: exit 1 with one line saying it cannot listen', async (t) => {
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => taken.close(resolve)))
  const p = start({ DATABASE_URL: testDatabaseUrl(), MIGRATE_ON_START: 'false', PORT: String((taken.address() as { port: number }).port) })
  t.equal(await p.exited, 1)
  t.match(p.err(), /^task-service: cannot listen: .*EADDRINUSE.*\n$/)
  t.equal(p.err().trim().split('\n').length, 1)
})

t.test('starts, migrates, serves, and stops cleanly on SIGTERM', async (t) => {
  const { p, url } = await startListening(t, { DATABASE_URL: testDatabaseUrl() })
  const ready = await fetch(`${url}/ready`)
  t.equal(ready.status, 200)
  const tasks = await fetch(`${url}/api/someone/tasks`)
  t.equal(tasks.status, 401, 'no proof, no tasks')
  t.equal(tasks.headers.get('cache-control'), 'no-store')
  p.child.kill('SIGTERM')
  t.equal(await p.exited, 0)
  for (const line of p.out().trim().split('\n')) t.doesNotThrow(() => JSON.parse(line), 'stdout is JSON log lines')
})

t.test('SIGTERM: open event streams get the shutdown event, WebSockets close 1001, then the process exits 0', async (t) => {
  const { p, url } = await startListening(t, { DATABASE_URL: testDatabaseUrl(), TASK_EVENTS_HEARTBEAT_MS: '60000' })
  const user = newUserId()
  const stream = await openEvents(t, url, user)
  t.equal((await stream.next())?.raw, ': connected')
  const live = await openLive(t, url, user)
  p.child.kill('SIGTERM')
  t.equal((await stream.next())?.raw, 'event: shutdown\ndata: {}')
  t.equal(await stream.next(), null, 'the stream ends')
  t.same(await live.closed, { code: 1001, reason: 'server shutting down' })
  t.equal(await p.exited, 0)
})
