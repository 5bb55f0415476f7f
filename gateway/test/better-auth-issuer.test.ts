/**
 * A trusted external issuer as users meet it, against the real Better Auth
 * (the `better-auth` package, JWT plugin, in-memory store): key rotation,
 * issuer outages, removed keys, routes of our own accounts, and sign-out at
 * Better Auth cutting off its JWTs at every gateway replica. The gateway's
 * clock is the test's (no sleeps for cooldowns and backoffs).
 */
import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { randomUUID } from 'node:crypto'
import { betterAuth } from 'better-auth'
import { memoryAdapter } from 'better-auth/adapters/memory'
import { jwt } from 'better-auth/plugins'
import { toNodeHandler } from 'better-auth/node'
import { generateKeyPair, SignJWT } from 'jose'
import { buildGateway, logCapture, SECRET, startUpstream, testClock, token } from './helper.js'
import { freePort } from './redis-server.js'
import { build as buildAuthService } from '../../auth-service/test/helper.js'

type Tap = Parameters<typeof startUpstream>[0]
const PASSWORD = 'SecurePass123!'

interface BetterAuthOptions {
  /** Called when Better Auth deletes a session (sign-out), as an app's databaseHooks would. */
  onSessionDeleted?: (session: { userId: string }) => Promise<void>
}

/** A Better Auth app on a free port; `down` makes it drop every connection, `jwksFetches` counts key set reads. */
async function startBetterAuth(t: Tap, opts: BetterAuthOptions = {}) {
  const port = await freePort()
  const baseURL = `http://127.0.0.1:${port}`
  const db: Record<string, Array<Record<string, unknown>>> = { user: [], session: [], account: [], verification: [], jwks: [] }
  const auth = betterAuth({
    secret: 'better-auth-secret-0123456789-abcdefghijklmnop',
    baseURL,
    database: memoryAdapter(db as never),
    emailAndPassword: { enabled: true },
    plugins: [jwt()],
    logger: { disabled: true },
    ...(opts.onSessionDeleted ? { databaseHooks: { session: { delete: { after: opts.onSessionDeleted } } } } : {}),
  })
  const handler = toNodeHandler(auth)
  const state = { down: false, jwksFetches: 0 }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (state.down) return req.socket.destroy()
    if (req.url?.startsWith('/api/auth/jwks')) state.jwksFetches++
    return handler(req, res)
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })

  /** A new user, signed in: its session cookie, its id, and a JWT from /token. */
  async function newUser() {
    const signUp = await fetch(`${baseURL}/api/auth/sign-up/email`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: baseURL },
      body: JSON.stringify({ email: `ba-${randomUUID()}@example.com`, password: PASSWORD, name: 'Better User' }),
    })
    if (signUp.status !== 200) throw new Error(`sign-up ${signUp.status}`)
    const cookie = signUp.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ')
    const token = await tokenFor(cookie)
    return { cookie, token, sub: claims(token).sub as string }
  }
  async function tokenFor(cookie: string): Promise<string> {
    const res = await fetch(`${baseURL}/api/auth/token`, { headers: { cookie } })
    if (res.status !== 200) throw new Error(`token ${res.status}`)
    return ((await res.json()) as { token: string }).token
  }
  /** Better Auth's own rotation: the signing key expires, and the next token is signed by a new key at once. */
  function rotate() {
    for (const key of db.jwks!) key.expiresAt = new Date(Date.now() - 1000)
  }
  /** Unpublish a key (as deleting it from Better Auth's jwks table does). */
  function removeKey(kid: string) {
    db.jwks!.splice(
      db.jwks!.findIndex((k) => k.id === kid),
      1,
    )
  }
  async function signOut(cookie: string) {
    const res = await fetch(`${baseURL}/api/auth/sign-out`, { method: 'POST', headers: { cookie, origin: baseURL } })
    if (res.status !== 200) throw new Error(`sign-out ${res.status}`)
  }
  return { baseURL, state, newUser, tokenFor, rotate, removeKey, signOut }
}
type BetterAuth = Awaited<ReturnType<typeof startBetterAuth>>

const claims = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>
const kidOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid as string

const trust = (ba: BetterAuth) =>
  JSON.stringify([{ issuer: ba.baseURL, audience: ba.baseURL, jwks_url: `${ba.baseURL}/api/auth/jwks`, algorithms: ['EdDSA'] }])

