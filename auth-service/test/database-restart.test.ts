/**
 * F-04 / S-50 against a PostgreSQL this test owns and stops: the service
 * process keeps running through the outage, answers 503 SERVICE_UNAVAILABLE
 * quickly, reports not ready, and recovers by itself when the database is
 * back. Writes acknowledged while the database is killed are never lost.
 */
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t from 'tap'
import { type Identity } from '@tollgate/common'
import * as testing from '@tollgate/common/testing'
import { anonymous, asUser, PASSWORD, PROOF_KEY, SECRET, uniqueEmail } from './helper.js'

const { loggedStatuses, signedFetch, startServiceProcess, throwawayPostgresOrSkip, waitUntil } = testing
const serverTs = fileURLToPath(new URL('../src/server.ts', import.meta.url))
const UNAVAILABLE = { detail: 'Database unavailable', error_code: 'SERVICE_UNAVAILABLE', status_code: 503 }

const cluster = await throwawayPostgresOrSkip(t)
if (cluster) {
  const svc = await startServiceProcess({
    entry: serverTs,
    env: {
      DATABASE_URL: cluster.url,
      BETTER_AUTH_SECRET: SECRET,
      BCRYPT_COST: '10',
      MIGRATE_ON_START: 'true',
      // The defaults, stated: a request waits at most 2 s for a connection.
      DB_CONNECT_TIMEOUT_MS: '2000',
    },
  })
  t.teardown(() => svc.stop())
  const pid = svc.child.pid

  const call = (method: 'GET' | 'POST', path: string, identity: Identity | null, body?: unknown) =>
    signedFetch(svc.url, PROOF_KEY, { method, path, identity, body })
  const signupAs = (email: string) => call('POST', '/api/auth/signup', anonymous, { email, password: PASSWORD })

  const account = await signupAs(uniqueEmail('restart'))
  const { id: userId, email } = account.json as { id: string; email: string }
  // One of each kind of database work: a read before bcrypt, a write after it, a read by id.
  const routes = [
    { what: 'signin', go: () => call('POST', '/api/auth/signin', anonymous, { email, password: PASSWORD }) },
    { what: 'signup', go: () => signupAs(uniqueEmail('down')) },
    { what: 'me', go: () => call('GET', '/api/auth/me', asUser(userId)) },
  ]

  t.test('baseline: migrated, ready, serving', async (t) => {
    t.equal(account.status, 201)
    t.equal((await call('GET', '/ready', null)).status, 200)
    for (const r of routes) t.equal((await r.go()).status, r.what === 'signup' ? 201 : 200, r.what)
  })

  t.test('connections killed under an idle pool: the error event is handled, the next request works', async (t) => {
    const admin = new pg.Client({ connectionString: cluster.url })
    await admin.connect()
    const { rowCount } = await admin.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'auth-service'",
    )
    await admin.end()
    t.ok((rowCount ?? 0) >= 1, `terminated ${rowCount} idle pool connection(s)`)
    await waitUntil(async () => svc.stdout().includes('"msg":"database connection lost"'), { what: 'pool error logged' })
    t.ok(svc.alive(), 'process still running')
    for (const r of routes) t.equal((await r.go()).status, r.what === 'signup' ? 201 : 200, `${r.what} on a fresh connection`)
  })

  t.test('database stopped: 503 with Retry-After within 2 s, not ready, still alive', async (t) => {
    await cluster.stop('fast')
    for (let round = 0; round < 2; round++) {
      for (const r of routes) {
        const res = await r.go()
        t.equal(res.status, 503, `${r.what}: 503`)
        t.same(res.json, UNAVAILABLE, `${r.what}: envelope`)
        t.equal(res.headers.get('retry-after'), '2', `${r.what}: Retry-After`)
        t.ok(res.ms < 3000, `${r.what}: answered in ${Math.round(res.ms)} ms`)
      }
    }
    // A crowd at once: nobody waits behind a dead pool.
    const crowd = await Promise.all(Array.from({ length: 12 }, (_, i) => routes[i % routes.length]!.go()))
    t.same([...new Set(crowd.map((r) => r.status))], [503], '12 concurrent requests: all 503')
    const slowest = Math.max(...crowd.map((r) => r.ms))
    t.ok(slowest < 3000, `slowest of the crowd ${Math.round(slowest)} ms`)

    const ready = await call('GET', '/ready', null)
    t.equal(ready.status, 503, '/ready is 503')
    t.match(ready.json, { error_code: 'SERVICE_UNAVAILABLE', checks: { database: 'unavailable' } })
    t.ok(ready.ms < 3000, `/ready answered in ${Math.round(ready.ms)} ms`)
    t.equal((await call('GET', '/health', null)).status, 200, '/health: alive')
    t.ok(svc.alive(), 'process still running')
  })

  t.test('database back: the same process recovers by itself', async (t) => {
    await cluster.start()
    const recoveredMs = await waitUntil(
      async () => (await call('GET', '/ready', null)).status === 200 && (await routes[0]!.go()).status === 200,
      { timeoutMs: 10_000, intervalMs: 25, what: 'ready and signing in' },
    )
    t.comment(`recovered ${recoveredMs} ms after PostgreSQL accepted connections`)
    t.ok(recoveredMs < 10_000)
    for (const r of routes) t.equal((await r.go()).status, r.what === 'signup' ? 201 : 200, r.what)
    t.equal(svc.child.pid, pid, 'no restart: same process')
  })

  t.test('a query in flight when PostgreSQL dies: 503, not 500, not a hang', async (t) => {
    // Hold the table so the service's statement is sent and waiting when the server goes.
    const admin = new pg.Client({ connectionString: cluster.url })
    admin.on('error', () => {}) // it dies with the server too
    await admin.connect()
    await admin.query('BEGIN')
    await admin.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE')
    const pending = signupAs(uniqueEmail('in-flight'))
    await waitUntil(
      async () =>
        (
          await admin.query(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'auth-service' AND wait_event_type = 'Lock'",
          )
        ).rowCount === 1,
      { what: 'the service statement waiting on the lock' },
    )
    const killedAt = performance.now()
    await cluster.stop('immediate')
    const res = await pending
    const afterKillMs = performance.now() - killedAt
    await admin.end().catch(() => {})
    t.equal(res.status, 503, 'the interrupted request is a 503')
    t.same(res.json, UNAVAILABLE)
    t.ok(afterKillMs < 3000, `answered ${Math.round(afterKillMs)} ms after the kill`)
    t.ok(svc.alive(), 'process still running')
    await cluster.start()
    await waitUntil(async () => (await signupAs(uniqueEmail('in-flight'))).status === 201, { timeoutMs: 10_000, what: 'writes again' })
  })

  t.test('sign-ups while PostgreSQL is killed and restarted: every 201 is stored, every failure a 503', async (t) => {
    const N = 60
    const WORKERS = 6
    const ledger: Array<{ email: string; status: number | 'hang' | 'network'; id?: string }> = []
    let completed = 0
    let next = 0
    let restart: Promise<unknown> | undefined
    const worker = async () => {
      while (next < N) {
        const email = uniqueEmail(`ledger-${next++}`)
        try {
          const res = await signedFetch(svc.url, PROOF_KEY, {
            method: 'POST',
            path: '/api/auth/signup',
            identity: anonymous,
            body: { email, password: PASSWORD },
            timeoutMs: 10_000,
          })
          ledger.push({ email, status: res.status, ...(res.status === 201 ? { id: (res.json as { id: string }).id } : {}) })
        } catch (err) {
          ledger.push({ email, status: (err as Error).name === 'TimeoutError' ? 'hang' : 'network' })
        }
        // A crash in the middle of the load: connections die mid-query.
        if (++completed === 15) restart = cluster.restart('immediate').catch((err: unknown) => err)
        await new Promise((r) => setTimeout(r, 30))
      }
    }
    await Promise.all(Array.from({ length: WORKERS }, worker))
    t.equal(await restart, undefined, 'PostgreSQL was killed and restarted mid-run')

    const acked = ledger.filter((e) => e.status === 201)
    const failed = ledger.filter((e) => e.status !== 201)
    t.same(failed.filter((e) => e.status !== 503), [], 'every failure is a 503: no 500, no hang, no dropped connection')
    t.ok(acked.length > 0, `${acked.length} acknowledged, ${failed.length} refused with 503`)

    const admin = new pg.Client({ connectionString: cluster.url })
    await admin.connect()
    t.teardown(() => admin.end())
    const { rows } = await admin.query<{ id: string; email: string }>('SELECT id, email FROM users WHERE email = ANY($1)', [
      ledger.map((e) => e.email),
    ])
    const stored = new Map(rows.map((r) => [r.email, r.id]))
    t.same(acked.filter((e) => stored.get(e.email) !== e.id), [], 'every acknowledged sign-up is in the database')
    t.comment(`unknown outcome (503 but stored): ${failed.filter((e) => stored.has(e.email)).length}`)

    const after = await Promise.all(Array.from({ length: 5 }, () => signupAs(uniqueEmail('after'))))
    t.same(after.map((r) => r.status), [201, 201, 201, 201, 201], 'writes succeed again after the restart')
  })

  t.test('through it all: one process, and it never answered 500', async (t) => {
    t.ok(svc.alive(), 'alive')
    const statuses = loggedStatuses(svc.stdout())
    t.ok(statuses.length > 50, `${statuses.length} responses logged`)
    t.same(statuses.filter((s) => s >= 500 && s !== 503), [], 'no 5xx but 503')
    t.notMatch(svc.stderr(), /Error|uncaught|unhandled/i, 'nothing on stderr')
    t.equal(await svc.stop(), 0, 'exits 0 on SIGTERM')
  })
}
