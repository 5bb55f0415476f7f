/**
 * Encrypted hops: the gateway serves HTTPS given a certificate; https
 * upstreams are verified (a custom CA allowed, an untrusted certificate is a
 * 502); a DATABASE_URL with sslmode=require works. Certificates are made here.
 */
import t from 'tap'
import Fastify from 'fastify'
import { execFileSync } from 'node:child_process'
import { chownSync, chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import pg from 'pg'
import * as testing from '@tollgate/common/testing'
import { buildGateway, subOf, tempDir, token } from './helper.js'
import { build as buildTasks } from '../../task-service/test/helper.js'

type Tap = Parameters<typeof buildGateway>[0]

/** A CA and a server certificate for 127.0.0.1/localhost, signed by it (openssl). */
function makeCerts(t: Tap, name: string) {
  const dir = tempDir(t, `tollgate-tls-${name}-`)
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', `/CN=Tollgate test CA ${name}`)
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1')
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'san.ext')
  return { dir, ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') }
}

async function httpsUpstream(t: Tap, certs: { cert: string; key: string }) {
  const app = Fastify({ https: { cert: readFileSync(certs.cert), key: readFileSync(certs.key) } })
  app.get('/internal/revocations', async () => ({ cursor: 0, reset: false, more: false, revoked: [] }))
  app.get('/openapi.json', async () => ({ openapi: '3.0.3', info: { title: 'x', version: '0' }, paths: {} }))
  app.get('/api/:user/tasks', async () => [{ over: 'tls' }])
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return url
}

t.test('https upstreams are verified: trusted CA works, an unknown one is a 502', async (t) => {
  const certs = makeCerts(t, 'upstream')
  const url = await httpsUpstream(t, certs)
  t.match(url, /^https:/)
  const jwt = await token()
  const path = `/api/${subOf(jwt)}/tasks`
  const trusted = await buildGateway(t, { TASK_SERVICE_URL: url, AUTH_SERVICE_URL: url, UPSTREAM_CA_FILE: certs.ca })
  const ok = await trusted.inject({ url: path, headers: { authorization: `Bearer ${jwt}` } })
  t.equal(ok.statusCode, 200)
  t.same(ok.json(), [{ over: 'tls' }])

  const untrusting = await buildGateway(t, { TASK_SERVICE_URL: url })
  const refused = await untrusting.inject({ url: path, headers: { authorization: `Bearer ${jwt}` } })
  t.equal(refused.statusCode, 502, 'a self-signed upstream outside the trust store is refused')
  t.equal(refused.json().error_code, 'BAD_GATEWAY')
})

t.test('the gateway serves HTTPS when given a certificate and key', async (t) => {
  const certs = makeCerts(t, 'gateway')
  const gw = await buildGateway(t, { TLS_CERT_FILE: certs.cert, TLS_KEY_FILE: certs.key })
  await gw.listen({ port: 0, host: '127.0.0.1' })
  const port = (gw.server.address() as { port: number }).port
  const dispatcher = new Agent({ connect: { ca: readFileSync(certs.ca) } })
  t.teardown(() => dispatcher.close())
  const res = await request(`https://127.0.0.1:${port}/health`, { dispatcher })
  t.equal(res.statusCode, 200)
  t.same(await res.body.json(), { status: 'ok' })
  const plain = await request(`http://127.0.0.1:${port}/health`).then((r) => r.statusCode, () => 'refused')
  t.not(plain, 200, 'no plain HTTP on the TLS port')
})

t.test('TLS settings are checked at start', async (t) => {
  const { tlsOptions } = await import('../src/config.js')
  t.throws(() => tlsOptions({ TLS_CERT_FILE: '/x.pem', TLS_KEY_FILE: undefined }), /go together/)
  t.throws(() => tlsOptions({ TLS_CERT_FILE: '/nonexistent.pem', TLS_KEY_FILE: '/nonexistent.key' }), /TLS_CERT_FILE cannot be read/)
})

t.test('DATABASE_URL with sslmode=require (as with Neon) works', async (t) => {
  let server: testing.ThrowawayPostgres
  const certs = makeCerts(t, 'postgres')
  // The server reads its key as the postgres user, and refuses a key others can read.
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
    for (const f of [certs.dir, certs.cert, certs.key]) chownSync(f, uid, gid)
    chmodSync(certs.key, 0o600)
    server = await testing.startThrowawayPostgres({ settings: { ssl: 'on', ssl_cert_file: certs.cert, ssl_key_file: certs.key } })
  } catch (err) {
    t.skip(`no throwaway PostgreSQL with TLS here: ${(err as Error).message}`, () => {})
    return
  }
  t.teardown(() => server.destroy())
  const url = `${server.url}?sslmode=require&sslrootcert=${encodeURIComponent(certs.ca)}`
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  const { rows } = await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
  await client.end()
  t.same(rows, [{ ssl: true }], 'the connection is encrypted')
  const tasks = await buildTasks(t, { DATABASE_URL: url }, false)
  const { runMigrations } = await import('../../task-service/src/migrations.js')
  await runMigrations(url)
  t.equal((await tasks.inject({ url: '/ready' })).statusCode, 200, 'the service runs on it')
})
