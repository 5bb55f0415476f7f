/**
 * DELETE /api/auth/me end to end: the account, all its tokens and its tasks
 * are gone; the purge travels auth-service -> gateway (internal listener,
 * service token) -> task-service, carrying the user's request id; and if the
 * task-service is down the purge waits in the outbox and is delivered later.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { loadConfig } from '@tollgate/common'
import { call, startCluster } from './cluster.js'
import { buildApp as buildGateway } from '../../gateway/src/app.js'
import { configSchema as gatewaySchema } from '../../gateway/src/config.js'
import { build as buildAuth, inject, SECRET as AUTH_TEST_SECRET } from '../../auth-service/test/helper.js'
import { build as buildTasks } from '../../task-service/test/helper.js'

const databaseUrl = process.env.TEST_DATABASE_URL!

async function taskCount(userId: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    const { rows } = await client.query('SELECT count(*)::int AS n FROM tasks WHERE user_id = $1', [userId])
    return rows[0].n
  } finally {
    await client.end()
  }
}

async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now()
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error('condition not reached in time')
    await new Promise((r) => setTimeout(r, 50))
  }
  return Date.now() - started
}

t.test('through the real processes: account, tokens and tasks are gone; the request id follows the chain', async (t) => {
  const cluster = await startCluster(t, { DATABASE_URL: databaseUrl, LOG_LEVEL: 'info' })
  const { url } = cluster
  const email = `delete-${randomUUID()}@example.com`
  const user = (await call(url, 'POST', '/api/auth/signup', { email, password: 'SecurePass123!' })).json
  const first = (await call(url, 'POST', '/api/auth/signin', { email, password: 'SecurePass123!' })).json.token
  const second = (await call(url, 'POST', '/api/auth/signin', { email, password: 'SecurePass123!' })).json.token
  for (let i = 0; i < 3; i++) t.equal((await call(url, 'POST', `/api/${user.id}/tasks`, { title: `t${i}` }, first)).status, 201)

  const requestId = `delete-${randomUUID()}`
  const res = await fetch(`${url}/api/auth/me`, { method: 'DELETE', headers: { authorization: `Bearer ${first}`, 'x-request-id': requestId } })
  t.equal(res.status, 204, 'DELETE /api/auth/me: 204')

  const revokedIn = await eventually(async () => (await call(url, 'GET', `/api/${user.id}/tasks`, undefined, second)).status === 401, 2000)
  t.ok(revokedIn < 1000, `every token of the account refused within ${revokedIn} ms`)
  t.equal((await call(url, 'GET', '/api/auth/me', undefined, second)).json.error_code, 'TOKEN_REVOKED')
  t.equal((await call(url, 'POST', '/api/auth/signin', { email, password: 'SecurePass123!' })).status, 401, 'the account is gone')
  const purgedIn = await eventually(async () => (await taskCount(user.id)) === 0, 5000)
  t.pass(`tasks purged ${purgedIn} ms after deletion`)

  // Every process writes its logs out at least once a second (buffered stdout): wait for all four hops.
  const hops = () => {
    const lines = cluster.output().split('\n').filter((l) => l.includes(requestId)).map((l) => JSON.parse(l))
    return { lines, services: [...new Set(lines.map((l) => l.service))].sort() }
  }
  await eventually(async () => hops().services.length === 4, 3000).catch(() => undefined)
  const { lines, services } = hops()
  t.same(services, ['auth-service', 'gateway', 'gateway-internal', 'task-service'], 'the same request id in every hop’s logs')
  t.ok(lines.some((l) => l.service === 'task-service' && l.caller === 'service:auth-service'), 'the task-service saw a service call')
})

t.test('task-service down: the purge waits in the outbox and is delivered when it is back', async (t) => {
  const SECRET = AUTH_TEST_SECRET // the auth-service test helper signs its proofs with it
  // The task-service's address, reserved now, listening later.
  const tasks = await buildTasks(t, { BETTER_AUTH_SECRET: SECRET })
  const taskUrl = await tasks.listen({ port: 0, host: '127.0.0.1' })
  const taskPort = Number(new URL(taskUrl).port)
  await tasks.close()

  const gateway = await buildGateway(loadConfig(gatewaySchema, { BETTER_AUTH_SECRET: SECRET, LOG_LEVEL: 'silent', TASK_SERVICE_URL: taskUrl, AUTH_SERVICE_URL: 'http://127.0.0.1:1' }))
  t.teardown(() => gateway.close())
  const internalUrl = await gateway.internal.listen({ port: 0, host: '127.0.0.1' })
  const auth = await buildAuth(t, { BETTER_AUTH_SECRET: SECRET, GATEWAY_INTERNAL_URL: internalUrl, OUTBOX_POLL_MS: 100 })
  await auth.ready()

  // An account with tasks, created straight in the task-service's table.
  const email = `outbox-${randomUUID()}@example.com`
  const signup = await inject(auth, { method: 'POST', url: '/api/auth/signup', payload: { email, password: 'SecurePass123!' } })
  t.equal(signup.statusCode, 201, signup.body)
  const user = signup.json()
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  t.teardown(() => client.end())
  await client.query(`INSERT INTO tasks (user_id, title) VALUES ($1, 'a'), ($1, 'b')`, [user.id])

  const deleted = await inject(auth, { method: 'DELETE', url: '/api/auth/me', identity: { caller: 'user', userId: user.id } })
  t.equal(deleted.statusCode, 204)
  // Until the outbox has tried (and failed) to deliver: an attempt recorded, not a fixed wait.
  const outboxRow = async () => (await client.query(`SELECT attempts, delivered_at, last_error FROM outbox WHERE payload->>'user_id' = $1`, [user.id])).rows
  await eventually(async () => (await outboxRow())[0]?.attempts >= 1, 15_000)
  const rows = await outboxRow()
  t.equal(rows.length, 1, 'the purge is recorded in the outbox')
  t.ok(rows[0].attempts >= 1 && rows[0].delivered_at === null, `not delivered yet after ${rows[0].attempts} attempt(s): ${rows[0].last_error}`)
  t.equal(await taskCount(user.id), 2, 'tasks still there while the task-service is down')

  // The task-service comes back on its address.
  const back = await buildTasks(t, { BETTER_AUTH_SECRET: SECRET })
  await back.listen({ port: taskPort, host: '127.0.0.1' })
  const took = await eventually(async () => (await taskCount(user.id)) === 0, 15_000)
  t.pass(`delivered ${took} ms after the task-service returned`)
  // The task-service purges when the call arrives; the outbox marks the row once the answer is back, a moment later.
  const deliveredAt = async () => (await client.query(`SELECT delivered_at FROM outbox WHERE payload->>'user_id' = $1`, [user.id])).rows[0]?.delivered_at
  await eventually(async () => Boolean(await deliveredAt()), 15_000)
  t.ok(await deliveredAt(), 'marked delivered')
})
