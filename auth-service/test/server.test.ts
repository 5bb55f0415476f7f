/**
 * server.ts as a process (the built one, as task-service's server test explains): every failure before listening is
 * one line on stderr and exit code 1, so compose, Kubernetes and the launcher show the cause, not a stack trace.
 */
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { DATABASE_URL, SECRET } from './helper.js'

const serverJs = fileURLToPath(new URL('../dist/server.js', import.meta.url))

function start(env: Record<string, string>) {
  const child = spawn(process.execPath, [serverJs], {
    env: { ...process.env, LOG_LEVEL: 'info', HOST: '127.0.0.1', PORT: '0', BETTER_AUTH_SECRET: SECRET, BCRYPT_COST: '10', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return { exited, err: () => stderr }
}

t.test('a port already taken: exit 1 with one line saying it cannot listen', async (t) => {
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => taken.close(resolve)))
  const p = start({ DATABASE_URL, MIGRATE_ON_START: 'false', PORT: String((taken.address() as { port: number }).port) })
  t.equal(await p.exited, 1)
  t.match(p.err(), /^auth-service: cannot listen: .*EADDRINUSE.*\n$/)
  t.equal(p.err().trim().split('\n').length, 1, 'one line, no stack trace')
})

t.test('invalid configuration: exit 1 with one line naming the variable', async (t) => {
  const p = start({ DATABASE_URL, BETTER_AUTH_SECRET: 'short' })
  t.equal(await p.exited, 1)
  t.match(p.err(), /^auth-service: invalid configuration: BETTER_AUTH_SECRET.*\n$/)
  t.equal(p.err().trim().split('\n').length, 1)
})
