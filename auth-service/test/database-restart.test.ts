/**
 * F-04 / S-50 against a PostgreSQL this test owns and stops (the suite is
 * shared with the task-service: @tollgate/common/testing databaseRestartCases):
 * the service process keeps running through the outage, answers 503
 * SERVICE_UNAVAILABLE quickly, reports not ready, and recovers by itself when
 * the database is back. Sign-ups acknowledged while the database is killed
 * are never lost.
 */
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { type Identity } from '@tollgate/common'
import * as testing from '@tollgate/common/testing'
import { anonymous, asUser, PASSWORD, PROOF_KEY, SECRET, uniqueEmail } from './helper.js'

const { databaseRestartCases, signedFetch, startServiceProcess, throwawayPostgresOrSkip } = testing
// The built server, as deployed (npm test builds first; see startServiceProcess on why not src/server.ts).
const serverJs = fileURLToPath(new URL('../dist/server.js', import.meta.url))

const cluster = await throwawayPostgresOrSkip(t)
if (cluster) {
  const svc = await startServiceProcess({
    entry: serverJs,
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

  const call = (method: 'GET' | 'POST', path: string, identity: Identity | null, body?: unknown, timeoutMs?: number) =>
    signedFetch(svc.url, PROOF_KEY, { method, path, identity, body, ...(timeoutMs ? { timeoutMs } : {}) })
  // Each write is a new account; the label finds its email again.
  const emails = new Map<string, string>()
  const signup = (label: string, timeoutMs?: number) => {
    const email = uniqueEmail(label.replace(/[^a-z0-9-]/g, '-'))
    emails.set(label, email)
    return call('POST', '/api/auth/signup', anonymous, { email, password: PASSWORD }, timeoutMs)
  }

  const account = await signup('restart')
  t.equal(account.status, 201, 'an account before the outage')
  const { id: userId, email } = account.json as { id: string; email: string }

  const cases = databaseRestartCases({
    cluster,
    svc,
    application: 'auth-service',
    table: 'users',
    probe: (path) => call('GET', path, null),
    // One of each kind of database work: a read before bcrypt, a write after it, a read by id.
    routes: [
      { what: 'signin', ok: 200, go: () => call('POST', '/api/auth/signin', anonymous, { email, password: PASSWORD }) },
      { what: 'signup', ok: 201, go: () => signup('down') },
      { what: 'me', ok: 200, go: () => call('GET', '/api/auth/me', asUser(userId)) },
    ],
    crowd: 12,
    write: signup,
    stored: async (admin, labels) => {
      const byEmail = new Map(labels.map((label) => [emails.get(label)!, label]))
      const { rows } = await admin.query<{ id: string; email: string }>('SELECT id, email FROM users WHERE email = ANY($1)', [[...byEmail.keys()]])
      return new Map(rows.map((r) => [byEmail.get(r.email)!, r.id]))
    },
    ledger: { title: 'sign-ups while PostgreSQL is killed and restarted: every 201 is stored, every failure a 503', writes: 60, workers: 6, restartAfter: 15, pauseMs: 30, after: 5 },
    recovering: 'signing in',
  })
  for (const c of cases) t.test(c.name, (t) => c.run(t))
}
