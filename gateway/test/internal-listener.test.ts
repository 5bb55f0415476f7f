/**
 * The internal listener: service tokens only, a deny-by-default allowlist per
 * calling service, per-service limits, and the caller forwarded with a proof.
 */
import t from 'tap'
import { SignJWT } from 'jose'
import { proofKey, serviceTokenKey, signServiceToken, verifyIdentity } from '@tollgate/common'
import { buildGateway, SECRET, startUpstream, subOf, token } from './helper.js'

const svcToken = (service: string, ttlSeconds = 300) =>
  signServiceToken(serviceTokenKey(SECRET), { service, scope: ['tasks:purge'], issuer: 'tollgate', ttlSeconds }).then((r) => r.token)

async function setup(t: Parameters<typeof buildGateway>[0], overrides = {}) {
  const auth = await startUpstream(t)
  const tasks = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url, ...overrides })
  return { gw, internal: gw.internal, auth, tasks }
}

t.test('an allowed service reaches its route, and the service learns who called', async (t) => {
  const { internal, tasks } = await setup(t)
  const res = await internal.inject({ method: 'DELETE', url: '/internal/users/u-123/tasks', headers: { authorization: `Bearer ${await svcToken('auth-service')}`, 'x-user-id': 'spoof' } })
  t.equal(res.statusCode, 200)
  const seen = tasks.seen[0]!
  t.equal(seen.url, '/internal/users/u-123/tasks')
  t.notOk(seen.headers.authorization, 'the service token is not forwarded')
  const id = verifyIdentity(proofKey(SECRET), seen.headers, seen.method, seen.url, seen.headers['x-request-id'] as string, 30_000)
  t.same(id, { caller: 'service:auth-service', userId: '' }, 'a service call, told apart from a user call')
})

t.test('deny by default: a service outside the allowlist gets 403', async (t) => {
  const { internal, tasks } = await setup(t)
  const res = await internal.inject({ method: 'DELETE', url: '/internal/users/u-1/tasks', headers: { authorization: `Bearer ${await svcToken('task-service')}` } })
  t.equal(res.statusCode, 403)
  t.same(res.json(), { detail: 'Access forbidden', error_code: 'FORBIDDEN', status_code: 403 })
  t.equal(tasks.seen.length, 0)
})

t.test('tokens on the wrong listener are 401', async (t) => {
  const { gw, internal, tasks } = await setup(t)
  const user = await token()
  const onInternal = await internal.inject({ method: 'DELETE', url: '/internal/users/u-1/tasks', headers: { authorization: `Bearer ${user}` } })
  t.equal(onInternal.statusCode, 401, 'a user token on the internal listener')
  t.equal(onInternal.json().error_code, 'INVALID_TOKEN')
  const service = await svcToken('auth-service')
  const onPublic = await gw.inject({ url: `/api/${subOf(user)}/tasks`, headers: { authorization: `Bearer ${service}` } })
  t.equal(onPublic.statusCode, 401, 'a service token on the public listener')
  // A user token signed with the service key but shaped like a user token is refused too.
  const forged = await new SignJWT({ svc: 'auth-service' }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject('service:auth-service').setIssuer('tollgate').setAudience('tollgate-internal').setIssuedAt().setExpirationTime('5m').sign(serviceTokenKey(SECRET))
  t.equal((await internal.inject({ method: 'DELETE', url: '/internal/users/u-1/tasks', headers: { authorization: `Bearer ${forged}` } })).statusCode, 401, 'wrong typ')
  const longLived = await svcToken('auth-service', 86_400)
  t.equal((await internal.inject({ method: 'DELETE', url: '/internal/users/u-1/tasks', headers: { authorization: `Bearer ${longLived}` } })).statusCode, 401, 'a day-long service token is not ours')
  t.equal((await internal.inject({ method: 'DELETE', url: '/internal/users/u-1/tasks' })).statusCode, 401, 'no token')
  t.equal(tasks.seen.length, 0)
})

t.test('unknown internal routes are 404; public routes are not served there', async (t) => {
  const { internal } = await setup(t)
  const svc = { authorization: `Bearer ${await svcToken('auth-service')}` }
  t.equal((await internal.inject({ url: '/internal/users/u-1/tasks', headers: svc })).statusCode, 404, 'GET is not routed')
  t.equal((await internal.inject({ url: '/api/u-1/tasks', headers: svc })).statusCode, 404)
  t.equal((await internal.inject({ url: '/internal/revocations', headers: svc })).statusCode, 404)
})

t.test('each service has its own rate limit', async (t) => {
  const { internal } = await setup(t, { RATE_LIMIT_SERVICE_MAX: 2 })
  const headers = { authorization: `Bearer ${await svcToken('auth-service')}` }
  const statuses = []
  for (let i = 0; i < 3; i++) statuses.push((await internal.inject({ method: 'DELETE', url: `/internal/users/u-${i}/tasks`, headers })).statusCode)
  t.same(statuses, [200, 200, 429])
})

t.test('the token endpoint is reachable with a credential, as an anonymous caller', async (t) => {
  const { internal, auth } = await setup(t)
  const res = await internal.inject({ method: 'POST', url: '/internal/service-token', payload: { service: 'task-service', secret: 'x'.repeat(40) } })
  t.equal(res.statusCode, 200)
  t.equal(auth.seen.at(-1)!.headers['x-tollgate-caller'], 'anonymous')
})

t.test('INTERNAL_ALLOWLIST is checked at start', async (t) => {
  const { parseAllowlist } = await import('../src/internal/service-auth.js')
  for (const bad of ['nope', '[]', '{"Bad Name":["GET /x"]}', '{"svc":"GET /x"}', '{"svc":["/x"]}']) {
    t.throws(() => parseAllowlist(bad), /INTERNAL_ALLOWLIST/, bad)
  }
  t.same([...parseAllowlist('{"svc":["GET /x/:id"]}').get('svc')!], ['GET /x/:id'])
})
