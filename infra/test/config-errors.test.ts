/**
 * Configuration mistakes a user can act on (issue 14): each process says which variable is wrong and how, in one
 * line, and the launcher checks all three processes' settings before it starts anything.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const SECRET = 'config-errors-test-secret-0123456789abcdef'

function run(entry: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [entry], {
      cwd: repoRoot,
      // Nothing from the caller's environment but PATH and HOME: the test decides every setting.
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', PORT: '0', BETTER_AUTH_SECRET: SECRET, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    // A process that starts despite the mistake is a failure, not a hang.
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

const taskService = 'task-service/dist/server.js'
const authService = 'auth-service/dist/server.js'
const launcher = 'infra/dist/cluster.js'

t.test('LOG_LEVEL: the error lists the allowed values', async (t) => {
  const r = await run(taskService, { LOG_LEVEL: 'verbose', DATABASE_URL: 'postgres://127.0.0.1:1/x' })
  t.equal(r.code, 1)
  t.equal(r.stderr, 'task-service: invalid configuration: LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent\n')
})

t.test('DATABASE_URL must be a postgres(ql):// URL, said before any connection is tried', async (t) => {
  for (const [service, entry] of [['task-service', taskService], ['auth-service', authService]] as const) {
    const r = await run(entry, { DATABASE_URL: 'base' })
    t.equal(r.code, 1, `${service}: exit 1`)
    t.match(r.stderr, new RegExp(`^${service}: invalid configuration: DATABASE_URL must be a postgres:// or postgresql:// URL`), `${service}: names the variable`)
    t.notMatch(r.stderr, /ENOTFOUND/)
  }
  const ok = await run(taskService, { DATABASE_URL: 'postgresql://127.0.0.1:1/x' })
  t.notMatch(ok.stderr, /invalid configuration/, 'postgresql:// is accepted too')
})

t.test('an unreachable database names DATABASE_URL and its host:port', async (t) => {
  for (const [service, entry] of [['task-service', taskService], ['auth-service', authService]] as const) {
    const r = await run(entry, { DATABASE_URL: 'postgres://tollgate:hunter2-password@no-such-host.invalid:5439/tollgate' })
    t.equal(r.code, 1, `${service}: exit 1`)
    t.match(r.stderr, new RegExp(`^${service}: migration failed: DATABASE_URL \\(no-such-host\\.invalid:5439\\): .*ENOTFOUND`), `${service}: variable, host:port and cause`)
    t.notMatch(r.stderr, /hunter2/, `${service}: the password is not printed`)
    t.equal(r.stderr.trim().split('\n').length, 1, `${service}: one line`)
  }
})

t.test('SERVICE_CREDENTIALS, checked while the auth-service builds: one line too, nothing listening', async (t) => {
  const r = await run(authService, {
    DATABASE_URL: 'postgres://127.0.0.1:1/x',
    MIGRATE_ON_START: 'false',
    SERVICE_CREDENTIALS: JSON.stringify({ 'report-service': { secret: 'too-short' } }),
  })
  t.equal(r.code, 1)
  t.equal(r.stderr, 'auth-service: invalid configuration: SERVICE_CREDENTIALS.report-service.secret must be at least 32 characters\n')
  t.notMatch(r.stdout, /Server listening/)
})

t.test('the launcher checks every process before starting any', async (t) => {
  const started = Date.now()
  const r = await run(launcher, { PORT: '99999', DATABASE_URL: 'postgres://127.0.0.1:1/x', AUTH_SERVICE_PORT: '70000' })
  const tookMs = Date.now() - started
  t.equal(r.code, 1, 'exit 1')
  const out = `${r.stdout}${r.stderr}`
  t.match(r.stderr, /gateway: PORT must be <= 65535/, 'the gateway PORT')
  t.match(r.stderr, /auth-service: PORT must be <= 65535/, 'the auth-service port (AUTH_SERVICE_PORT)')
  t.notMatch(out, /ready at|embedded PostgreSQL|Server listening/, 'nothing was started')
  t.equal(r.stdout, '', 'nothing on stdout')
  t.comment(`refused in ${tookMs} ms`)

  const level = await run(launcher, { LOG_LEVEL: 'loud', DATABASE_URL: 'postgres://127.0.0.1:1/x' })
  t.equal(level.code, 1)
  t.match(level.stderr, /LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent/)
  t.notMatch(`${level.stdout}${level.stderr}`, /ready at|Server listening/)
})
