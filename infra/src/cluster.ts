/**
 * `npm start`: the whole of Tollgate on one machine. Starts the embedded
 * PostgreSQL (unless DATABASE_URL names a real one), then auth-service and
 * task-service on free loopback ports (each applies its own migrations), then
 * the gateway on PORT (default 8000), and prints the public URL. SIGINT or
 * SIGTERM stops everything in reverse order; SIGHUP goes to the gateway (reloads its file).
 */
import { randomBytes } from 'node:crypto'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ConfigError, loadConfig, readEnv } from '@tollgate/common'
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres.js'
import { freePorts, startProcess, stopProcess, waitForHealth, type Child } from './processes.js'

const repoRoot = resolve(new URL('../../', import.meta.url).pathname)
const env = readEnv()
const say = (line: string) => process.stdout.write(`[tollgate] ${line}\n`)
const fail = (line: string): never => {
  process.stderr.write(`[tollgate] ${line}\n`)
  process.exit(1)
}

function resolveSecret(): string {
  const secret = env.BETTER_AUTH_SECRET
  if (secret) {
    if (secret.length < 32) fail('invalid configuration: BETTER_AUTH_SECRET must be at least 32 characters (generate one: openssl rand -base64 32)')
    return secret
  }
  if (env.NODE_ENV === 'production') fail('invalid configuration: BETTER_AUTH_SECRET is required when NODE_ENV=production')
  say('BETTER_AUTH_SECRET is not set: generated a random one for this run (tokens end with the run; set it in .env to keep them)')
  return randomBytes(32).toString('base64url')
}

const secret = resolveSecret()

/**
 * Every process's settings, checked against its own schema before anything starts: a mistake is one line per
 * process at once, instead of a failure after the database and two services have come up. Values the launcher
 * fills in itself (ports picked at start, the embedded database's URL) get stand-ins here.
 */
async function checkConfiguration(): Promise<void> {
  const shared = { ...env, BETTER_AUTH_SECRET: secret }
  const database = env.DATABASE_URL || 'postgres://embedded@127.0.0.1:5432/postgres'
  const internal = { GATEWAY_INTERNAL_URL: 'http://127.0.0.1:8001' }
  const settings: Record<string, Record<string, unknown>> = {
    'auth-service': { ...shared, ...internal, HOST: '127.0.0.1', PORT: env.AUTH_SERVICE_PORT ?? '0', DATABASE_URL: database },
    'task-service': { ...shared, ...internal, HOST: '127.0.0.1', PORT: env.TASK_SERVICE_PORT ?? '0', DATABASE_URL: database },
    gateway: {
      ...shared,
      PORT: env.PORT ?? '8000',
      HOST: env.HOST ?? 'localhost',
      AUTH_SERVICE_URL: 'http://127.0.0.1:3001',
      TASK_SERVICE_URL: 'http://127.0.0.1:3002',
      INTERNAL_HOST: '127.0.0.1',
      INTERNAL_PORT: env.GATEWAY_INTERNAL_PORT ?? '0',
      ADMIN_HOST: '127.0.0.1',
      ADMIN_PORT: env.GATEWAY_ADMIN_PORT ?? '0',
    },
  }
  const problems: string[] = []
  for (const [name, values] of Object.entries(settings)) {
    const { configSchema } = await import(pathToFileURL(resolve(repoRoot, name, 'dist/config.js')).href)
    try {
      loadConfig(configSchema, values)
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      problems.push(`invalid configuration: ${name}: ${err.message}`)
    }
  }
  if (problems.length > 0) {
    for (const line of problems) process.stderr.write(`[tollgate] ${line}\n`)
    process.exit(1)
  }
}
await checkConfiguration()
const children: Child[] = []
let embedded: EmbeddedPostgres | undefined
let stopping = false

async function shutdown(code: number): Promise<never> {
  if (stopping) return new Promise(() => {}) as never
  stopping = true
  // Front to back: the gateway stops taking traffic before the services go.
  for (const child of [...children].reverse()) await stopProcess(child, 10_000)
  await embedded?.stop()
  process.exit(code)
}
process.on('SIGINT', () => void shutdown(0))
process.on('SIGTERM', () => void shutdown(0))
// A reload of the gateway's file (README, "Reloading the file without a restart"), not a stop.
process.on('SIGHUP', () => children.find((c) => c.name === 'gateway')?.proc.kill('SIGHUP'))

