/**
 * Start-up, as a process (dist/server.js): a setting that needs more than the
 * environment's schema (the gateway's file, JWT_TRUSTED_ISSUERS, the TLS
 * files) is refused before anything listens, in one message naming what is
 * wrong, with exit code 1; a failure that is no configuration mistake (the
 * port taken) is not dressed up as one, and still stops the process.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SECRET, tempDir } from './helper.js'
import { freePort } from './redis-server.js'

const server = fileURLToPath(new URL('../dist/server.js', import.meta.url))
const dir = tempDir(t, 'tollgate-startup-')

interface Exit {
  code: number | null
  stdout: string
  stderr: string
}

/** The gateway process with these settings on free loopback ports; resolves when it exits (a liveness bound kills it). */
async function startGateway(env: Record<string, string>, ports: { port?: number } = {}): Promise<Exit> {
  const base = {
    PATH: process.env.PATH ?? '',
    BETTER_AUTH_SECRET: SECRET,
    LOG_LEVEL: 'silent',
    // Nothing answers here: the refusals come before any upstream is asked.
    AUTH_SERVICE_URL: 'http://127.0.0.1:1',
    TASK_SERVICE_URL: 'http://127.0.0.1:1',
    HOST: '127.0.0.1',
    PORT: String(ports.port ?? (await freePort())),
    INTERNAL_HOST: '127.0.0.1',
    INTERNAL_PORT: String(await freePort()),
    ADMIN_HOST: '127.0.0.1',
    ADMIN_PORT: String(await freePort()),
  }
  return new Promise((resolve) => {
    execFile(process.execPath, [server], { env: { ...base, ...env }, timeout: 90_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr })
    })
  })
}

t.test('a bad gateway file: exit 1, the problem with file and line', async (t) => {
  const file = join(dir, 'bad.yaml')
  writeFileSync(
    file,
    `issuers:
  self: { issuer: tollgate, audience: tollgate-api, algorithms: [HS256], secret: "\${BETTER_AUTH_SECRET}" }
upstreams:
  auth: { targets: "http://127.0.0.1:1" }
routes:
  - { methods: [GET], path: /notes, upstream: nowhere, access: anonymous }
`,
  )
  const exit = await startGateway({ GATEWAY_CONFIG: file })
  t.equal(exit.code, 1)
  t.equal(exit.stderr, `gateway: invalid configuration:\n${file}:6: routes.0.upstream: no upstream named "nowhere"\n`)

  const missing = join(dir, 'absent.yaml')
  const gone = await startGateway({ GATEWAY_CONFIG: missing })
  t.equal(gone.code, 1, 'a file that is not there')
  t.equal(gone.stderr, `gateway: invalid configuration:\n${missing}: cannot be read\n`)
})

t.test('JWT_TRUSTED_ISSUERS that does not hold: exit 1, naming the variable and the entry', async (t) => {
  const exit = await startGateway({
    JWT_TRUSTED_ISSUERS: JSON.stringify([{ issuer: 'https://idp.example', audience: 'api', jwks_url: 'https://idp.example/jwks', algorithms: ['HS256'] }]),
  })
  t.equal(exit.code, 1)
  t.equal(exit.stderr, 'gateway: invalid configuration:\nJWT_TRUSTED_ISSUERS [0].algorithms must list asymmetric JWS algorithms, e.g. ["EdDSA"]\n')
})

t.test('TLS files: both or neither, and readable', async (t) => {
  const cert = join(dir, 'cert.pem')
  writeFileSync(cert, 'not read: the key is missing\n')
  const alone = await startGateway({ TLS_CERT_FILE: cert })
  t.equal(alone.code, 1)
  t.equal(alone.stderr, 'gateway: invalid configuration:\nTLS_CERT_FILE and TLS_KEY_FILE go together\n')

  const key = join(dir, 'no-such-key.pem')
  const unreadable = await startGateway({ TLS_CERT_FILE: cert, TLS_KEY_FILE: key })
  t.equal(unreadable.code, 1)
  t.equal(unreadable.stderr, `gateway: invalid configuration:\nTLS_KEY_FILE cannot be read: ${key}\n`)
})

t.test('the public port taken by another process: the gateway stops, and does not call it a configuration mistake', async (t) => {
  const holder: Server = createServer()
  await new Promise<void>((resolve) => holder.listen({ host: '127.0.0.1', port: 0 }, resolve))
  t.teardown(() => new Promise<void>((resolve) => holder.close(() => resolve())))
  const port = (holder.address() as { port: number }).port
  const exit = await startGateway({}, { port })
  t.not(exit.code, 0, 'it exits non-zero')
  t.not(exit.code, null, 'by itself, not killed at the liveness bound')
  t.match(exit.stderr, /EADDRINUSE/)
  t.notMatch(exit.stderr, /invalid configuration/)
})
