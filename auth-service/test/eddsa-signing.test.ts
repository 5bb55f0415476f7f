/**
 * JWT_ALG=EdDSA on the shared test database: sign-in tokens are Ed25519 JWTs
 * whose kid is in the served JWKS and which jose verifies with it; the JWKS is
 * public, cacheable and holds no private member; signout verifies them and
 * refuses HS256 tokens (the algorithm is pinned). HS256 mode is unchanged and
 * publishes an empty set.
 *
 * The keys created here stay in the shared database, so SIGNING_KEY_SECRET is
 * the same as in test/e2e/eddsa.test.ts (the launcher there uses another
 * BETTER_AUTH_SECRET): whichever runs first creates the key the other reads.
 */
import t from 'tap'
import { generateKeyPair, SignJWT, createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose'
import { loadConfig } from '@tollgate/common'
import { configSchema } from '../src/config.js'
import { asUser, build, db, inject, PASSWORD, SECRET, signin, signup } from './helper.js'

const SIGNING_KEY_SECRET = 'tollgate-test-signing-key-secret-0123456789'
const EDDSA = { JWT_ALG: 'EdDSA', SIGNING_KEY_SECRET }

type App = Awaited<ReturnType<typeof build>>

async function session(app: App) {
  const user = await signup(app, { name: 'Ed Dsa' })
  const res = await signin(app, user.email, PASSWORD)
  if (res.statusCode !== 200) throw new Error(`signin failed: ${res.statusCode} ${res.body}`)
  return { ...user, token: res.json().token as string }
}

const jwksOf = (app: App) => inject(app, { method: 'GET', url: '/.well-known/jwks.json', identity: null })

const signout = (app: App, userId: string, token: string) =>
  inject(app, { method: 'POST', url: '/api/auth/signout', identity: asUser(userId), headers: { authorization: `Bearer ${token}` } })

function hs256(claims: Record<string, unknown>) {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ iss: 'tollgate', aud: 'tollgate-api', iat: now, exp: now + 600, jti: crypto.randomUUID(), ...claims })
    .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
    .sign(new TextEncoder().encode(SECRET))
}

t.test('EdDSA: the sign-in token verifies with jose against the served JWKS', async (t) => {
  const app = await build(t, EDDSA)
  const { id, email, token } = await session(app)

  const header = decodeProtectedHeader(token)
  t.same(Object.keys(header).sort(), ['alg', 'kid', 'typ'])
  t.equal(header.alg, 'EdDSA')
  t.equal(header.typ, 'at+jwt')
  t.type(header.kid, 'string')

  const res = await jwksOf(app)
  t.equal(res.statusCode, 200, 'no identity proof needed: public key material')
  t.equal(res.headers['cache-control'], 'public, max-age=60')
  t.match(res.headers['content-type'], /^application\/json/)
  const jwks = res.json() as JSONWebKeySet
  t.ok(jwks.keys.some((k) => k.kid === header.kid), 'the token’s kid is published')

  const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), {
    algorithms: ['EdDSA'],
    issuer: 'tollgate',
    audience: 'tollgate-api',
  })
  t.equal(protectedHeader.kid, header.kid)
  t.same(Object.keys(payload).sort(), ['aud', 'email', 'exp', 'iat', 'iss', 'jti', 'name', 'sub'], 'the same claims as with HS256')
  t.match(payload, { sub: id, email, name: 'Ed Dsa', iss: 'tollgate', aud: 'tollgate-api' })
  t.equal(payload.exp! - payload.iat!, 604_800, 'TOKEN_TTL_S')
})

