/** Rate limits: per user, per address (honouring only trusted proxies), sign-in per email, RateLimit fields. */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { buildGateway, startUpstream, subOf, token } from './helper.js'

/** RFC 8941-ish parse of `"name";a=1;b=2, "other";...` into { name: { a: 1, b: 2 } }. */
function parseFields(value: string | undefined): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {}
  for (const item of (value ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const [name, ...params] = item.split(';')
    const key = JSON.parse(name!)
    out[key] = Object.fromEntries(params.map((p) => p.split('=')).map(([k, v]) => [k, Number(v)]))
  }
  return out
}

t.test('per user: the limit, then 429 in the envelope with Retry-After and RateLimit fields', async (t) => {
  const tasks = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: tasks.url, RATE_LIMIT_USER_MAX: 3, RATE_LIMIT_USER_WINDOW_S: 60 })
  const jwt = await token()
  const req = { url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } }
  const remaining: number[] = []
  for (let i = 0; i < 3; i++) {
    const res = await gw.inject(req)
    t.equal(res.statusCode, 200)
    t.same(parseFields(res.headers['ratelimit-policy'] as string).user, { q: 3, w: 60 })
    remaining.push(parseFields(res.headers['ratelimit'] as string).user!.r!)
  }
  t.same(remaining, [2, 1, 0], 'r decreases by one per request')
  const limited = await gw.inject(req)
  t.equal(limited.statusCode, 429)
  t.same(limited.json(), { detail: 'Rate limit exceeded, retry later', error_code: 'RATE_LIMITED', status_code: 429 })
  const retryAfter = Number(limited.headers['retry-after'])
  const state = parseFields(limited.headers['ratelimit'] as string).user!
  t.equal(state.r, 0)
  t.ok(retryAfter >= state.t! && retryAfter <= 62, `Retry-After ${retryAfter} >= t ${state.t}`)
  t.equal(tasks.seen.length, 3, 'the refused request never reached the service')

  const other = await token()
  t.equal((await gw.inject({ url: `/api/${subOf(other)}/tasks`, headers: { authorization: `Bearer ${other}` } })).statusCode, 200, 'another user is unaffected')
})

t.test('per address: garbage tokens count against the address', async (t) => {
  const gw = await buildGateway(t, { RATE_LIMIT_IP_MAX: 5 })
  const statuses: number[] = []
  for (let i = 0; i < 7; i++) {
    const forged = await token({ sub: randomUUID(), secret: 'an-attackers-secret-0123456789-abcdefghijk' })
    statuses.push((await gw.inject({ url: `/api/${subOf(forged)}/tasks`, headers: { authorization: `Bearer ${forged}` } })).statusCode)
  }
  t.same(statuses, [401, 401, 401, 401, 401, 429, 429])
})

t.test('X-Forwarded-For is ignored unless the proxy is trusted', async (t) => {
  const gw = await buildGateway(t, { RATE_LIMIT_SIGNUP_IP_MAX: 2 })
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) {
    const res = await gw.inject({
      method: 'POST',
      url: '/api/auth/signup',
      headers: { 'x-forwarded-for': `203.0.113.${i}` },
      payload: { email: `${randomUUID()}@example.com`, password: 'SecurePass123!' },
    })
    statuses.push(res.statusCode)
  }
  t.same(statuses, [200, 200, 429, 429], 'rotating the header does not rotate the key')

  const behindProxy = await buildGateway(t, { RATE_LIMIT_SIGNUP_IP_MAX: 2, TRUST_PROXY: '127.0.0.1' })
  const trusted: number[] = []
  for (let i = 0; i < 4; i++) {
    const res = await behindProxy.inject({
      method: 'POST',
      url: '/api/auth/signup',
      headers: { 'x-forwarded-for': `203.0.113.${i % 2}` },
      payload: { email: `${randomUUID()}@example.com`, password: 'SecurePass123!' },
    })
    trusted.push(res.statusCode)
  }
  t.same(trusted, [200, 200, 200, 200], 'from a trusted proxy, each client has its own budget')
})