/** A gateway trusting the Better Auth app, with the test's clock and log lines. */
async function gatewayFor(t: Tap, ba: BetterAuth, overrides: Record<string, unknown> = {}) {
  const tasks = await startUpstream(t)
  const clock = testClock()
  const logs = logCapture()
  // The clock moves by JWKS cooldowns and backoffs, and it is the revocation list's clock too (polled on real
  // time): a staleness bound of an hour keeps the list trusted across the jumps, which are not what these tests are about.
  const gw = await buildGateway(
    t,
    { TASK_SERVICE_URL: tasks.url, JWT_TRUSTED_ISSUERS: trust(ba), JWKS_TIMEOUT_MS: 500, LOG_LEVEL: 'info', REVOCATION_MAX_STALENESS_MS: 3_600_000, ...overrides },
    { now: clock.now, logStream: logs.stream },
  )
  const call = (token: string) => gw.inject({ url: `/api/${claims(token).sub}/tasks`, headers: { authorization: `Bearer ${token}` } })
  return { gw, tasks, clock, logs, call }
}

/** A token for Better Auth's issuer with a kid it never published, signed by a key it does not have. */
async function forged(ba: BetterAuth) {
  const { privateKey } = await generateKeyPair('EdDSA')
  return new SignJWT({})
    .setProtectedHeader({ alg: 'EdDSA', kid: `forged-${randomUUID()}` })
    .setSubject('DKAEwfLSToFv2sDkqGJLes0Bscdlkzch')
    .setIssuer(ba.baseURL)
    .setAudience(ba.baseURL)
    .setIssuedAt()
    .setExpirationTime('15m')
    .sign(privateKey)
}

const unavailable = { detail: 'Token keys unavailable', error_code: 'SERVICE_UNAVAILABLE', status_code: 503 }

t.test('key rotation: a token of a new key is never invalid; it waits at most until the next fetch may start', async (t) => {
  const ba = await startBetterAuth(t)
  const { call, clock } = await gatewayFor(t, ba, { JWKS_COOLDOWN_MS: 5000 })
  const user = await ba.newUser()
  t.equal((await call(user.token)).statusCode, 200, 'first key, fetched once')
  t.equal(ba.state.jwksFetches, 1)

  // Better Auth rotates moments after the gateway fetched: the new key is not known yet.
  ba.rotate()
  const rotated = await ba.tokenFor(user.cookie)
  t.not(kidOf(rotated), kidOf(user.token), 'Better Auth signs with a new key at once')
  const early = await call(rotated)
  t.equal(early.statusCode, 503, 'not 401: the token is not invalid, only not checkable yet')
  t.same(early.json(), unavailable)
  const retryAfter = Number(early.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= 5, `Retry-After ${retryAfter} s: when the next fetch may start`)

  // The storm guard holds meanwhile: random kids cause no fetch.
  for (let i = 0; i < 50; i++) t.equal((await call(await forged(ba))).statusCode, 503, 'a random kid inside the cooldown')
  t.equal(ba.state.jwksFetches, 1, 'no fetch inside the cooldown')
  clock.advance(retryAfter * 1000 - 1)
  t.equal((await call(rotated)).statusCode, 503, 'a moment before Retry-After: still cooling down')
  t.equal(ba.state.jwksFetches, 1)

  clock.advance(1)
  t.equal((await call(rotated)).statusCode, 200, 'at Retry-After the new key is fetched and the token works')
  t.equal(ba.state.jwksFetches, 2)
  t.equal((await call(user.token)).statusCode, 200, 'the old key still verifies while published')

  // A kid never seen, with the last fetch longer than the cooldown ago: fetched at once, no wait.
  clock.advance(6000)
  ba.rotate()
  const again = await ba.tokenFor(user.cookie)
  t.equal((await call(again)).statusCode, 200, 'fetched at once')
  t.equal(ba.state.jwksFetches, 3)

  // A random kid the fetch looked for and did not find is invalid, and costs no more fetches.
  clock.advance(6000)
  const fake = await forged(ba)
  const refused = await call(fake)
  t.equal(refused.statusCode, 401, 'looked for and not published: invalid')
  t.equal(refused.json().error_code, 'INVALID_TOKEN')
  t.equal(ba.state.jwksFetches, 4)
  t.equal((await call(fake)).statusCode, 401, 'again: 401 at once')
  t.equal(ba.state.jwksFetches, 4, 'without another fetch')
})