t.test('EdDSA: the JWKS holds public keys only, each pinned to EdDSA', async (t) => {
  const app = await build(t, EDDSA)
  const res = await jwksOf(app)
  t.notMatch(res.body, /"d"/, 'no private member anywhere in the document')
  const { keys } = res.json() as JSONWebKeySet
  t.ok(keys.length >= 1)
  for (const k of keys) {
    t.same(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x'], `key ${k.kid}: exactly the public members`)
    t.match(k, { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' })
    t.match(k.x, /^[A-Za-z0-9_-]{43}$/, '32-byte Ed25519 public key')
  }
})

t.test('EdDSA: private keys are stored encrypted, never as JSON', async (t) => {
  await build(t, EDDSA) // makes sure a key exists
  const client = await db(t)
  const { rows } = await client.query<{ kid: string; public_jwk: object; private_jwk_enc: string }>(
    "SELECT kid, public_jwk, private_jwk_enc FROM signing_keys WHERE alg = 'EdDSA'",
  )
  t.ok(rows.length >= 1)
  for (const r of rows) {
    t.notMatch(r.private_jwk_enc, /"d"\s*:/, `${r.kid}: no "d": in the stored private key`)
    t.notMatch(r.private_jwk_enc, /[{}"]/, 'not JSON at all')
    t.match(r.private_jwk_enc, /^v1\.[\w-]+\.[\w-]+\.[\w-]+$/, 'version, iv, ciphertext, tag')
    t.notOk('d' in r.public_jwk, 'the public column holds no private member')
  }
})

t.test('EdDSA: signout verifies the token by kid and refuses anything else', async (t) => {
  const app = await build(t, EDDSA)
  const { id, token } = await session(app)

  const forgedHs = await hs256({ sub: id })
  const res = await signout(app, id, forgedHs)
  t.equal(res.statusCode, 401, 'an HS256 token signed with BETTER_AUTH_SECRET is refused: the algorithm is pinned')
  t.equal(res.json().error_code, 'INVALID_TOKEN')

  // Signed by a key of our own, under the kid of a published key: the signature decides.
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' })
  const { kid } = decodeProtectedHeader(token)
  const claims = decodeJwt(token)
  const impostor = await new SignJWT({ ...claims, jti: crypto.randomUUID() }).setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: kid! }).sign(privateKey)
  t.equal((await signout(app, id, impostor)).statusCode, 401, 'a published kid with a foreign key')
  const unknownKid = await new SignJWT({ ...claims, jti: crypto.randomUUID() }).setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: 'no-such-kid' }).sign(privateKey)
  t.equal((await signout(app, id, unknownKid)).statusCode, 401, 'an unknown kid')
  const noKid = await new SignJWT({ ...claims, jti: crypto.randomUUID() }).setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt' }).sign(privateKey)
  t.equal((await signout(app, id, noKid)).statusCode, 401, 'no kid')
  const [h, p] = token.split('.')
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt', kid })).toString('base64url')}.${p}.`
  t.equal((await signout(app, id, `${none}x`)).statusCode, 401, 'alg none')
  t.equal((await signout(app, id, `${h}.${p}.${Buffer.alloc(64).toString('base64url')}`)).statusCode, 401, 'a zero signature')

  const ok = await signout(app, id, token)
  t.equal(ok.statusCode, 204, 'the genuine token signs out')
  const client = await db(t)
  const { rows } = await client.query('SELECT user_id FROM revoked_tokens WHERE jti = $1', [decodeJwt(token).jti])
  t.same(rows, [{ user_id: id }], 'and its jti is revoked')
})

t.test('HS256 (the default) is unchanged and publishes an empty key set', async (t) => {
  const app = await build(t)
  const { id, token } = await session(app)
  t.same(decodeProtectedHeader(token), { alg: 'HS256', typ: 'at+jwt' }, 'no kid')
  const { payload } = await jwtVerify(token, new TextEncoder().encode(SECRET), {
    algorithms: ['HS256'],
    issuer: 'tollgate',
    audience: 'tollgate-api',
  })
  t.equal(payload.sub, id)

  const res = await jwksOf(app)
  t.equal(res.statusCode, 200)
  t.equal(res.body, '{"keys":[]}', 'never the secret')
  t.equal(res.headers['cache-control'], 'public, max-age=60')

  // An EdDSA token, even from this database's real key, is not accepted in HS256 mode.
  const eddsa = await build(t, EDDSA)
  const other = await session(eddsa)
  const refused = await signout(app, other.id, other.token)
  t.equal(refused.statusCode, 401, 'EdDSA token refused by the HS256 issuer')
  t.equal(refused.json().error_code, 'INVALID_TOKEN')
  t.equal((await signout(app, id, token)).statusCode, 204, 'its own token signs out')
})

t.test('EdDSA with the database down at start: the app starts, the JWKS answers 503, never an empty set', async (t) => {
  const app = await build(t, { ...EDDSA, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', DB_CONNECT_TIMEOUT_MS: '500' })
  const res = await jwksOf(app)
  t.equal(res.statusCode, 503)
  t.equal(res.json().error_code, 'SERVICE_UNAVAILABLE')
  t.equal(res.headers['cache-control'], 'no-store', 'a failure is not cached')
  t.ok(res.headers['retry-after'])
})

t.test('configuration: defaults and refusals name the variable', async (t) => {
  const base = { DATABASE_URL: 'postgres://localhost/x', BETTER_AUTH_SECRET: 's'.repeat(32) }
  const c = loadConfig(configSchema, base)
  t.equal(c.JWT_ALG, 'HS256', 'HS256 unless asked')
  t.equal(c.SIGNING_KEY_SECRET, undefined, 'derived from BETTER_AUTH_SECRET unless set')
  t.equal(c.JWT_KEY_PUBLISH_AHEAD_S, 120)
  t.equal(c.JWT_KEY_ROTATION_DAYS, 0, 'no automatic rotation')
  t.equal(c.JWT_KEY_REFRESH_S, 30)
  t.equal(loadConfig(configSchema, { ...base, JWT_ALG: 'EdDSA' }).JWT_ALG, 'EdDSA')
  for (const [name, value] of [
    ['JWT_ALG', 'RS256'],
    ['JWT_ALG', 'none'],
    ['SIGNING_KEY_SECRET', 'short'],
    ['JWT_KEY_PUBLISH_AHEAD_S', '-1'],
    ['JWT_KEY_ROTATION_DAYS', 'weekly'],
    ['JWT_KEY_REFRESH_S', '0'],
  ] as const) {
    t.throws(() => loadConfig(configSchema, { ...base, [name]: value }), new RegExp(`^${name} `), `${name}=${value}`)
  }
})
