/**
 * F-04 / S-50, one suite for every service with a database: against a
 * PostgreSQL the test owns and stops, the service process keeps running
 * through the outage, answers 503 SERVICE_UNAVAILABLE quickly, reports not
 * ready, and recovers by itself when the database is back; writes
 * acknowledged while the database is killed are never lost.
 */
import pg from 'pg'
import type { ServiceProcess } from './processes.js'
import { loggedStatuses } from './processes.js'
import type { SignedResponse } from './signed-fetch.js'
import type { ThrowawayPostgres } from './throwaway-postgres.js'
import { waitUntil } from './timing.js'

/** The parts of a tap test the cases use. */
export interface SuiteTest {
  equal(found: unknown, wanted: unknown, ...message: [] | [string]): unknown
  same(found: unknown, wanted: unknown, ...message: [] | [string]): unknown
  match(found: unknown, pattern: unknown, ...message: [] | [string]): unknown
  notMatch(found: unknown, pattern: unknown, ...message: [] | [string]): unknown
  ok(value: unknown, ...message: [] | [string]): unknown
  comment(message: string): unknown
  teardown(fn: () => unknown): unknown
}

export interface RestartRoute {
  what: string
  /** The status when the database answers. */
  ok: number
  go(): Promise<SignedResponse>
}

export interface DatabaseRestartOptions {
  cluster: ThrowawayPostgres
  svc: ServiceProcess
  /** The service's application_name in pg_stat_activity. */
  application: string
  /** A table the write below inserts into (locked to hold a statement in flight). */
  table: string
  /** GET a path outside the API (/ready, /health). */
  probe(path: string): Promise<SignedResponse>
  /** Routes that each reach the database; the first is the recovery probe. */
  routes: RestartRoute[]
  /** More routes, tried only while the database is down (e.g. a delete). */
  routesWhileDown?: RestartRoute[]
  /** Requests at once while the database is down (more than the pool holds). */
  crowd: number
  /** One write: its label names the row, so the ledger can look it up. */
  write(label: string, timeoutMs?: number): Promise<SignedResponse>
  /** The ids of the rows written under these labels, by label. */
  stored(admin: pg.Client, labels: string[]): Promise<Map<string, string>>
  /** The ledger: `writes` writes from `workers` workers, PostgreSQL killed and restarted after `restartAfter`. */
  ledger: { title: string; writes: number; workers: number; restartAfter: number; pauseMs: number; after: number }
  /** What the recovery probe does, for messages ("listing"). */
  recovering: string
}

const UNAVAILABLE = { detail: 'Database unavailable', error_code: 'SERVICE_UNAVAILABLE', status_code: 503 }

export interface SuiteCase {
  name: string
  run(t: SuiteTest): Promise<void>
}

