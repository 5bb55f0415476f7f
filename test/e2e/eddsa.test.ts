/**
 * JWT_ALG=EdDSA end to end: the launcher passes it to the auth-service (signs
 * with its Ed25519 key, publishes /.well-known/jwks.json) and to the gateway
 * (verifies with that JWKS, pinned to EdDSA). The seed's flow works
 * unchanged, signout revokes, and an HS256 token signed with
 * BETTER_AUTH_SECRET, valid in the default mode, is refused.
 *
 * SIGNING_KEY_SECRET is the one auth-service/test/eddsa-signing.test.ts uses:
 * the key lives in the shared test database, and this launcher's
 * BETTER_AUTH_SECRET differs from those tests'.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { SignJWT, createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose'
import { call, SECRET, serviceUrls, startCluster } from './cluster.js'

const databaseUrl = process.env.TEST_DATABASE_URL
if (!databaseUrl) throw new Error('TEST_DATABASE_URL is required (npm test sets it)')
const SIGNING_KEY_SECRET = 'tollgate-test-signing-key-secret-0123456789'

t.test('EdDSA: signup, signin, me, tasks, signout through the gateway; HS256 refused', async (t) => {
  const cluster = await startCluster(t, { DATABASE_URL: databaseUrl, JWT_ALG: 'EdDSA', SIGNING_KEY_SECRET, LOG_LEVEL: 'info' })
  const { url } = cluster
  const email = `eddsa-${randomUUID()}@example.com`
  const password = 'SecurePass123!'

  const signup = await call(url, 'POST', '/api/auth/signup', { email, password, name: 'Ed' })
  t.equal(signup.status, 201, 'signup 201')
  const uid = signup.json.id as string

  const signin = await call(url, 'POST', '/api/auth/signin', { email, password })
  t.equal(signin.status, 200, 'signin 200')
  const token = signin.json.token as string
  const header = decodeProtectedHeader(token)
  t.equal(header.alg, 'EdDSA', 'token header alg EdDSA')
  t.equal(header.typ, 'at+jwt')
  t.type(header.kid, 'string', 'with a kid')
  t.match(decodeJwt(token), { sub: uid, email, name: 'Ed', iss: 'tollgate', aud: 'tollgate-api' })

  // The key the gateway verifies with is the one the auth-service publishes.
  const { auth } = serviceUrls(cluster.output())
  const jwks = await call(auth, 'GET', '/.well-known/jwks.json')
  t.equal(jwks.status, 200)
  t.notMatch(jwks.text, /"d"/, 'no private member')
  await jwtVerify(token, createLocalJWKSet(jwks.json), { algorithms: ['EdDSA'], issuer: 'tollgate', audience: 'tollgate-api' })
  const viaGateway = await call(url, 'GET', '/.well-known/jwks.json')
  t.equal(viaGateway.status, 200, 'the JWKS is public through the gateway too')
  t.same(viaGateway.json.keys.map((k: { kid: string }) => k.kid), jwks.json.keys.map((k: { kid: string }) => k.kid))

  const me = await call(url, 'GET', '/api/auth/me', undefined, token)
  t.equal(me.status, 200, 'me 200')
  t.match(me.json, { id: uid, email, name: 'Ed' })

  const created = await call(url, 'POST', `/api/${uid}/tasks`, { title: 'Sign with Ed25519' }, token)
  t.equal(created.status, 201, 'task created')
  t.match(created.json, { user_id: uid, title: 'Sign with Ed25519', completed: false })
  const list = await call(url, 'GET', `/api/${uid}/tasks`, undefined, token)
  t.equal(list.status, 200, 'tasks listed')
  t.same(list.json.map((x: { id: string }) => x.id), [created.json.id])

  // The default mode's token: right secret, right claims, wrong algorithm for this deployment.
  const now = Math.floor(Date.now() / 1000)
  const hs256 = await new SignJWT({ email, name: 'Ed' })
    .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
    .setSubject(uid)
    .setIssuedAt(now)
    .setExpirationTime(now + 600)
    .setJti(randomUUID())
    .setIssuer('tollgate')
    .setAudience('tollgate-api')
    .sign(new TextEncoder().encode(SECRET))
  for (const [method, path] of [['GET', '/api/auth/me'], ['GET', `/api/${uid}/tasks`]] as const) {
    const refused = await call(url, method, path, undefined, hs256)
    t.equal(refused.status, 401, `HS256 token refused on ${path}`)
    t.equal(refused.json?.error_code, 'INVALID_TOKEN')
  }

  const out = await call(url, 'POST', '/api/auth/signout', undefined, token)
  t.equal(out.status, 204, 'signout 204')
  for (const path of ['/api/auth/me', `/api/${uid}/tasks`]) {
    // The gateway learns revocations from the auth-service's feed (polled, well under a second).
    let after = await call(url, 'GET', path, undefined, token)
    for (const started = Date.now(); after.status === 200 && Date.now() - started < 3000; ) {
      await new Promise((r) => setTimeout(r, 50))
      after = await call(url, 'GET', path, undefined, token)
    }
    t.equal(after.status, 401, `signed-out token refused on ${path}`)
    t.equal(after.json?.error_code, 'TOKEN_REVOKED')
  }
})
