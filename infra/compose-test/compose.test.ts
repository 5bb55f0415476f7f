/**
 * `npm run test:compose`: docker-compose.yml run for real, as the README's compose section says, and judged only
 * through the gateway's published port (plus the database, for the one thing no client can see: purged rows).
 *
 * `--scale task-service=3` is checked too: the gateway re-resolves the service name and spreads GETs over the
 * replicas; one killed replica costs no GET.
 *
 * Engine: DOCKER_HOST when it answers; otherwise a private dockerd started by infra/docker/local-images/dockerd.sh
 * (root only) and stopped at the end. Base images: NODE_IMAGE / POSTGRES_IMAGE / REDIS_IMAGE when set, otherwise
 * the local ones build.sh makes (each only when missing: the daemon's data root persists between runs).
 * Skips, saying why, only when no engine can be had (no dockerd or docker-compose, or not root).
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const localImages = join(repoRoot, 'infra/docker/local-images')
const project = 'tollgate-ci'
const SERVICES = ['postgres', 'redis', 'auth-service', 'task-service', 'gateway']

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: repoRoot, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGTERM'), opts.timeoutMs ?? 60_000)
    child.on('error', (err) => {
      clearTimeout(timer)
      resolve({ code: null, stdout, stderr: stderr + String(err) })
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))))
    })
  })
}

/** An engine to use: the caller's, or ours (then `started` says we stop it). */
async function engine(): Promise<{ host: string; started: boolean; ownEngine: boolean } | { skip: string }> {
  if ((await run('docker-compose', ['version'])).code !== 0) return { skip: 'docker-compose is not installed (apt-get install docker-compose)' }
  if (process.env.DOCKER_HOST && (await run('docker', ['info'])).code === 0) return { host: process.env.DOCKER_HOST, started: false, ownEngine: false }
  const dockerd = join(localImages, 'dockerd.sh')
  const wasRunning = (await run(dockerd, ['status'])).code === 0
  const r = await run(dockerd, ['start'], { timeoutMs: 90_000 })
  if (r.code === 2) return { skip: `no Docker engine can be started here: ${r.stderr.trim()}` }
  const host = /^DOCKER_HOST=(\S+)$/m.exec(r.stdout)?.[1]
  if (r.code !== 0 || !host) throw new Error(`dockerd.sh start failed (exit ${r.code}): ${r.stderr.trim()}`)
  return { host, started: !wasRunning, ownEngine: true }
}

const found = await engine()
if ('skip' in found) {
  t.comment(`skipping the compose test: ${found.skip}`)
  t.test('docker-compose.yml runs', { skip: found.skip }, async () => {})
} else {
  await composeSuite(found)
}