t.test('IPv6 clients are keyed by their /64', async (t) => {
  const gw = await buildGateway(t, { RATE_LIMIT_SIGNIN_IP_MAX: 2 })
  const statuses: number[] = []
  for (const addr of ['2001:db8:1:2::1', '2001:db8:1:2::ffff', '2001:db8:1:2:aaaa::9', '2001:db8:1:3::1']) {
    const res = await gw.inject({ method: 'POST', url: '/api/auth/signin', remoteAddress: addr, payload: { email: 'x@example.com', password: 'x' } })
    statuses.push(res.statusCode)
  }
  t.same(statuses, [200, 200, 429, 200], 'three addresses in one /64 share a budget; the next /64 does not')
})

t.test('sign-in: a handful of failures per email, then 429 for that email from any address', async (t) => {
  const auth = await startUpstream(t)
  auth.behave.status = 401 // every attempt fails, as wrong passwords do
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, RATE_LIMIT_SIGNIN_EMAIL_FAILURES_MAX: 3 })
  const victim = `victim-${randomUUID()}@example.com`
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) {
    const res = await gw.inject({
      method: 'POST',
      url: '/api/auth/signin',
      remoteAddress: `198.51.100.${i}`, // a different address each time
      payload: { email: i % 2 ? victim.toUpperCase() : ` ${victim} `, password: `guess-${i}` },
    })
    statuses.push(res.statusCode)
  }
  t.same(statuses, [401, 401, 401, 429, 429])
  t.equal(auth.seen.length, 3, 'refused attempts never reach the auth-service')
  const refused = await gw.inject({ method: 'POST', url: '/api/auth/signin', payload: { email: victim, password: 'the-right-one' } })
  t.equal(refused.statusCode, 429)
  t.ok(Number(refused.headers['retry-after']) > 0)
  t.same(parseFields(refused.headers['ratelimit'] as string)['signin-email']?.r, 0)

  auth.behave.status = 200
  const other = await gw.inject({ method: 'POST', url: '/api/auth/signin', payload: { email: `other-${randomUUID()}@example.com`, password: 'x' } })
  t.equal(other.statusCode, 200, 'another email is unaffected')
})

t.test('successful sign-ins do not count against the email', async (t) => {
  const auth = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, RATE_LIMIT_SIGNIN_EMAIL_FAILURES_MAX: 2 })
  const email = `ok-${randomUUID()}@example.com`
  for (let i = 0; i < 5; i++) {
    t.equal((await gw.inject({ method: 'POST', url: '/api/auth/signin', payload: { email, password: 'right' } })).statusCode, 200)
  }
})

t.test('metrics count rejections by policy', async (t) => {
  const gw = await buildGateway(t, { RATE_LIMIT_SIGNUP_IP_MAX: 1 })
  for (let i = 0; i < 2; i++) {
    await gw.inject({ method: 'POST', url: '/api/auth/signup', payload: { email: `${randomUUID()}@example.com`, password: 'SecurePass123!' } })
  }
  const metrics = await gw.admin.inject({ url: '/metrics' })
  t.match(metrics.body, /gateway_rate_limit_rejections_total\{policy="signup-ip"[^}]*\} 1/)
  t.match(metrics.body, /gateway_rate_limit_backend\{backend="memory"[^}]*\} 1/)
})

const signinFrom = (gw: Awaited<ReturnType<typeof buildGateway>>, remoteAddress: string, email: string, password: string) =>
  gw.inject({ method: 'POST', url: '/api/auth/signin', remoteAddress, payload: { email, password } })

t.test('nobody can lock another user out: failures count per (email, address); the owner signs in from elsewhere', async (t) => {
  const auth = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url }) // the defaults
  const victim = `owner-${randomUUID()}@example.com`
  auth.behave.status = 401
  const attacker: number[] = []
  for (let i = 0; i < 12; i++) attacker.push((await signinFrom(gw, '198.51.100.66', victim, `guess-${i}`)).statusCode)
  t.same(attacker, [...Array(10).fill(401), 429, 429], 'the attacker gets 10 guesses from its address, then 429')
  const limited = await signinFrom(gw, '198.51.100.66', victim, 'guess-13')
  t.same(parseFields(limited.headers['ratelimit-policy'] as string)['signin-email-ip'], { q: 10, w: 900 })

  auth.behave.status = 200
  const owner = await signinFrom(gw, '203.0.113.9', victim, 'the-right-one')
  t.equal(owner.statusCode, 200, 'the owner’s correct password from another address still works')
})