t.test('issuer outage: 503 with a true Retry-After, short backoff, one log line each way', async (t) => {
  const ba = await startBetterAuth(t)
  const { call, clock, logs } = await gatewayFor(t, ba)
  const user = await ba.newUser()
  t.equal((await call(user.token)).statusCode, 200)

  ba.rotate()
  const rotated = await ba.tokenFor(user.cookie)
  ba.state.down = true
  clock.advance(6000) // past the cooldown: the unknown kid may fetch
  const first = await call(rotated)
  t.equal(first.statusCode, 503, 'a valid token whose key was not fetched, issuer down: 503, not 401')
  t.same(first.json(), unavailable)
  t.equal(first.headers['retry-after'], '1', 'first retry after the first backoff step')
  t.equal((await call(user.token)).statusCode, 200, 'keys already fetched keep working')
  t.equal(logs.count('JWKS fetch failing; keeping the keys already fetched'), 1, 'the failure is logged')

  t.equal((await call(rotated)).headers['retry-after'], '1', 'inside the backoff: no fetch, same deadline')
  clock.advance(1000)
  const second = await call(rotated)
  t.equal(second.statusCode, 503)
  t.equal(second.headers['retry-after'], '2', 'the backoff doubles')
  t.equal(logs.count('JWKS fetch failing; keeping the keys already fetched'), 1, 'logged once per change of state, not per failure')

  ba.state.down = false
  clock.advance(2000)
  t.equal((await call(rotated)).statusCode, 200, 'at Retry-After, with the issuer back: 200')
  t.equal(logs.count('JWKS fetched again'), 1, 'the recovery is logged once')
})

t.test('issuer down before any key was fetched: 503 until it returns, then at once', async (t) => {
  const ba = await startBetterAuth(t)
  const user = await ba.newUser()
  ba.state.down = true
  const { call, clock } = await gatewayFor(t, ba)
  const res = await call(user.token)
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
  ba.state.down = false
  clock.advance(1000)
  t.equal((await call(user.token)).statusCode, 200, 'the first request after Retry-After gets through')
})

t.test('a key removed from the JWKS stops working at once, cached tokens included', async (t) => {
  const ba = await startBetterAuth(t)
  const { call, clock } = await gatewayFor(t, ba)
  const user = await ba.newUser()
  const other = await ba.newUser()
  t.equal((await call(user.token)).statusCode, 200, 'verified and cached')
  t.equal((await call(other.token)).statusCode, 200, 'verified and cached')

  // Better Auth rotates and drops the old key; the next fetch (a token of the new key) sees it gone.
  const oldKid = kidOf(user.token)
  ba.rotate()
  const fresh = await ba.tokenFor(user.cookie)
  ba.removeKey(oldKid)
  clock.advance(6000)
  t.equal((await call(fresh)).statusCode, 200, 'the new key')
  for (const token of [user.token, other.token]) {
    const res = await call(token)
    t.equal(res.statusCode, 401, 'a token of the removed key, cached before: refused')
    t.equal(res.json().error_code, 'INVALID_TOKEN')
  }
})