async function composeSuite({ host, started, ownEngine }: { host: string; started: boolean; ownEngine: boolean }) {
  const dockerEnv = { ...process.env, DOCKER_HOST: host, COMPOSE_DOCKER_CLI_BUILD: '0', DOCKER_BUILDKIT: '0' }
  const docker = (args: string[], timeoutMs = 60_000) => run('docker', args, { env: dockerEnv, timeoutMs })

  // Base images: the caller's, or the local ones.
  const images: Record<string, string> = {}
  for (const name of ['NODE_IMAGE', 'POSTGRES_IMAGE', 'REDIS_IMAGE']) if (process.env[name]) images[name] = process.env[name]!
  if (Object.keys(images).length < 3) {
    // Liveness bounds: on a machine with no image cached yet, debootstrap and the first builds took 12 and 15 minutes under load.
    const built = await run(join(localImages, 'build.sh'), [], { env: dockerEnv, timeoutMs: 25 * 60_000 })
    if (built.code !== 0) throw new Error(`local-images/build.sh failed (exit ${built.code}):\n${built.stderr.slice(-3000)}`)
    for (const [, k, v] of built.stdout.matchAll(/^(\w+_IMAGE)=(\S+)$/gm)) images[k!] ??= v!
  }

  // Settings as the README's compose section has them (.env), in a file of our own.
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-compose-'))
  const envFile = join(dir, 'compose.env')
  const port = await freePort()
  const settings = {
    BETTER_AUTH_SECRET: randomBytes(32).toString('base64'),
    POSTGRES_PASSWORD: randomBytes(24).toString('hex'),
    GATEWAY_PORT: String(port),
    // The minimum bcrypt allows: sign-ins are the slow part of this test on a shared machine.
    BCRYPT_COST: '10',
    ...images,
  }
  writeFileSync(envFile, Object.entries(settings).map(([k, v]) => `${k}=${v}`).join('\n') + '\n')
  const composeEnv = { ...dockerEnv, ...settings }
  const compose = (args: string[], timeoutMs = 120_000) =>
    run('docker-compose', ['-p', project, '--env-file', envFile, '-f', join(repoRoot, 'docker-compose.yml'), ...args], { env: composeEnv, timeoutMs })
  const url = `http://127.0.0.1:${port}`

  const containerOf = async (service: string) => (await compose(['ps', '-q', service])).stdout.trim().split('\n')[0] ?? ''
  const inspect = async (id: string, format: string) => (await docker(['inspect', '-f', format, id])).stdout.trim()
  /** GET on the gateway's admin listener (9000, never published): from inside its container. */
  const admin = async (path: string) => {
    const script = `fetch('http://127.0.0.1:9000${path}').then(async (r) => process.stdout.write(r.status + ' ' + (await r.text())))`
    const out = (await compose(['exec', '-T', 'gateway', 'node', '-e', script])).stdout
    const space = out.indexOf(' ')
    let json: any
    try {
      json = JSON.parse(out.slice(space + 1))
    } catch {
      json = undefined
    }
    return { status: Number(out.slice(0, space)), text: out.slice(space + 1), json }
  }

  /** Every service's container running and healthy (each has a healthcheck: compose's or the image's). */
  async function allHealthy(timeoutMs: number): Promise<Record<string, string>> {
    const deadline = Date.now() + timeoutMs
    let states: Record<string, string> = {}
    while (Date.now() < deadline) {
      states = {}
      for (const s of SERVICES) {
        const id = await containerOf(s)
        states[s] = id ? await inspect(id, '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}') : 'missing'
      }
      if (Object.values(states).every((v) => v === 'running/healthy')) return states
      await sleep(2000)
    }
    return states
  }

  async function call(method: string, path: string, body?: unknown, token?: string) {
    const headers: Record<string, string> = {}
    if (body !== undefined) headers['content-type'] = 'application/json'
    if (token) headers.authorization = `Bearer ${token}`
    const res = await fetch(`${url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(15_000) })
    const text = await res.text()
    let json: any
    try {
      json = text ? JSON.parse(text) : undefined
    } catch {
      json = undefined
    }
    return { status: res.status, json }
  }

  async function taskRows(userId: string): Promise<number> {
    if (!/^[0-9a-f-]{36}$/.test(userId)) throw new Error('unexpected user id')
    const r = await compose(['exec', '-T', 'postgres', 'psql', '-U', 'tollgate', '-d', 'tollgate', '-tAc', `SELECT count(*) FROM tasks WHERE user_id = '${userId}'`])
    if (r.code !== 0) throw new Error(`psql failed: ${r.stderr}`)
    return Number(r.stdout.trim())
  }

  t.teardown(async () => {
    // Containers, network and volume of this project go; the images stay, as the build cache of the next run.
    await compose(['down', '-v', '--remove-orphans'], 180_000)
    rmSync(dir, { recursive: true, force: true })
    if (ownEngine) {
      // Images this run's builds replaced (untagged, unused): on our own daemon only.
      await docker(['image', 'prune', '-f'])
      if (started) await run(join(localImages, 'dockerd.sh'), ['stop'], { timeoutMs: 60_000 })
    }
  })

  // Leftovers of an interrupted run of this same project.
  await compose(['down', '-v', '--remove-orphans'], 180_000)

  let up = false
  await t.test('docker-compose up --build: every service healthy', async (t) => {
    const started = Date.now()
    const r = await compose(['up', '--build', '-d'], 30 * 60_000)
    t.equal(r.code, 0, 'docker-compose up --build -d exits 0', { stderr: r.stderr.slice(-4000) })
    const states = await allHealthy(180_000)
    t.same(states, Object.fromEntries(SERVICES.map((s) => [s, 'running/healthy'])), 'all five containers running and healthy')
    t.comment(`up --build and healthy in ${Math.round((Date.now() - started) / 1000)} s`)
    const health = await call('GET', '/health')
    t.equal(health.status, 200, 'GET /health through the published port')
    t.equal((await call('GET', '/ready')).status, 404, 'GET /ready through the published port: 404 (admin listener only)')
    t.equal((await call('GET', '/metrics')).status, 404, 'GET /metrics through the published port: 404')
    const ready = await admin('/ready')
    t.equal(ready.status, 200, 'GET /ready on the admin listener: 200')
    // One answer through the forwarder, so the upstream latency histogram has a series to show.
    t.equal((await call('GET', '/.well-known/jwks.json')).status, 200, 'GET /.well-known/jwks.json through the gateway')
    t.match((await admin('/metrics')).text, /gateway_upstream_duration_seconds_bucket/, 'GET /metrics on the admin listener')
    t.same(ready.json?.checks, { 'auth-service': 'ok', 'task-service': 'ok', revocations: 'ok', 'rate-limit-counters': 'redis' }, 'upstreams, revocations and Redis all ok')
    up = r.code === 0 && ready.status === 200
  })
  if (!up) {
    const logs = await compose(['logs', '--no-color', '--tail', '40'])
    t.comment(logs.stdout.slice(-6000))
    return
  }

  await t.test('the runtime images: no compiler, no dev dependency, no npm cache; sizes', async (t) => {
    for (const s of ['gateway', 'auth-service', 'task-service']) {
      const image = await inspect(await containerOf(s), '{{.Image}}')
      const size = Number(await inspect(image, '{{.Size}}'))
      t.comment(`${s} image: ${Math.round(size / 1e6)} MB`)
      const probe = await docker(['run', '--rm', '--entrypoint', '/bin/sh', image, '-c',
        'for c in gcc cc g++ make; do command -v $c; done; ls -d /app/node_modules/typescript /app/node_modules/tap /app/node_modules/tsx /root/.npm /home/node/.npm 2>/dev/null; true'])
      t.equal(probe.code, 0, `${s}: probe ran`)
      t.equal(probe.stdout.trim(), '', `${s}: nothing of the build in the runtime image`)
    }
  })

  const password = 'Compose-Test-Pass-123'
  const email = `compose-${randomUUID()}@example.com`
  let userId = ''
  let token = ''
  await t.test('the seed flow: sign up, sign in, create and list tasks', async (t) => {
    const signup = await call('POST', '/api/auth/signup', { email, password, name: 'Compose' })
    t.equal(signup.status, 201, 'signup 201')
    userId = signup.json?.id
    const signin = await call('POST', '/api/auth/signin', { email, password })
    t.equal(signin.status, 200, 'signin 200')
    token = signin.json?.token
    for (const title of ['first', 'second']) t.equal((await call('POST', `/api/${userId}/tasks`, { title }, token)).status, 201, `create ${title}`)
    const list = await call('GET', `/api/${userId}/tasks?sort=title&order=asc`, undefined, token)
    t.equal(list.status, 200)
    t.same(list.json?.map((x: { title: string }) => x.title), ['first', 'second'])
  })

  await t.test('signout revokes that token, not the others', async (t) => {
    const other = (await call('POST', '/api/auth/signin', { email, password })).json?.token
    t.equal((await call('POST', '/api/auth/signout', undefined, other)).status, 204, 'signout 204')
    let refused: { status: number; json: any } = { status: 0, json: undefined }
    for (let i = 0; i < 40 && refused.status !== 401; i++) {
      refused = await call('GET', `/api/${userId}/tasks`, undefined, other)
      if (refused.status !== 401) await sleep(250)
    }
    t.equal(refused.status, 401, 'the signed-out token is refused')
    t.equal(refused.json?.error_code, 'TOKEN_REVOKED')
    t.equal((await call('GET', `/api/${userId}/tasks`, undefined, token)).status, 200, 'another token of the user still works')
  })

  await t.test('account deletion purges the tasks (auth-service -> gateway internal listener -> task-service)', async (t) => {
    const doomed = `compose-delete-${randomUUID()}@example.com`
    const id = (await call('POST', '/api/auth/signup', { email: doomed, password })).json?.id
    const jwt = (await call('POST', '/api/auth/signin', { email: doomed, password })).json?.token
    for (const title of ['a', 'b', 'c']) await call('POST', `/api/${id}/tasks`, { title }, jwt)
    t.equal(await taskRows(id), 3, 'three tasks stored')
    t.equal((await call('DELETE', '/api/auth/me', undefined, jwt)).status, 204, 'DELETE /api/auth/me 204')
    let rows = 3
    // The outbox polls every second; 30 s is generous for a loaded machine.
    for (let i = 0; i < 60 && rows !== 0; i++) {
      rows = await taskRows(id)
      if (rows !== 0) await sleep(500)
    }
    t.equal(rows, 0, 'the tasks are purged')
    t.equal((await call('POST', '/api/auth/signin', { email: doomed, password })).status, 401, 'the account is gone')
  })

  await t.test('docker-compose restart keeps users and tasks (the PostgreSQL volume)', async (t) => {
    const r = await compose(['restart'], 300_000)
    t.equal(r.code, 0, 'docker-compose restart exits 0', { stderr: r.stderr.slice(-2000) })
    const states = await allHealthy(180_000)
    t.same(states, Object.fromEntries(SERVICES.map((s) => [s, 'running/healthy'])), 'healthy again')
    const signin = await call('POST', '/api/auth/signin', { email, password })
    t.equal(signin.status, 200, 'the user signs in again')
    const list = await call('GET', `/api/${userId}/tasks?sort=title&order=asc`, undefined, signin.json?.token)
    t.same(list.json?.map((x: { title: string }) => x.title), ['first', 'second'], 'the tasks are there')
    t.equal((await call('GET', `/api/${userId}/tasks`, undefined, token)).status, 200, 'a token from before the restart still works')
  })

  await t.test('--scale task-service=3: every replica takes requests, a killed one costs no GET', async (t) => {
    const r = await compose(['up', '-d', '--no-recreate', '--scale', 'task-service=3'], 300_000)
    t.equal(r.code, 0, 'docker-compose up --scale task-service=3 exits 0', { stderr: r.stderr.slice(-2000) })
    const replicas = (await compose(['ps', '-q', 'task-service'])).stdout.trim().split('\n').filter(Boolean)
    t.equal(replicas.length, 3, 'three task-service containers')
    // The gateway re-resolves the service name (UPSTREAM_DNS_REFRESH_MS) and health-checks each address.
    let ready = ''
    for (let i = 0; i < 90 && !/^ok \((?:[^,]+ ok(?:, |\)$)){3}/.test(ready); i++) {
      ready = String((await admin('/ready')).json?.checks?.['task-service'] ?? '')
      if (!/^ok \((?:[^,]+ ok(?:, |\)$)){3}/.test(ready)) await sleep(1000)
    }
    t.match(ready, /^ok \((?:[^,]+ ok(?:, |\)$)){3}/, `the gateway sees three healthy targets: ${ready}`)

    const jwt = (await call('POST', '/api/auth/signin', { email, password })).json?.token
    const since = new Date(Date.now() - 1000).toISOString()
    const statuses: number[] = []
    for (let i = 0; i < 30; i++) statuses.push((await call('GET', `/api/${userId}/tasks`, undefined, jwt)).status)
    t.same([...new Set(statuses)], [200], '30 GETs answered 200')
    await sleep(1500) // access lines are buffered for up to a second
    for (const id of replicas) {
      const logs = await docker(['logs', '--since', since, id])
      const served = `${logs.stdout}\n${logs.stderr}`.split('\n').filter((l) => l.includes(`/api/${userId}/tasks`)).length
      t.ok(served > 0, `replica ${id.slice(0, 12)} served ${served} of them`)
    }

    // One replica dies mid-traffic: GETs are retried on another target, then it is taken out.
    const kill = await docker(['kill', replicas[0]!])
    t.equal(kill.code, 0, 'one replica killed')
    const after: number[] = []
    for (let i = 0; i < 30; i++) after.push((await call('GET', `/api/${userId}/tasks`, undefined, jwt)).status)
    t.same([...new Set(after)], [200], 'every GET after the kill answered 200')

    const back = await compose(['up', '-d', '--no-recreate', '--scale', 'task-service=1'], 300_000)
    t.equal(back.code, 0, 'scaled back to one replica')
    t.same(await allHealthy(180_000), Object.fromEntries(SERVICES.map((s) => [s, 'running/healthy'])), 'healthy again')
  })

  await t.test('docker-compose stop: every service exits 0 with no error line', async (t) => {
    const ids = Object.fromEntries(await Promise.all(SERVICES.map(async (s) => [s, await containerOf(s)] as const)))
    const since = new Date(Date.now() - 1000).toISOString()
    const r = await compose(['stop'], 180_000)
    t.equal(r.code, 0, 'docker-compose stop exits 0')
    for (const s of SERVICES) {
      t.equal(await inspect(ids[s]!, '{{.State.Status}} {{.State.ExitCode}}'), 'exited 0', `${s}: exited with code 0`)
      const logs = await docker(['logs', '--since', since, ids[s]!])
      // Docker runs the healthcheck until the container has exited: a pg_isready probe that lands while PostgreSQL
      // shuts down is refused with this line (the services, stopped before it, make no connection then).
      const errors = `${logs.stdout}\n${logs.stderr}`
        .split('\n')
        .filter(isErrorLine)
        .filter((line) => !(s === 'postgres' && /FATAL: +the database system is shutting down$/.test(line)))
      t.same(errors, [], `${s}: no error line while stopping`)
    }
  })
}

/** pino at error or worse, PostgreSQL's ERROR/FATAL/PANIC, Redis's own error marks, a Node crash. */
function isErrorLine(line: string): boolean {
  const trimmed = line.trim()
  if (trimmed.startsWith('{')) {
    try {
      return Number(JSON.parse(trimmed).level) >= 50
    } catch {
      return true
    }
  }
  return /\b(ERROR|FATAL|PANIC):|Uncaught|Unhandled|^Error\b|npm ERR!|# (Error|Failed)/.test(trimmed)
}