try {
  let databaseUrl = env.DATABASE_URL
  if (databaseUrl) {
    say(`using the PostgreSQL at DATABASE_URL (${databaseUrl.replace(/\/\/[^@]*@/, '//')})`)
  } else {
    const dataDir = resolve(repoRoot, env.DATA_DIR ?? '.data')
    embedded = await startEmbeddedPostgres({
      dataDir,
      port: env.EMBEDDED_DB_PORT ? Number(env.EMBEDDED_DB_PORT) : 0,
    })
    databaseUrl = embedded.url
    say(`embedded PostgreSQL (PGlite) at ${embedded.url}, data in ${dataDir}`)
  }

  const shared = {
    ...env,
    BETTER_AUTH_SECRET: secret,
    LOG_LEVEL: env.LOG_LEVEL ?? 'info',
  }
  const onExit = (name: string) => (code: number | null) => {
    if (!stopping) {
      process.stderr.write(`[tollgate] ${name} exited unexpectedly (code ${code}); stopping\n`)
      void shutdown(1)
    }
  }

  const services = [
    { name: 'auth-service', port: Number(env.AUTH_SERVICE_PORT ?? 0) },
    { name: 'task-service', port: Number(env.TASK_SERVICE_PORT ?? 0) },
  ]
  const urls: Record<string, string> = {}
  // Ports not given are chosen together, so no two processes get the same one, nor one given to another.
  const given = [env.PORT, env.AUTH_SERVICE_PORT, env.TASK_SERVICE_PORT, env.GATEWAY_INTERNAL_PORT, env.GATEWAY_ADMIN_PORT].map(Number).filter((n) => n > 0)
  const chosen = await freePorts(4, '127.0.0.1', given)
  // The gateway's internal listener (service-to-service), on loopback; chosen now so services know it.
  const internalPort = Number(env.GATEWAY_INTERNAL_PORT ?? 0) || chosen[0]!
  const internalUrl = `http://127.0.0.1:${internalPort}`
  // Its admin listener (/ready, /metrics), on loopback too.
  const adminPort = Number(env.GATEWAY_ADMIN_PORT ?? 0) || chosen[1]!
  await Promise.all(
    services.map(async ({ name, port }, i) => {
      const p = port || chosen[2 + i]!
      const child = startProcess(name, resolve(repoRoot, name, 'dist/server.js'), {
        ...shared,
        HOST: '127.0.0.1',
        PORT: String(p),
        DATABASE_URL: databaseUrl,
        GATEWAY_INTERNAL_URL: internalUrl,
      }, onExit(name))
      children.push(child)
      urls[name] = `http://127.0.0.1:${p}`
      await waitForHealth(`${urls[name]}/health`, child, 60_000)
      say(`${name} ready at ${urls[name]}`)
    }),
  )

  const gatewayPort = env.PORT ?? '8000'
  const gatewayHost = env.HOST ?? 'localhost'
  const gateway = startProcess('gateway', resolve(repoRoot, 'gateway/dist/server.js'), {
    ...shared,
    PORT: gatewayPort,
    HOST: gatewayHost,
    AUTH_SERVICE_URL: urls['auth-service'],
    TASK_SERVICE_URL: urls['task-service'],
    INTERNAL_HOST: '127.0.0.1',
    INTERNAL_PORT: String(internalPort),
    ADMIN_HOST: '127.0.0.1',
    ADMIN_PORT: String(adminPort),
  }, onExit('gateway'))
  children.push(gateway)
  // Probed on the internal listener: plain HTTP on loopback even when the public one serves HTTPS.
  await waitForHealth(`${internalUrl}/health`, gateway, 30_000)
  const publicHost = gatewayHost === '127.0.0.1' || gatewayHost === '0.0.0.0' || gatewayHost === '::' ? 'localhost' : gatewayHost
  const scheme = env.TLS_CERT_FILE ? 'https' : 'http'
  say(`gateway admin (/ready, /metrics) at http://127.0.0.1:${adminPort}`)
  say(`Tollgate is up at ${scheme}://${publicHost}:${gatewayPort} (Ctrl-C to stop)`)
} catch (err) {
  process.stderr.write(`[tollgate] failed to start: ${(err as Error).message}\n`)
  await shutdown(1)
}
