/**
 * Logs and metrics across the chain: the request id follows a request from
 * the gateway into the service that served it, no password, token or proof
 * reaches any log, and /metrics tells what happened.
 */
import t from 'tap'
import { Writable } from 'node:stream'
import { randomUUID } from 'node:crypto'
import { buildApp as buildGateway } from '../../gateway/src/app.js'
import { configSchema as gatewaySchema } from '../../gateway/src/config.js'
import { build as buildAuth } from '../../auth-service/test/helper.js'
import { build as buildTasks } from '../../task-service/test/helper.js'
import { loadConfig } from '@tollgate/common'

const SECRET = 'observability-secret-0123456789-abcdefghijk'

function sink() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean))
      done()
    },
  })
  return { lines, stream }
}

t.test('request ids, redaction and metrics across gateway and services', async (t) => {
  const authLog = sink()
  const taskLog = sink()
  const gatewayLog = sink()
  const auth = await buildAuth(t, { BETTER_AUTH_SECRET: SECRET, LOG_LEVEL: 'info' }, { logStream: authLog.stream })
  const tasks = await buildTasks(t, { BETTER_AUTH_SECRET: SECRET, LOG_LEVEL: 'info' }, true, { logStream: taskLog.stream })
  const authUrl = await auth.listen({ port: 0, host: '127.0.0.1' })
  const taskUrl = await tasks.listen({ port: 0, host: '127.0.0.1' })
  const gw = await buildGateway(
    loadConfig(gatewaySchema, { BETTER_AUTH_SECRET: SECRET, LOG_LEVEL: 'info', AUTH_SERVICE_URL: authUrl, TASK_SERVICE_URL: taskUrl }),
    { logStream: gatewayLog.stream },
  )
  t.teardown(() => gw.close())
  await gw.ready()

  const password = `Pw-${randomUUID()}`
  const email = `obs-${randomUUID()}@example.com`
  const rid = (step: string) => ({ 'x-request-id': `obs-${step}-${randomUUID().slice(0, 8)}` })
  const signupId = rid('signup')
  const signup = await gw.inject({ method: 'POST', url: '/api/auth/signup', headers: signupId, payload: { email, password } })
  t.equal(signup.statusCode, 201)
  const signin = await gw.inject({ method: 'POST', url: '/api/auth/signin', headers: rid('signin'), payload: { email, password } })
  const { token, user } = signin.json()
  const listId = rid('list')
  await gw.inject({ url: `/api/${user.id}/tasks?api_key=${token}`, headers: { ...listId, authorization: `Bearer ${token}` } })
  await gw.inject({ url: '/api/auth/me', headers: { ...rid('me'), authorization: `Bearer ${token}` } })
  await gw.inject({ url: `/api/${user.id}/tasks`, headers: { authorization: 'Bearer not.a.token' } })
  await gw.inject({ method: 'POST', url: '/api/auth/signout', headers: { ...rid('signout'), authorization: `Bearer ${token}` } })

  const all = [...gatewayLog.lines, ...authLog.lines, ...taskLog.lines]
  t.ok(all.length > 10, `${all.length} log lines`)
  t.ok(all.every((l) => JSON.parse(l)), 'every line is JSON')
  const secretsSeen = all.filter((l) => l.includes(password) || l.includes(token) || l.includes(token.split('.')[2]) || /v1=[A-Za-z0-9_-]{20,}/.test(l))
  t.same(secretsSeen, [], 'no password, token or proof in any log')

  const withId = (lines: string[], id: string) => lines.filter((l) => JSON.parse(l).reqId === id)
  t.ok(withId(gatewayLog.lines, signupId['x-request-id']).length > 0, 'the gateway logged the sign-up under the client’s id')
  t.ok(withId(authLog.lines, signupId['x-request-id']).length > 0, 'so did the auth-service')
  t.ok(withId(taskLog.lines, listId['x-request-id']).length > 0, 'and the task-service for the task list')
  const done = withId(gatewayLog.lines, listId['x-request-id']).map((l) => JSON.parse(l)).find((l) => l.msg === 'request completed')
  t.match(done, { status: 200, method: 'GET' }, 'one access line with status and time')
  t.match(done.url, /api_key=\[redacted\]/, 'a token in the query string is redacted')

  const gm = (await gw.admin.inject({ url: '/metrics' })).body
  t.match(gm, /gateway_auth_failures_total\{reason="INVALID_TOKEN"[^}]*\} 1/, 'auth failures by reason')
  t.match(gm, /http_request_duration_seconds_bucket\{[^}]*route="\/api\/:user_id\/tasks"[^}]*status="200"/, 'latency by route and status')
  const am = (await auth.inject({ url: '/metrics' })).body
  t.match(am, /db_pool_connections\{state="total"/, 'pool stats')
  t.match(am, /http_requests_total\{[^}]*route="\/api\/auth\/signin"[^}]*status="200"/)
})

t.test('upstream errors are counted by upstream, status and cause', async (t) => {
  const gw = await buildGateway(loadConfig(gatewaySchema, { BETTER_AUTH_SECRET: SECRET, LOG_LEVEL: 'silent', AUTH_SERVICE_URL: 'http://127.0.0.1:1' }))
  t.teardown(() => gw.close())
  await gw.inject({ method: 'POST', url: '/api/auth/signup', payload: { email: 'a@example.com', password: 'Observability-Pass-123' } })
  const gm = (await gw.admin.inject({ url: '/metrics' })).body
  t.match(gm, /gateway_upstream_errors_total\{upstream="auth",status="502",cause="ECONNREFUSED"[^}]*\} 1/)
})
