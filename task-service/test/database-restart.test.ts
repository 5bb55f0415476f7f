/**
 * F-04 / S-50 against a PostgreSQL this test owns and stops (the suite is
 * shared with the auth-service: @tollgate/common/testing databaseRestartCases):
 * the service process keeps running through the outage, answers 503
 * SERVICE_UNAVAILABLE quickly, reports not ready, and recovers by itself when
 * the database is back. Task creates acknowledged while the database is
 * killed are never lost.
 */
import { fileURLToPath } from 'node:url'
import t from 'tap'
import * as testing from '@tollgate/common/testing'
import { KEY, newUserId, SECRET } from './helper.js'

const { databaseRestartCases, signedFetch, startServiceProcess, throwawayPostgresOrSkip } = testing
// The built server, as deployed (npm test builds first; see startServiceProcess on why not src/server.ts).
const serverJs = fileURLToPath(new URL('../dist/server.js', import.meta.url))
type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

const cluster = await throwawayPostgresOrSkip(t)
if (cluster) {
  const svc = await startServiceProcess({
    entry: serverJs,
    env: {
      DATABASE_URL: cluster.url,
      BETTER_AUTH_SECRET: SECRET,
      MIGRATE_ON_START: 'true',
      // The defaults, stated: a request waits at most 2 s for a connection.
      DB_CONNECT_TIMEOUT_MS: '2000',
    },
  })
  t.teardown(() => svc.stop())

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

  const first = await call('POST', '', { title: 'before the outage' })
  t.equal(first.status, 201, 'a task before the outage')
  const taskId = (first.json as { id: string }).id

  const cases = databaseRestartCases({
    cluster,
    svc,
    application: 'task-service',
    table: 'tasks',
    probe: (path) => signedFetch(svc.url, KEY, { method: 'GET', path, identity: null }),
    // Every route: each one reaches the database.
    routes: [
      { what: 'list', ok: 200, go: () => call('GET', '') },
      { what: 'create', ok: 201, go: () => call('POST', '', { title: 'during' }) },
      { what: 'get', ok: 200, go: () => call('GET', `/${taskId}`) },
      { what: 'update', ok: 200, go: () => call('PUT', `/${taskId}`, { title: 'updated' }) },
      { what: 'toggle', ok: 200, go: () => call('PATCH', `/${taskId}/complete`) },
    ],
    routesWhileDown: [{ what: 'delete', ok: 204, go: () => call('DELETE', `/${taskId}`) }],
    // More than the pool holds.
    crowd: 25,
    write: (title, timeoutMs) => call('POST', '', { title }, timeoutMs),
    stored: async (admin, titles) => {
      const { rows } = await admin.query<{ id: string; title: string }>('SELECT id, title FROM tasks WHERE user_id = $1 AND title = ANY($2)', [userId, titles])
      return new Map(rows.map((r) => [r.title, r.id]))
    },
    ledger: { title: '200 creates while PostgreSQL is killed and restarted: every 201 is stored, every failure a 503', writes: 200, workers: 8, restartAfter: 60, pauseMs: 25, after: 10 },
    recovering: 'listing',
  })
  for (const c of cases) t.test(c.name, (t) => c.run(t))
}
