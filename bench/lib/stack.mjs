/**
 * The processes a scenario needs, started pinned and waited for: the plain
 * upstream, the bare proxy, the gateway (built dist/, run alone exactly as in
 * production), and the real auth-service and task-service. Also the one
 * shared secret and the token the load sends.
 */
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { SignJWT } from 'jose'
import { freePort, startNode, waitHttp } from './procs.mjs'
import { nodeFlags } from './node-flags.mjs'

export { nodeFlags }

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const here = (p) => fileURLToPath(new URL(p, import.meta.url))

export const CPU_PROXY = 1
export const CPU_LOAD = 0

/** Shared by the gateway and the services (identity proof, HS256 tokens). */
export const SECRET = 'tollgate-bench-secret-7f3a9c1e5b2d8046af'
export const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const HIGH = '1000000000' // limiters run on every request, but never refuse one

/** A token as the auth-service signs it (HS256, iss tollgate, aud tollgate-api). */
export async function signToken(sub = randomUUID(), ttl = '2h') {
  return new SignJWT({ email: 'bench@example.com', name: 'Bench' })
    .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
    .setSubject(sub)
    .setJti(randomUUID())
    .setIssuedAt()
    .setIssuer('tollgate')
    .setAudience('tollgate-api')
    .setExpirationTime(ttl)
    .sign(new TextEncoder().encode(SECRET))
}

const base = (port) => `http://127.0.0.1:${port}`

/** The plain upstream on CPU 0; `port` to come back on the same one after a kill. */
export async function startUpstream({ name = 'upstream', port, delayMs = 0 } = {}) {
  port ??= await freePort()
  const proc = await startNode({
    name,
    args: [here('./upstream.mjs')],
    env: { PORT: String(port), DELAY_MS: String(delayMs) },
    cpu: CPU_LOAD,
    readyLine: `ready ${port}`,
  })
  return { proc, port, url: base(port) }
}

/**
 * (b), with node's defaults but for `--no-memory-reducer`, which the gateway's start flags also carry: between two
 * of its slices a process idles for minutes, and V8's memory reducer would then drop what its optimised code
 * depends on (README, Benchmark), a cost of the bench's idle gaps rather than of the proxy's code.
 */
export async function startBareProxy({ upstreamUrl, nodeArgs = [] }) {
  const port = await freePort()
  const proc = await startNode({
    name: 'bare-proxy',
    args: ['--no-memory-reducer', ...nodeArgs, here('./bare-proxy.mjs')],
    env: { PORT: String(port), UPSTREAM: upstreamUrl },
    cpu: CPU_PROXY,
    readyLine: `ready ${port}`,
  })
  return { proc, port, url: base(port) }
}

/**
 * The gateway alone (node gateway/dist/server.js, with its `npm start` flags) with everything on, logs at
 * info to /dev/null. `env` overrides; `nodeArgs` e.g. --cpu-prof; `root` another built tree (baseline.mjs),
 * run with this tree's node flags.
 * Ready once the admin listener's /ready answers 200 (upstreams reachable, revocation list loaded); with
 * `waitReady: false` once the public /health does (a build older than the admin listener).
 */
export async function startGateway({ tasksUrl, authUrl, env = {}, nodeArgs = [], waitReady = true, readyTimeoutMs, root = ROOT }) {
  const port = await freePort()
  const adminPort = await freePort()
  const proc = await startNode({
    name: 'gateway',
    args: [...nodeFlags('gateway'), ...nodeArgs, `${root}gateway/dist/server.js`], // today's flags: only the code differs
    env: gatewayEnv({ port, adminPort, tasksUrl, authUrl, env }),
    cpu: CPU_PROXY,
  })
  await waitHttp(proc, waitReady ? `${base(adminPort)}/ready` : `${base(port)}/health`, readyTimeoutMs ? { timeoutMs: readyTimeoutMs } : {})
  return { proc, port, url: base(port), adminUrl: base(adminPort) }
}

/** The environment of a bench gateway on `port` (admin listener on `adminPort`): everything on, limits out of reach; `env` overrides. */
export function gatewayEnv({ port, adminPort, tasksUrl, authUrl, env = {} }) {
  return {
    HOST: '127.0.0.1',
    PORT: String(port),
    INTERNAL_PORT: '0', // the internal listener on a free port: runs never collide on 8001
    ADMIN_PORT: String(adminPort), // the admin listener (/ready, /metrics) likewise
    TASK_SERVICE_URL: tasksUrl,
    AUTH_SERVICE_URL: authUrl,
    BETTER_AUTH_SECRET: SECRET,
    LOG_LEVEL: 'info',
    NODE_ENV: 'production',
    RATE_LIMIT_IP_MAX: HIGH,
    RATE_LIMIT_USER_MAX: HIGH,
    ...env,
  }
}

/**
 * The real auth-service against the machine's PostgreSQL. In the sign-in run
 * it is the server under test (the gateway barely works there), so it shares
 * CPU 1 with the gateway and the load keeps CPU 0.
 */
export async function startAuthService({ env = {} } = {}) {
  const port = await freePort()
  const proc = await startNode({
    name: 'auth-service',
    args: [...nodeFlags('auth-service'), `${ROOT}auth-service/dist/server.js`],
    env: {
      HOST: '127.0.0.1',
      PORT: String(port),
      DATABASE_URL,
      BETTER_AUTH_SECRET: SECRET,
      BCRYPT_COST: '12',
      MIGRATE_ON_START: 'true',
      LOG_LEVEL: 'info',
      NODE_ENV: 'production',
      ...env,
    },
    cpu: CPU_PROXY,
  })
  await waitHttp(proc, `${base(port)}/health`, { timeoutMs: 30_000 })
  return { proc, port, url: base(port) }
}

/** The real task-service on CPU 0; `port` to restart it where the gateway expects it. */
export async function startTaskService({ port } = {}) {
  port ??= await freePort()
  const proc = await startNode({
    name: 'task-service',
    args: [...nodeFlags('task-service'), `${ROOT}task-service/dist/server.js`],
    env: {
      HOST: '127.0.0.1',
      PORT: String(port),
      DATABASE_URL,
      BETTER_AUTH_SECRET: SECRET,
      MIGRATE_ON_START: 'true',
      LOG_LEVEL: 'info',
      NODE_ENV: 'production',
    },
    cpu: CPU_LOAD,
  })
  await waitHttp(proc, `${base(port)}/health`, { timeoutMs: 30_000, intervalMs: 20 })
  return { proc, port, url: base(port) }
}
