/**
 * The launcher (`npm start`, infra/src/cluster.ts) when a process it started fails: it says which, stops every
 * process it started (none is left running and holding its port) and exits 1, so a failed `npm start` never leaves
 * half a cluster behind.
 */
import t from 'tap'
import { createServer } from 'node:net'
import { runLauncher } from '../../test/e2e/cluster.js'

const SECRET = 'launcher-failures-test-secret-0123456789abcdef'

const answers = (url: string) =>
  fetch(`${url}/health`, { signal: AbortSignal.timeout(5000) }).then(
    () => true,
    () => false,
  )

t.test('a gateway that cannot listen (its PORT taken): the services already up are stopped, exit 1', async (t) => {
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => taken.close(resolve)))
  const port = (taken.address() as { port: number }).port

  const launcher = runLauncher({
    BETTER_AUTH_SECRET: SECRET,
    DATABASE_URL: process.env.TEST_DATABASE_URL!,
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'warn',
    BCRYPT_COST: '10',
  })
  t.teardown(() => launcher.proc.kill('SIGKILL'))
  t.equal(await launcher.exited, 1, 'exit 1')
  const out = launcher.output()
  t.match(out, /\[tollgate\] gateway exited unexpectedly \(code 1\); stopping/, 'names the process that failed')
  t.match(out, /EADDRINUSE/, 'because its port is taken')
  t.notMatch(out, /Tollgate is up/)
  const urls = [...out.matchAll(/(?:auth|task)-service ready at (http:\/\/\S+)/g)].map((m) => m[1]!)
  t.equal(urls.length, 2, 'both services had started')
  for (const url of urls) t.notOk(await answers(url), `${url} stopped with the launcher`)
})

t.test('services that cannot reach the database: the launcher says so and exits 1 without starting the gateway', async (t) => {
  const launcher = runLauncher({ BETTER_AUTH_SECRET: SECRET, DATABASE_URL: 'postgres://127.0.0.1:1/tollgate', LOG_LEVEL: 'warn' })
  t.teardown(() => launcher.proc.kill('SIGKILL'))
  t.equal(await launcher.exited, 1, 'exit 1')
  const out = launcher.output()
  t.match(out, /(auth|task)-service: migration failed: DATABASE_URL \(127\.0\.0\.1:1\)/, "the service's own reason")
  t.match(out, /\[tollgate\] (auth|task)-service exited unexpectedly \(code 1\); stopping/, 'and which process stopped the launcher')
  t.notMatch(out, /ready at|gateway admin|Tollgate is up/, 'nothing came up')
})
