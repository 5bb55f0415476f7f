/**
 * Graceful shutdown: on SIGTERM a process stops accepting, finishes the
 * requests in flight, closes its pools and exits 0 within its grace period.
 */
import t from 'tap'
import Fastify from 'fastify'
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { proofKey, signIdentity } from '@tollgate/common'
import { freePort, repoRoot, SECRET } from './cluster.js'

async function startProcess(t: { teardown(fn: () => unknown): void }, entry: string, env: Record<string, string>) {
  const port = await freePort()
  let out = ''
  const proc = spawn(process.execPath, [entry], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', BETTER_AUTH_SECRET: SECRET, LOG_LEVEL: 'info', HOST: '127.0.0.1', PORT: String(port), INTERNAL_PORT: '0', ADMIN_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  proc.stdout!.on('data', (d) => (out += d))
  proc.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL')
  })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 60_000 // a liveness bound: a loaded machine starts a process in tens of seconds
  for (;;) {
    try {
      if ((await fetch(`${url}/health`)).ok) break
    } catch {
      // not yet
    }
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`did not start:\n${out}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  return { url, proc, exited, output: () => out }
}

t.test('gateway: a request in flight at SIGTERM completes; then it exits 0', async (t) => {
  // The upstream holds the sign-in until the gateway has begun its shutdown: in flight at SIGTERM by construction.
  let arrived!: () => void
  const arrival = new Promise<void>((r) => (arrived = r))
  let release!: () => void
  const released = new Promise<void>((r) => (release = r))
  const slow = Fastify()
  slow.get('/internal/revocations', async () => ({ cursor: 0, reset: false, more: false, revoked: [] }))
  slow.post('/api/auth/signin', async () => {
    arrived()
    await released
    return { slow: true }
  })
  const upstream = await slow.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => slow.close())
  const gw = await startProcess(t, 'gateway/dist/server.js', { AUTH_SERVICE_URL: upstream, TASK_SERVICE_URL: upstream })

  const inFlight = fetch(`${gw.url}/api/auth/signin`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"email":"a@example.com","password":"x"}' })
  await arrival
  gw.proc.kill('SIGTERM')
  for (const deadline = Date.now() + 30_000; !/shutting down/.test(gw.output()) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20))
  t.match(gw.output(), /shutting down/, 'the gateway is shutting down with the request still held')
  const signalledAt = Date.now()
  release()
  const res = await inFlight
  t.equal(res.status, 200, 'the in-flight request completed')
  t.same(await res.json(), { slow: true })
  t.equal(await gw.exited, 0, 'exit code 0')
  t.ok(Date.now() - signalledAt < 8000, `exited ${Date.now() - signalledAt} ms after its last request was answered`)
  const after = await fetch(`${gw.url}/health`).then((r) => r.status, () => 'refused')
  t.equal(after, 'refused', 'no longer accepting')
})

t.test('auth-service: a sign-in hashing at SIGTERM completes; pools close; exit 0', async (t) => {
  const databaseUrl = process.env.TEST_DATABASE_URL!
  const svc = await startProcess(t, 'auth-service/dist/server.js', { DATABASE_URL: databaseUrl, BCRYPT_COST: '13' })
  const key = proofKey(SECRET)
  const call = (path: string, body: unknown) => {
    const requestId = randomUUID()
    return fetch(`${svc.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': requestId, ...signIdentity(key, { caller: 'anonymous', userId: '' }, 'POST', path, requestId) },
      body: JSON.stringify(body),
    })
  }
  const email = `drain-${randomUUID()}@example.com`
  t.equal((await call('/api/auth/signup', { email, password: 'SecurePass123!' })).status, 201)
  const inFlight = call('/api/auth/signin', { email, password: 'SecurePass123!' })
  await new Promise((r) => setTimeout(r, 100))
  svc.proc.kill('SIGTERM')
  const res = await inFlight
  t.equal(res.status, 200, 'the sign-in finished')
  t.ok((await res.json()).token, 'with its token')
  t.equal(await svc.exited, 0, 'exit code 0')
})

t.test('gateway: SIGTERM ends it within the grace period even when its stdout pipe was closed', async (t) => {
  const upstream = Fastify()
  upstream.get('/internal/revocations', async () => ({ cursor: 0, reset: false, more: false, revoked: [] }))
  const upstreamUrl = await upstream.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => upstream.close())
  const graceMs = 2000
  const gw = await startProcess(t, 'gateway/dist/server.js', {
    AUTH_SERVICE_URL: upstreamUrl,
    TASK_SERVICE_URL: upstreamUrl,
    SHUTDOWN_GRACE_MS: String(graceMs),
  })
  // The parent goes away from the pipe (as a log shipper or a closed terminal does). The lines logged from here on
  // (a request, then "shutting down") wait in the log buffer until the flush at exit, which meets EPIPE.
  gw.proc.stdout!.destroy()
  await fetch(`${gw.url}/nowhere`).then((r) => r.arrayBuffer())
  const signalledAt = Date.now()
  gw.proc.kill('SIGTERM')
  // Bounded by the test, not the machine: SIGKILL at twice the grace period marks a hang.
  const killer = setTimeout(() => gw.proc.kill('SIGKILL'), graceMs * 2 + 3000)
  const code = await gw.exited
  clearTimeout(killer)
  t.not(gw.proc.signalCode, 'SIGKILL', `ended by itself (${Date.now() - signalledAt} ms after SIGTERM)`)
  t.type(code, 'number', 'with an exit code')
})
