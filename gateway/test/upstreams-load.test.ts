/**
 * Issue 15 item 4 under load: three real task-service processes behind one
 * gateway (TASK_SERVICE_URL lists all three), a bounded loop of GETs and
 * POSTs over 127.0.0.1; one task-service is killed (SIGKILL) mid-load and
 * later restarted on the same port. Zero GETs fail (they are retried on
 * another target), no POST is executed twice (every POST has a unique title;
 * the rows are counted), and the restarted process takes traffic again by
 * its health checks, long before its 30 s ejection would have ended.
 */
import t from 'tap'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { Pool } from 'undici'
import * as testing from '@tollgate/common/testing'
import { buildApp } from '../src/app.js'
import { gatewayConfig, startUpstream, token, subOf } from './helper.js'

const { freshDatabaseOrSkip, loggedStatuses, startServiceProcess } = testing
type ServiceProcess = Awaited<ReturnType<typeof startServiceProcess>>
const serverJs = fileURLToPath(new URL('../../task-service/dist/server.js', import.meta.url))
const SECRET = gatewayConfig().BETTER_AUTH_SECRET
const HEALTH_INTERVAL_MS = 300

const db = await freshDatabaseOrSkip(t, process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres')
if (db) {
  const start = (env: Record<string, string> = {}) =>
    startServiceProcess({ entry: serverJs, env: { DATABASE_URL: db.url, BETTER_AUTH_SECRET: SECRET, MIGRATE_ON_START: 'true', ...env } })
  const services: ServiceProcess[] = [await start()] // the first one migrates; the others find the schema
  services.push(...(await Promise.all([start(), start()])))
  t.teardown(() => Promise.all(services.map((s) => s.stop(2000))))

  const auth = await startUpstream(t) // the revocation feed
  const gw = await buildApp(
    gatewayConfig({
      AUTH_SERVICE_URL: auth.url,
      TASK_SERVICE_URL: services.map((s) => s.url).join(','),
      UPSTREAM_HEALTH_CHECK_INTERVAL_MS: HEALTH_INTERVAL_MS,
      RATE_LIMIT_IP_MAX: 1_000_000,
      RATE_LIMIT_USER_MAX: 1_000_000,
    }),
  )
  t.teardown(() => gw.close())
  const gwUrl = await gw.listen({ port: 0, host: '127.0.0.1' })
  const client = new Pool(gwUrl, { connections: 8 })
  t.teardown(() => client.close())

  const jwt = await token()
  const base = `/api/${subOf(jwt)}/tasks`
  const headers = { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' }
  const gets: number[] = []
  const posts: Array<{ title: string; status: number }> = []
  let seq = 0
  let running = true

  async function worker(): Promise<void> {
    while (running) {
      const n = seq++
      if (n % 3 === 2) {
        const title = `load-${n}`
        const res = await client.request({ method: 'POST', path: base, headers, body: JSON.stringify({ title }) })
        await res.body.dump()
        posts.push({ title, status: res.statusCode })
      } else {
        const res = await client.request({ method: 'GET', path: `${base}?limit=5`, headers })
        await res.body.dump()
        gets.push(res.statusCode)
      }
    }
  }

  const served = (s: ServiceProcess) => loggedStatuses(s.stdout()).length
  /** The gateway's per-target counter for the target at `url`. */
  const targetMetric = async (name: string, url: string) => {
    const metric = await gw.metrics.getSingleMetric(name)!.get()
    return metric.values.find((v) => v.labels.target === new URL(url).host)?.value ?? 0
  }
  const waitFor = async (what: string, ok: () => boolean, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  t.test('kill one target mid-load, restart it on the same port', async (t) => {
    const workers = Array.from({ length: 6 }, () => worker())
    try {
      await waitFor('all three targets serving', () => services.every((s) => served(s) >= 5))
      const victim = services[1]!
      const port = new URL(victim.url).port
      const before = gets.length + posts.length
      victim.child.kill('SIGKILL')
      await new Promise((r) => victim.child.once('exit', r))
      await waitFor('load while the target is down', () => gets.length + posts.length >= before + 300)
      t.ok((await targetMetric('gateway_upstream_target_failures_total', victim.url)) > 0, 'the gateway saw the killed target fail')
      t.equal(await targetMetric('gateway_upstream_target_healthy', victim.url), 0, 'and took it out')
      const sentBefore = await targetMetric('gateway_upstream_target_requests_total', victim.url)
      const restarted = await start({ PORT: port, MIGRATE_ON_START: 'false' })
      services[1] = restarted
      const upAt = Date.now()
      let sent = sentBefore
      while (sent === sentBefore) {
        await new Promise((r) => setTimeout(r, 5))
        sent = await targetMetric('gateway_upstream_target_requests_total', victim.url)
      }
      const backAfterMs = Date.now() - upAt
      // Its ejection (30 s base) is far longer: only a passing health check brings it back this soon.
      t.ok(backAfterMs < 10_000, `restarted target took traffic ${backAfterMs} ms after it listened (health interval ${HEALTH_INTERVAL_MS} ms)`)
      await waitFor('more load after the restart', () => served(restarted) >= 20)
    } finally {
      running = false
      await Promise.all(workers)
    }

    t.ok(gets.length > 300, `${gets.length} GETs`)
    t.same(
      gets.filter((s) => s !== 200),
      [],
      'zero failed GETs',
    )
    const answered = posts.filter((p) => p.status === 201)
    t.ok(answered.length > 100, `${answered.length} of ${posts.length} POSTs answered 201`)
    t.same(
      posts.filter((p) => p.status !== 201 && p.status !== 502).map((p) => p.status),
      [],
      'a POST either succeeded or, cut by the kill, failed with 502',
    )

    const sql = new pg.Client({ connectionString: db.url })
    await sql.connect()
    try {
      const { rows } = await sql.query<{ title: string; n: string }>(`select title, count(*) as n from tasks where title like 'load-%' group by title`)
      const counts = new Map(rows.map((r) => [r.title, Number(r.n)]))
      t.same(
        rows.filter((r) => Number(r.n) > 1).map((r) => r.title),
        [],
        'no POST executed twice',
      )
      t.same(
        answered.filter((p) => counts.get(p.title) !== 1).map((p) => p.title),
        [],
        'every 201 is exactly one row',
      )
    } finally {
      await sql.end()
    }
  })
}
