/**
 * F-04 / S-50 against a PostgreSQL this test owns and stops: the service
 * process keeps running through the outage, answers 503 SERVICE_UNAVAILABLE
 * quickly, reports not ready, and recovers by itself when the database is
 * back. Task creates acknowledged while the database is killed are never lost.
 */
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t from 'tap'
import * as testing from '@tollgate/common/testing'
import { KEY, newUserId, SECRET } from './helper.js'

const { loggedStatuses, signedFetch, startServiceProcess, throwawayPostgresOrSkip, waitUntil } = testing
const serverTs = fileURLToPath(new URL('../src/server.ts', import.meta.url))
const UNAVAILABLE = { detail: 'Database unavailable', error_code: 'SERVICE_UNAVAILABLE', status_code: 503 }
type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

const cluster = await throwawayPostgresOrSkip(t)
if (cluster) {
  const svc = await startServiceProcess({
    entry: serverTs,
    env: {
      DATABASE_URL: cluster.url,
      BETTER_AUTH_SECRET: SECRET,
      MIGRATE_ON_START: 'true',
      // The defaults, stated: a request waits at most 2 s for a connection.
      DB_CONNECT_TIMEOUT_MS: '2000',
    },
  })
  t.teardown(() => svc.stop())
  const pid = svc.child.pid

  const userId = newUserId()
  const base = `/api/${userId}/tasks`
  const call = (method: Method, path: string, body?: unknown, timeoutMs?: number) =>
    signedFetch(svc.url, KEY, {
      method,
      path: `${base}${path}`,
      identity: { caller: 'user', userId },
      body,
      ...(timeoutMs ? { timeoutMs } : {}),
    })
  const probe = (path: string) => signedFetch(svc.url, KEY, { method: 'GET', path, identity: null })

  const first = await call('POST', '', { title: 'before the outage' })
  const taskId = (first.json as { id: string }).id
  // Every route: each one reaches the database.
  const routes: Array<{ what: string; ok: number; go: () => ReturnType<typeof call> }> = [
    { what: 'list', ok: 200, go: () => call('GET', '') },
    { what: 'create', ok: 201, go: () => call('POST', '', { title: 'during' }) },
    { what: 'get', ok: 200, go: () => call('GET', `/${taskId}`) },
    { what: 'update', ok: 200, go: () => call('PUT', `/${taskId}`, { title: 'updated' }) },
    { what: 'toggle', ok: 200, go: () => call('PATCH', `/${taskId}/complete`) },
  ]

  t.test('baseline: migrated, ready, serving', async (t) => {
    t.equal(first.status, 201)
    t.equal((await probe('/ready')).status, 200)
    for (const r of routes) t.equal((await r.go()).status, r.ok, r.what)
  })

  t.test('connections killed under an idle pool: the error event is handled, the next request works', async (t) => {
    const admin = new pg.Client({ connectionString: cluster.url })
    await admin.connect()
    const { rowCount } = await admin.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'task-service'",
    )
    await admin.end()
    t.ok((rowCount ?? 0) >= 1, `terminated ${rowCount} idle pool connection(s)`)
    await waitUntil(async () => svc.stdout().includes('"msg":"database connection lost"'), { what: 'pool error logged' })
    t.ok(svc.alive(), 'process still running')
    for (const r of routes) t.equal((await r.go()).status, r.ok, `${r.what} on a fresh connection`)
  })

  t.test('database stopped: 503 with Retry-After within 2 s, not ready, still alive', async (t) => {
    await cluster.stop('fast')
    const all = [...routes, { what: 'delete', ok: 204, go: () => call('DELETE', `/${taskId}`) }]
    for (const r of all) {
      const res = await r.go()
      t.equal(res.status, 503, `${r.what}: 503`)
      t.same(res.json, UNAVAILABLE, `${r.what}: envelope`)
      t.equal(res.headers.get('retry-after'), '2', `${r.what}: Retry-After`)
      t.ok(res.ms < 3000, `${r.what}: answered in ${Math.round(res.ms)} ms`)
    }
    // A crowd larger than the pool, at once: nobody waits behind a dead pool.
    const crowd = await Promise.all(Array.from({ length: 25 }, (_, i) => routes[i % routes.length]!.go()))
    t.same([...new Set(crowd.map((r) => r.status))], [503], '25 concurrent requests: all 503')
    const slowest = Math.max(...crowd.map((r) => r.ms))
    t.ok(slowest < 3000, `slowest of the crowd ${Math.round(slowest)} ms`)

    const ready = await probe('/ready')
    t.equal(ready.status, 503, '/ready is 503')
    t.match(ready.json, { error_code: 'SERVICE_UNAVAILABLE', checks: { database: 'unavailable' } })
    t.ok(ready.ms < 3000, `/ready answered in ${Math.round(ready.ms)} ms`)
    t.equal((await probe('/health')).status, 200, '/health: alive')
    t.ok(svc.alive(), 'process still running')
  })

  t.test('database back: the same process recovers by itself', async (t) => {
    await cluster.start()
    const recoveredMs = await waitUntil(
      async () => (await probe('/ready')).status === 200 && (await routes[0]!.go()).status === 200,
      { timeoutMs: 10_000, intervalMs: 25, what: 'ready and listing' },
    )
    t.comment(`recovered ${recoveredMs} ms after PostgreSQL accepted connections`)
    t.ok(recoveredMs < 10_000)
    for (const r of routes) t.equal((await r.go()).status, r.ok, r.what)
    t.equal(svc.child.pid, pid, 'no restart: same process')
  })

  t.test('a query in flight when PostgreSQL dies: 503, not 500, not a hang', async (t) => {
    // Hold the table so the service's statement is sent and waiting when the server goes.
    const admin = new pg.Client({ connectionString: cluster.url })
    admin.on('error', () => {}) // it dies with the server too
    await admin.connect()
    await admin.query('BEGIN')
    await admin.query('LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE')
    const pending = call('POST', '', { title: 'in flight' })
    await waitUntil(
      async () =>
        (
          await admin.query(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'task-service' AND wait_event_type = 'Lock'",
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
    await waitUntil(async () => (await call('POST', '', { title: 'in flight' })).status === 201, { timeoutMs: 10_000, what: 'writes again' })
  })

  t.test('200 creates while PostgreSQL is killed and restarted: every 201 is stored, every failure a 503', async (t) => {
    const N = 200
    const WORKERS = 8
    const ledger: Array<{ title: string; status: number | 'hang' | 'network'; id?: string; startedAt: number }> = []
    let completed = 0
    let next = 0
    let restart: Promise<unknown> | undefined
    let readyAgainAt = Infinity
    const worker = async () => {
      while (next < N) {
        const title = `ledger ${next++} ${Math.random().toString(36).slice(2)}`
        const startedAt = Date.now()
        try {
          const res = await call('POST', '', { title }, 10_000)
          ledger.push({ title, status: res.status, startedAt, ...(res.status === 201 ? { id: (res.json as { id: string }).id } : {}) })
        } catch (err) {
          ledger.push({ title, startedAt, status: (err as Error).name === 'TimeoutError' ? 'hang' : 'network' })
        }
        // A crash in the middle of the load: connections die mid-query.
        if (++completed === 60) {
          restart = cluster.restart('immediate').then(
            () => void (readyAgainAt = Date.now()),
            (err: unknown) => err,
          )
        }
        await new Promise((r) => setTimeout(r, 25))
      }
    }
    await Promise.all(Array.from({ length: WORKERS }, worker))
    t.equal(await restart, undefined, 'PostgreSQL was killed and restarted mid-run')

    const acked = ledger.filter((e) => e.status === 201)
    const failed = ledger.filter((e) => e.status !== 201)
    t.equal(ledger.length, N, 'every request answered')
    t.same(failed.filter((e) => e.status !== 503), [], 'every failure is a 503: no 500, no hang, no dropped connection')
    const ackedAfter = acked.filter((e) => e.startedAt >= readyAgainAt).length
    t.comment(`${acked.length} acknowledged (${ackedAfter} after the restart), ${failed.length} refused with 503`)
    t.ok(acked.length > 0)

    const admin = new pg.Client({ connectionString: cluster.url })
    await admin.connect()
    t.teardown(() => admin.end())
    const { rows } = await admin.query<{ id: string; title: string }>(
      "SELECT id, title FROM tasks WHERE user_id = $1 AND title LIKE 'ledger %'",
      [userId],
    )
    const stored = new Map(rows.map((r) => [r.title, r.id]))
    t.same(acked.filter((e) => stored.get(e.title) !== e.id), [], 'every acknowledged create is in the database')
    t.comment(`unknown outcome (503 but stored): ${failed.filter((e) => stored.has(e.title)).length}`)

    const after = await Promise.all(Array.from({ length: 10 }, () => call('POST', '', { title: 'after' })))
    t.same([...new Set(after.map((r) => r.status))], [201], 'writes succeed again after the restart')
  })

  t.test('through it all: one process, and it never answered 500', async (t) => {
    t.ok(svc.alive(), 'alive')
    const statuses = loggedStatuses(svc.stdout())
    t.ok(statuses.length > 200, `${statuses.length} responses logged`)
    t.same(statuses.filter((s) => s >= 500 && s !== 503), [], 'no 5xx but 503')
    t.notMatch(svc.stderr(), /Error|uncaught|unhandled/i, 'nothing on stderr')
    t.equal(await svc.stop(), 0, 'exits 0 on SIGTERM')
  })
}
