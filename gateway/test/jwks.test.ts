/**
 * Asymmetric key sources: a trusted external issuer's JWKS. Unknown kids are
 * fetched at most once per cooldown, outages keep cached keys working, and no
 * failure of the key source becomes a 500.
 */
import t from 'tap'
import Fastify from 'fastify'
import { randomUUID } from 'node:crypto'
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'
import { ConfigError } from '@tollgate/common'
import { buildGateway, gatewayConfig, startUpstream, testClock } from './helper.js'
import { trustedIssuers } from '../src/config.js'

const ISSUER = 'https://idp.example.test'
const AUDIENCE = 'tollgate-external'
type Tap = Parameters<typeof startUpstream>[0]

async function newKey(kid: string) {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true })
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' }
  return { kid, privateKey, jwk }
}
type Key = Awaited<ReturnType<typeof newKey>>

/** A JWKS endpoint whose answers the test controls, counting fetches. */
async function startIdp(t: Tap) {
  // 'hang' holds the fetch until the test ends; `holding` counts the fetches held.
  const state = { keys: [] as JWK[], fetches: 0, holding: 0, mode: 'ok' as 'ok' | '500' | 'html' | 'hang' }
  let release!: () => void
  const released = new Promise<void>((r) => (release = r))
  const app = Fastify()
  app.get('/jwks', async (_req, reply) => {
    state.fetches++
    if (state.mode === '500') return reply.code(500).send({ error: 'boom' })
    if (state.mode === 'html') return reply.type('text/html').send('<html>maintenance</html>')
    if (state.mode === 'hang') {
      state.holding++
      await released
      state.holding--
    }
    return { keys: state.keys }
  })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => {
    release()
    return app.close()
  })
  return { state, url: `${url}/jwks`, app }
}

function sign(key: Key, sub: string = randomUUID(), header: Record<string, unknown> = {}) {
  return new SignJWT({ name: 'Ext' })
    .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, ...header })
    .setSubject(sub)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(key.privateKey)
}

async function gatewayFor(t: Tap, jwksUrl: string, overrides: Record<string, unknown> = {}, now?: () => number) {
  const tasks = await startUpstream(t)
  const gw = await buildGateway(
    t,
    {
      TASK_SERVICE_URL: tasks.url,
      JWT_TRUSTED_ISSUERS: JSON.stringify([{ issuer: ISSUER, audience: AUDIENCE, jwks_url: jwksUrl, algorithms: ['EdDSA'] }]),
      JWKS_TIMEOUT_MS: 300,
      ...overrides,
    },
    { now },
  )
  const call = async (jwt: string, sub?: string) => {
    const s = sub ?? JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).sub
    return gw.inject({ url: `/api/${s}/tasks`, headers: { authorization: `Bearer ${jwt}` } })
  }
  return { gw, tasks, call }
}

t.test('an external issuer’s EdDSA token works; forged variants do not', async (t) => {
  const idp = await startIdp(t)
  const key = await newKey('k1')
  idp.state.keys = [key.jwk]
  const { call, tasks } = await gatewayFor(t, idp.url)
  const sub = 'DKAEwfLSToFv2sDkqGJLes0Bscdlkzch'
  const ok = await call(await sign(key, sub))
  t.equal(ok.statusCode, 200)
  t.equal(tasks.seen[0]!.headers['x-user-id'], sub)

  const stranger = await newKey('k1') // same kid, different key
  t.equal((await call(await sign(stranger, sub))).statusCode, 401, 'a key not in the set')
  // HS256 signed with the public key's bytes: the classic algorithm confusion.
  const confused = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
    .setSubject(sub)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(JSON.stringify(key.jwk)))
  t.equal((await call(confused)).statusCode, 401, 'HS256 with the public key as secret')
  const otherAudience = await new SignJWT({}).setProtectedHeader({ alg: 'EdDSA', kid: 'k1' }).setSubject(sub).setIssuer(ISSUER).setAudience('someone-else').setExpirationTime('1h').sign(key.privateKey)
  t.equal((await call(otherAudience)).statusCode, 401, 'wrong audience')
})

t.test('key pointers in the header are never followed', async (t) => {
  const idp = await startIdp(t)
  const key = await newKey('k1')
  idp.state.keys = [key.jwk]
  const attacker = await startIdp(t)
  const evil = await newKey('evil')
  attacker.state.keys = [evil.jwk]
  const { call } = await gatewayFor(t, idp.url)
  for (const header of [{ jku: attacker.url }, { jwk: evil.jwk }, { x5u: attacker.url }]) {
    const res = await call(await sign(evil, randomUUID(), header))
    t.equal(res.statusCode, 401, JSON.stringify(Object.keys(header)))
  }
  t.equal(attacker.state.fetches, 0, 'the attacker’s key server saw no request')
})