/** The cases, in order (each depends on the state the one before left): `for (const c of cases) t.test(c.name, (t) => c.run(t))`. */
export function databaseRestartCases(o: DatabaseRestartOptions): SuiteCase[] {
  const cases: SuiteCase[] = []
  const t = { test: (name: string, run: (t: SuiteTest) => Promise<void>) => void cases.push({ name, run }) }
  const { cluster, svc, probe, routes } = o
  const pid = svc.child.pid
  const admin = async () => {
    const client = new pg.Client({ connectionString: cluster.url })
    await client.connect()
    return client
  }
  const allOk = async (t: SuiteTest, suffix = '') => {
    for (const r of routes) t.equal((await r.go()).status, r.ok, `${r.what}${suffix}`)
  }

  t.test('baseline: migrated, ready, serving', async (t) => {
    t.equal((await probe('/ready')).status, 200)
    await allOk(t)
  })

  t.test('connections killed under an idle pool: the error event is handled, the next request works', async (t) => {
    const client = await admin()
    const { rowCount } = await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [o.application])
    await client.end()
    t.ok((rowCount ?? 0) >= 1, `terminated ${rowCount} idle pool connection(s)`)
    await waitUntil(async () => svc.stdout().includes('"msg":"database connection lost"'), { what: 'pool error logged' })
    t.ok(svc.alive(), 'process still running')
    await allOk(t, ' on a fresh connection')
  })

  t.test('database stopped: 503 with Retry-After within 2 s, not ready, still alive', async (t) => {
    await cluster.stop('fast')
    for (const r of [...routes, ...(o.routesWhileDown ?? [])]) {
      const res = await r.go()
      t.equal(res.status, 503, `${r.what}: 503`)
      t.same(res.json, UNAVAILABLE, `${r.what}: envelope`)
      t.equal(res.headers.get('retry-after'), '2', `${r.what}: Retry-After`)
      t.ok(res.ms < 3000, `${r.what}: answered in ${Math.round(res.ms)} ms`)
    }
    // A crowd at once: nobody waits behind a dead pool.
    const crowd = await Promise.all(Array.from({ length: o.crowd }, (_, i) => routes[i % routes.length]!.go()))
    t.same([...new Set(crowd.map((r) => r.status))], [503], `${o.crowd} concurrent requests: all 503`)
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
    const first = routes[0]!
    const recoveredMs = await waitUntil(async () => (await probe('/ready')).status === 200 && (await first.go()).status === first.ok, {
      timeoutMs: 10_000,
      intervalMs: 25,
      what: `ready and ${o.recovering}`,
    })
    t.comment(`recovered ${recoveredMs} ms after PostgreSQL accepted connections`)
    t.ok(recoveredMs < 10_000)
    await allOk(t)
    t.equal(svc.child.pid, pid, 'no restart: same process')
  })

  t.test('a query in flight when PostgreSQL dies: 503, not 500, not a hang', async (t) => {
    // Hold the table so the service's statement is sent and waiting when the server goes.
    const client = new pg.Client({ connectionString: cluster.url })
    client.on('error', () => {}) // it dies with the server too
    await client.connect()
    await client.query('BEGIN')
    await client.query(`LOCK TABLE ${o.table} IN ACCESS EXCLUSIVE MODE`)
    const pending = o.write('in flight')
    await waitUntil(
      async () =>
        (await client.query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", [o.application])).rowCount === 1,
      { what: 'the service statement waiting on the lock' },
    )
    const killedAt = performance.now()
    await cluster.stop('immediate')
    const res = await pending
    const afterKillMs = performance.now() - killedAt
    await client.end().catch(() => {})
    t.equal(res.status, 503, 'the interrupted request is a 503')
    t.same(res.json, UNAVAILABLE)
    t.ok(afterKillMs < 3000, `answered ${Math.round(afterKillMs)} ms after the kill`)
    t.ok(svc.alive(), 'process still running')
    await cluster.start()
    await waitUntil(async () => (await o.write('in flight')).status === 201, { timeoutMs: 10_000, what: 'writes again' })
  })

  t.test(o.ledger.title, async (t) => {
    const { writes, workers, restartAfter, pauseMs } = o.ledger
    const ledger: Array<{ label: string; status: number | 'hang' | 'network'; id?: string; startedAt: number }> = []
    let completed = 0
    let next = 0
    let restart: Promise<unknown> | undefined
    let readyAgainAt = Infinity
    const worker = async () => {
      while (next < writes) {
        const label = `ledger-${next++}-${Math.random().toString(36).slice(2)}`
        const startedAt = Date.now()
        try {
          const res = await o.write(label, 10_000)
          ledger.push({ label, status: res.status, startedAt, ...(res.status === 201 ? { id: (res.json as { id: string }).id } : {}) })
        } catch (err) {
          ledger.push({ label, startedAt, status: (err as Error).name === 'TimeoutError' ? 'hang' : 'network' })
        }
        // A crash in the middle of the load: connections die mid-query.
        if (++completed === restartAfter) {
          restart = cluster.restart('immediate').then(
            () => void (readyAgainAt = Date.now()),
            (err: unknown) => err,
          )
        }
        await new Promise((r) => setTimeout(r, pauseMs))
      }
    }
    await Promise.all(Array.from({ length: workers }, worker))
    t.equal(await restart, undefined, 'PostgreSQL was killed and restarted mid-run')

    const acked = ledger.filter((e) => e.status === 201)
    const failed = ledger.filter((e) => e.status !== 201)
    t.equal(ledger.length, writes, 'every request answered')
    t.same(
      failed.filter((e) => e.status !== 503),
      [],
      'every failure is a 503: no 500, no hang, no dropped connection',
    )
    const ackedAfter = acked.filter((e) => e.startedAt >= readyAgainAt).length
    t.comment(`${acked.length} acknowledged (${ackedAfter} after the restart), ${failed.length} refused with 503`)
    t.ok(acked.length > 0)

    const client = await admin()
    t.teardown(() => client.end())
    const stored = await o.stored(
      client,
      ledger.map((e) => e.label),
    )
    t.same(
      acked.filter((e) => stored.get(e.label) !== e.id),
      [],
      'every acknowledged write is in the database',
    )
    t.comment(`unknown outcome (503 but stored): ${failed.filter((e) => stored.has(e.label)).length}`)

    const after = await Promise.all(Array.from({ length: o.ledger.after }, (_, i) => o.write(`after-${i}`)))
    t.same([...new Set(after.map((r) => r.status))], [201], 'writes succeed again after the restart')
  })

  t.test('through it all: one process, and it never answered 500', async (t) => {
    t.ok(svc.alive(), 'alive')
    const statuses = loggedStatuses(svc.stdout())
    const minimum = o.ledger.writes
    t.ok(statuses.length > minimum, `${statuses.length} responses logged`)
    t.same(
      statuses.filter((s) => s >= 500 && s !== 503),
      [],
      'no 5xx but 503',
    )
    t.notMatch(svc.stderr(), /Error|uncaught|unhandled/i, 'nothing on stderr')
    t.equal(await svc.stop(), 0, 'exits 0 on SIGTERM')
  })
  return cases
}