t.test('the per-email ceiling (all addresses) slows a distributed attack; after its window the owner gets in', async (t) => {
  const auth = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, RATE_LIMIT_SIGNIN_EMAIL_FAILURES_MAX: 5, RATE_LIMIT_SIGNIN_EMAIL_FAILURES_WINDOW_S: 60 })
  const victim = `spread-${randomUUID()}@example.com`
  auth.behave.status = 401
  const statuses: number[] = []
  for (let i = 0; i < 7; i++) statuses.push((await signinFrom(gw, `198.51.100.${i + 1}`, victim, `guess-${i}`)).statusCode)
  t.same(statuses, [401, 401, 401, 401, 401, 429, 429], 'five failures from five addresses, then the email is held')
  t.equal(auth.seen.length, 5, 'held attempts never reach the auth-service')

  // A controlled clock: the window (60 s) passes.
  const realNow = Date.now
  Date.now = () => realNow() + 61_000
  t.teardown(() => {
    Date.now = realNow
  })
  auth.behave.status = 200
  t.equal((await signinFrom(gw, '203.0.113.50', victim, 'the-right-one')).statusCode, 200, 'the owner’s first attempt from a new address after the window')
})

t.test('credential stuffing from one address: failed sign-ins per address have their own limit (30 by default)', async (t) => {
  const auth = await startUpstream(t)
  auth.behave.status = 401
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url })
  const statuses: number[] = []
  for (let i = 0; i < 31; i++) statuses.push((await signinFrom(gw, '198.51.100.200', `stuffed-${i}-${randomUUID()}@example.com`, 'Summer2024!')).statusCode)
  t.same(statuses, [...Array(30).fill(401), 429], '31 emails from one address: the 31st failure is refused')
  t.equal(auth.seen.length, 30)
  const last = await signinFrom(gw, '198.51.100.200', `stuffed-x-${randomUUID()}@example.com`, 'x')
  t.same(parseFields(last.headers['ratelimit-policy'] as string)['signin-ip-failures'], { q: 30, w: 900 })
  auth.behave.status = 200
  t.equal((await signinFrom(gw, '198.51.100.201', `other-${randomUUID()}@example.com`, 'x')).statusCode, 200, 'another address is unaffected')
})

t.test('limits count atomically: 25 concurrent wrong passwords on one email, at most the limit reach the auth-service', async (t) => {
  const auth = await startUpstream(t)
  auth.behave.status = 401
  auth.behave.delayMs = 100 // every attempt is in flight while the others arrive
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url })
  const victim = `burst-${randomUUID()}@example.com`
  const statuses = await Promise.all(Array.from({ length: 25 }, (_, i) => signinFrom(gw, '198.51.100.77', victim, `guess-${i}`).then((r) => r.statusCode)))
  t.equal(auth.seen.length, 10, 'exactly the limit was checked')
  t.equal(statuses.filter((s) => s === 401).length, 10)
  t.equal(statuses.filter((s) => s === 429).length, 15)
})

t.test('a successful sign-in gives its reservation back, also when sign-ins run at once', async (t) => {
  const auth = await startUpstream(t)
  auth.behave.delayMs = 20
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, RATE_LIMIT_SIGNIN_EMAIL_IP_FAILURES_MAX: 3 })
  const email = `refund-${randomUUID()}@example.com`
  for (let round = 0; round < 4; round++) {
    const statuses = await Promise.all(Array.from({ length: 3 }, () => signinFrom(gw, '198.51.100.5', email, 'right').then((r) => r.statusCode)))
    t.same(statuses, [200, 200, 200], `round ${round}: three at once, all admitted (nothing left reserved)`)
  }
  auth.behave.status = 401
  const failures: number[] = []
  for (let i = 0; i < 4; i++) failures.push((await signinFrom(gw, '198.51.100.5', email, 'wrong')).statusCode)
  t.same(failures, [401, 401, 401, 429], 'the whole failure budget is still there')
})