t.test('a flood of unknown kids causes at most one fetch per cooldown', async (t) => {
  const idp = await startIdp(t)
  const key = await newKey('k1')
  idp.state.keys = [key.jwk]
  const clock = testClock()
  const { call } = await gatewayFor(t, idp.url, { JWKS_COOLDOWN_MS: 30_000 }, clock.now)
  t.equal((await call(await sign(key))).statusCode, 200)
  const forged = await newKey('x')
  const flood = async () => {
    const before = idp.state.fetches
    const statuses = new Set<number>()
    for (let i = 0; i < 1000; i++) {
      forged.kid = `random-${i}-${randomUUID()}`
      statuses.add((await call(await sign(forged))).statusCode)
    }
    return { statuses: [...statuses].sort(), fetches: idp.state.fetches - before }
  }
  // Inside the cooldown of the first fetch: not checkable yet (503), and no fetch.
  t.same(await flood(), { statuses: [503], fetches: 0 })
  // After it: the first random kid fetches once and is refused (401); the rest wait for the next window.
  clock.advance(30_000)
  t.same(await flood(), { statuses: [401, 503], fetches: 1 })
  t.equal((await call(await sign(key))).statusCode, 200, 'the real key still verifies')
})

t.test('rotation: a new kid is fetched once and both keys verify', async (t) => {
  const idp = await startIdp(t)
  const k1 = await newKey('k1')
  idp.state.keys = [k1.jwk]
  const { call } = await gatewayFor(t, idp.url, { JWKS_COOLDOWN_MS: 0 })
  t.equal((await call(await sign(k1))).statusCode, 200)
  const k2 = await newKey('k2')
  idp.state.keys = [k1.jwk, k2.jwk]
  t.equal((await call(await sign(k2))).statusCode, 200, 'the new key')
  t.equal((await call(await sign(k1))).statusCode, 200, 'the old key, until it is removed')
})

t.test('a key in the set that does not import is skipped: the others verify, a token naming it is refused as an unknown kid (never 500)', async (t) => {
  const idp = await startIdp(t)
  const good = await newKey('good')
  const broken = await newKey('broken')
  // An Ed25519 public key 31 bytes long: well formed JSON, no key.
  const short = Buffer.from(broken.jwk.x!, 'base64url').subarray(1).toString('base64url')
  idp.state.keys = [{ ...broken.jwk, x: short }, good.jwk]
  const { call, tasks } = await gatewayFor(t, idp.url)
  t.equal((await call(await sign(good))).statusCode, 200, 'the key after the broken one verifies')
  // The entry counts as no key: its kid is unknown, and inside the fetch cooldown that is "not checkable yet".
  const refused = await call(await sign(broken))
  t.equal(refused.statusCode, 503, 'a token signed for the broken entry: refused as an unknown kid')
  t.equal(refused.json().error_code, 'SERVICE_UNAVAILABLE')
  t.equal(tasks.seen.length, 1, 'only the good token reached the service')
})

t.test('JWKS outage: cached keys keep working; with no keys at all, 503 (never 500)', async (t) => {
  const idp = await startIdp(t)
  const key = await newKey('k1')
  idp.state.keys = [key.jwk]
  const { call } = await gatewayFor(t, idp.url, { JWKS_COOLDOWN_MS: 0 })
  t.equal((await call(await sign(key))).statusCode, 200)
  for (const mode of ['500', 'html', 'hang'] as const) {
    idp.state.mode = mode
    const res = await call(await sign(key))
    t.equal(res.statusCode, 200, `cached key still verifies while the JWKS is ${mode}`)
  }

  for (const mode of ['500', 'html', 'hang'] as const) {
    const cold = await startIdp(t)
    cold.state.mode = mode
    const { call: coldCall } = await gatewayFor(t, cold.url, { JWKS_COOLDOWN_MS: 0 })
    const res = await coldCall(await sign(key))
    t.equal(res.statusCode, 503, `no key yet and JWKS ${mode}: 503`)
    t.same(res.json(), { detail: 'Token keys unavailable', error_code: 'SERVICE_UNAVAILABLE', status_code: 503 })
    if (mode === 'hang') t.ok(cold.state.holding > 0, 'answered while the JWKS still held the fetch: bounded by the fetch timeout')
  }

  const down = await startIdp(t)
  await down.app.close()
  const { call: downCall } = await gatewayFor(t, down.url)
  t.equal((await downCall(await sign(key))).statusCode, 503, 'JWKS server not listening: 503')
})

t.test('JWT_TRUSTED_ISSUERS is checked at start', async (t) => {
  const bad = [
    'not json',
    '{}',
    '[{"issuer":"x"}]',
    '[{"issuer":"x","audience":"a","jwks_url":"ftp://x","algorithms":["EdDSA"]}]',
    '[{"issuer":"x","audience":"a","jwks_url":"https://x/jwks","algorithms":["HS256"]}]',
    '[{"issuer":"tollgate","audience":"a","jwks_url":"https://x/jwks","algorithms":["EdDSA"]}]',
  ]
  for (const value of bad) {
    t.throws(() => trustedIssuers(gatewayConfig({ JWT_TRUSTED_ISSUERS: value })), ConfigError, value)
    try {
      trustedIssuers(gatewayConfig({ JWT_TRUSTED_ISSUERS: value }))
    } catch (err) {
      t.match((err as Error).message, /^JWT_TRUSTED_ISSUERS /, 'names the variable')
    }
  }
  t.same(trustedIssuers(gatewayConfig({ JWT_TRUSTED_ISSUERS: JSON.stringify([{ issuer: ISSUER, audience: AUDIENCE, jwks_url: 'https://x/jwks', algorithms: ['EdDSA'] }]) })), [
    { issuer: ISSUER, audience: AUDIENCE, jwksUrl: 'https://x/jwks', algorithms: ['EdDSA'] },
  ])
})
