/**
 * Tokens of our issuer have the shape the auth-service gives them: `iat`
 * (not in the future beyond the clock tolerance), `jti`, and a lifetime
 * within TOKEN_TTL_S. External issuers get the same checks where their
 * configuration asks (required_claims, max_lifetime_s).
 */
import t from 'tap'
import Fastify from 'fastify'
import { randomUUID } from 'node:crypto'
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'
import { ConfigError } from '@tollgate/common'
import { buildGateway, gatewayConfig, SECRET, startUpstream } from './helper.js'
import { trustedIssuers } from '../src/config.js'

type Tap = Parameters<typeof startUpstream>[0]
const DAY = 86_400
const nowS = () => Math.floor(Date.now() / 1000)

/** A token of our issuer with exactly the claims given (HS256, BETTER_AUTH_SECRET). */
function own(claims: { sub?: string; iat?: number; exp?: number; jti?: string }) {
  const { sub = randomUUID(), ...rest } = claims
  return new SignJWT({ email: 'a@example.com', sub, iss: 'tollgate', aud: 'tollgate-api', ...rest })
    .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
    .sign(new TextEncoder().encode(SECRET))
}

async function gateway(t: Tap, overrides: Record<string, unknown> = {}) {
  const tasks = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: tasks.url, ...overrides })
  const call = (token: string) => {
    const sub = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub
    return gw.inject({ url: `/api/${sub}/tasks`, headers: { authorization: `Bearer ${token}` } })
  }
  return { call, tasks }
}

t.test('our tokens: iat, jti and a lifetime within TOKEN_TTL_S, or 401', async (t) => {
  const { call, tasks } = await gateway(t)
  const now = nowS()
  const week = 604_800
  const refused: Array<[string, Parameters<typeof own>[0]]> = [
    ['iat a day in the future', { iat: now + DAY, exp: now + DAY + 3600, jti: randomUUID() }],
    ['iat ten years in the future', { iat: now + 3650 * DAY, exp: now + 3650 * DAY + 3600, jti: randomUUID() }],
    ['iat just beyond the clock tolerance', { iat: now + 60, exp: now + 3600, jti: randomUUID() }],
    ['no iat', { exp: now + 3600, jti: randomUUID() }],
    ['no jti', { iat: now, exp: now + 3600 }],
    ['empty jti', { iat: now, exp: now + 3600, jti: '' }],
    ['exp a hundred years out', { iat: now, exp: now + 36_500 * DAY, jti: randomUUID() }],
    ['a lifetime one second over TOKEN_TTL_S', { iat: now - 10, exp: now - 10 + week + 1, jti: randomUUID() }],
  ]
  for (const [name, claims] of refused) {
    const res = await call(await own(claims))
    t.equal(res.statusCode, 401, name)
    t.same(res.json(), { detail: 'Invalid token', error_code: 'INVALID_TOKEN', status_code: 401 }, `${name}: envelope`)
  }
  t.equal(tasks.seen.length, 0, 'none reached the service')

  const accepted: Array<[string, Parameters<typeof own>[0]]> = [
    ['as the auth-service issues it', { iat: now, exp: now + week, jti: randomUUID() }],
    ['iat a little ahead, within the clock tolerance', { iat: now + 20, exp: now + 3600, jti: randomUUID() }],
    ['a lifetime of exactly TOKEN_TTL_S, half used', { iat: now - week / 2, exp: now + week / 2, jti: randomUUID() }],
  ]
  for (const [name, claims] of accepted) t.equal((await call(await own(claims))).statusCode, 200, name)
})

t.test('TOKEN_TTL_S is the bound: a gateway told 15 minutes refuses an hour-long token', async (t) => {
  const { call } = await gateway(t, { TOKEN_TTL_S: 900 })
  const now = nowS()
  t.equal((await call(await own({ iat: now, exp: now + 900, jti: randomUUID() }))).statusCode, 200)
  t.equal((await call(await own({ iat: now, exp: now + 3600, jti: randomUUID() }))).statusCode, 401)
})

/** An external issuer's JWKS, and tokens signed by it with the claims given. */
async function externalIssuer(t: Tap) {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true })
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'EdDSA', use: 'sig' }
  const app = Fastify()
  app.get('/jwks', async () => ({ keys: [jwk] }))
  const url = `${await app.listen({ port: 0, host: '127.0.0.1' })}/jwks`
  t.teardown(() => app.close())
  const sign = (claims: { iat?: number; exp: number; jti?: string }) =>
    new SignJWT({ sub: 'DKAEwfLSToFv2sDkqGJLes0Bscdlkzch', iss: 'https://idp.example.test', aud: 'tollgate-external', ...claims })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
      .sign(privateKey)
  const config = (extra: Record<string, unknown> = {}) =>
    JSON.stringify([{ issuer: 'https://idp.example.test', audience: 'tollgate-external', jwks_url: url, algorithms: ['EdDSA'], ...extra }])
  return { sign, config }
}

t.test('external issuers: the same checks where their configuration says so', async (t) => {
  const idp = await externalIssuer(t)
  const now = nowS()
  const noJti = await idp.sign({ iat: now, exp: now + 900 })
  const noIat = await idp.sign({ exp: now + 900 })
  const longLived = await idp.sign({ iat: now, exp: now + 30 * DAY })
  const future = await idp.sign({ iat: now + DAY, exp: now + DAY + 900 })

  const lenient = await gateway(t, { JWT_TRUSTED_ISSUERS: idp.config() })
  t.equal((await lenient.call(noJti)).statusCode, 200, 'no jti: fine when not required (Better Auth sends none)')
  t.equal((await lenient.call(noIat)).statusCode, 200, 'no iat: fine when not required')
  t.equal((await lenient.call(longLived)).statusCode, 200, 'no lifetime bound configured')
  t.equal((await lenient.call(future)).statusCode, 401, 'iat in the future: refused from any issuer (it would escape a revocation by time)')

  const strict = await gateway(t, { JWT_TRUSTED_ISSUERS: idp.config({ required_claims: ['iat', 'jti'], max_lifetime_s: 900 }) })
  t.equal((await strict.call(noJti)).statusCode, 401, 'required jti')
  t.equal((await strict.call(noIat)).statusCode, 401, 'required iat')
  t.equal((await strict.call(longLived)).statusCode, 401, 'lifetime over max_lifetime_s')
  t.equal((await strict.call(await idp.sign({ iat: now, exp: now + 900, jti: randomUUID() }))).statusCode, 200, 'a token of the configured shape')
})

t.test('required_claims and max_lifetime_s are checked at start', async (t) => {
  const base = { issuer: 'https://idp.example.test', audience: 'a', jwks_url: 'https://x/jwks', algorithms: ['EdDSA'] }
  for (const extra of [{ required_claims: 'iat' }, { required_claims: ['sub', 'iat'] }, { max_lifetime_s: 0 }, { max_lifetime_s: '900' }, { max_lifetime_s: 1.5 }]) {
    t.throws(() => trustedIssuers(gatewayConfig({ JWT_TRUSTED_ISSUERS: JSON.stringify([{ ...base, ...extra }]) })), ConfigError, JSON.stringify(extra))
  }
  t.same(trustedIssuers(gatewayConfig({ JWT_TRUSTED_ISSUERS: JSON.stringify([{ ...base, required_claims: ['jti'], max_lifetime_s: 900 }]) })), [
    { issuer: base.issuer, audience: 'a', jwksUrl: base.jwks_url, algorithms: ['EdDSA'], requiredClaims: ['jti'], maxLifetimeS: 900 },
  ])
})