t.test('our account routes refuse other issuers’ tokens at the gateway; sign-out at Better Auth cuts its JWTs off everywhere', async (t) => {
  const credential = 'better-auth-app-credential-0123456789-abcdef'
  const auth = await buildAuthService(t, {
    BETTER_AUTH_SECRET: SECRET,
    SERVICE_CREDENTIALS: JSON.stringify({ 'better-auth-app': { secret: credential, scope: ['revoke:subjects'] } }),
  })
  await auth.listen({ port: 0, host: '127.0.0.1' })
  const authUrl = `http://127.0.0.1:${(auth.server.address() as { port: number }).port}`

  // The Better Auth app revokes its user's tokens at the gateway when a session ends (README).
  let internalUrl = ''
  const revocationCalls: number[] = []
  const ba = await startBetterAuth(t, {
    onSessionDeleted: async (session) => {
      const exchange = await fetch(`${internalUrl}/internal/service-token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ service: 'better-auth-app', secret: credential }),
      })
      const { token } = (await exchange.json()) as { token: string }
      const res = await fetch(`${internalUrl}/internal/subject-revocations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ issuer: ba.baseURL, sub: session.userId, token_lifetime_s: 900 }),
      })
      revocationCalls.push(res.status)
    },
  })
  const overrides = {
    AUTH_SERVICE_URL: authUrl,
    REVOCATION_POLL_MS: 50,
    INTERNAL_ALLOWLIST: JSON.stringify({ 'auth-service': ['DELETE /internal/users/:user_id/tasks'], 'better-auth-app': ['POST /internal/subject-revocations'] }),
  }
  const a = await gatewayFor(t, ba, overrides)
  const b = await gatewayFor(t, ba, overrides)
  internalUrl = await a.gw.internal.listen({ port: 0, host: '127.0.0.1' })

  const user = await ba.newUser()
  const bystander = await ba.newUser()
  const authz = { authorization: `Bearer ${user.token}` }
  for (const [method, url] of [
    ['GET', '/api/auth/me'],
    ['DELETE', '/api/auth/me'],
    ['POST', '/api/auth/signout'],
  ] as const) {
    const res = await a.gw.inject({ method, url, headers: authz })
    t.equal(res.statusCode, 401, `${method} ${url}: refused at the gateway`)
    t.same(res.json(), { detail: "This route is for this service's accounts; tokens of other issuers are not accepted here", error_code: 'INVALID_TOKEN', status_code: 401 })
    t.match(res.headers['www-authenticate'], /error="invalid_token"/)
  }
  // Our own accounts still use them.
  const email = `own-${randomUUID()}@example.com`
  t.equal((await a.gw.inject({ method: 'POST', url: '/api/auth/signup', payload: { email, password: PASSWORD } })).statusCode, 201)
  const own = (await a.gw.inject({ method: 'POST', url: '/api/auth/signin', payload: { email, password: PASSWORD } })).json().token as string
  t.equal((await a.gw.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${own}` } })).statusCode, 200, 'our token on /me')

  // Sign-out at Better Auth: its JWT stops working at both replicas within the revocation window.
  t.equal((await a.call(user.token)).statusCode, 200)
  t.equal((await b.call(user.token)).statusCode, 200)
  await ba.signOut(user.cookie)
  t.same(revocationCalls, [204], 'the app revoked the subject through the internal listener')
  for (const replica of [a, b]) {
    const deadline = Date.now() + 5000
    let res = await replica.call(user.token)
    while (res.statusCode === 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25))
      res = await replica.call(user.token)
    }
    t.equal(res.statusCode, 401, 'the signed-out user’s JWT is refused')
    t.equal(res.json().error_code, 'TOKEN_REVOKED')
    t.equal((await replica.call(bystander.token)).statusCode, 200, 'other users of the issuer are untouched')
  }
  t.equal((await a.gw.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${own}` } })).statusCode, 200, 'and our own users too')
  // The cutoff belongs to Better Auth's subject: our issuer's token for the same id string is another user.
  const sameIdOurs = await token({ sub: user.sub })
  t.equal((await a.gw.inject({ url: `/api/${user.sub}/tasks`, headers: { authorization: `Bearer ${sameIdOurs}` } })).statusCode, 200, 'same sub, other issuer: untouched')
})

t.test('revocation by subject: only allowlisted services, only with a service token', async (t) => {
  const auth = await buildAuthService(t, { BETTER_AUTH_SECRET: SECRET })
  await auth.listen({ port: 0, host: '127.0.0.1' })
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: `http://127.0.0.1:${(auth.server.address() as { port: number }).port}` })
  const { serviceTokenKey, signServiceToken } = await import('@tollgate/common')
  const svc = async (service: string) => (await signServiceToken(serviceTokenKey(SECRET), { service, scope: [], issuer: 'tollgate', ttlSeconds: 300 })).token
  const body = { issuer: 'https://idp.example.test', sub: 'DKAEwfLSToFv2sDkqGJLes0Bscdlkzch' }
  const post = (authorization?: string, payload: object = body) =>
    gw.internal.inject({ method: 'POST', url: '/internal/subject-revocations', headers: authorization ? { authorization } : {}, payload })
  t.equal((await post()).statusCode, 401, 'no token')
  t.equal((await post(`Bearer ${await svc('auth-service')}`)).statusCode, 403, 'a service the allowlist does not name')
  const onPublic = await gw.inject({ method: 'POST', url: '/internal/subject-revocations', payload: body })
  t.equal(onPublic.statusCode, 404, 'not on the public listener')
})
