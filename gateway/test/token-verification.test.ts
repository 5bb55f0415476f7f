/** Every way a bearer token can be wrong gets a 401 in the envelope, and never reaches a service. */
import t from 'tap'
import { createClock } from '@sinonjs/fake-timers'
import { generateKeyPair, SignJWT, UnsecuredJWT } from 'jose'
import { buildGateway, SECRET, startUpstream, subOf, token } from './helper.js'

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url')

t.test('token refusal matrix', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url, AUTH_SERVICE_URL: up.url })
  const good = await token()
  const sub = subOf(good)
  const [h, p, s] = good.split('.')
  const rsa = await generateKeyPair('RS256')
  const cases: Array<[string, string | undefined, string]> = [
    ['no header', undefined, 'UNAUTHORIZED'],
    ['basic scheme', 'Basic dXNlcjpwYXNz', 'UNAUTHORIZED'],
    ['bearer without token', 'Bearer', 'INVALID_TOKEN'],
    ['bearer with spaces only', 'Bearer    ', 'INVALID_TOKEN'],
    ['garbage', 'Bearer not-a-jwt', 'INVALID_TOKEN'],
    ['wrong secret', `Bearer ${await token({ sub, secret: 'another-secret-0123456789-abcdefghijklmnop' })}`, 'INVALID_TOKEN'],
    ['expired', `Bearer ${await token({ sub, expiresIn: Math.floor(Date.now() / 1000) - 120 })}`, 'TOKEN_EXPIRED'],
    ['alg none', `Bearer ${new UnsecuredJWT({ sub }).setIssuer('tollgate').setAudience('tollgate-api').setExpirationTime('1h').encode()}`, 'INVALID_TOKEN'],
    ['alg None with signature', `Bearer ${b64({ alg: 'None', typ: 'at+jwt' })}.${p}.${s}`, 'INVALID_TOKEN'],
    ['HS512 with the right secret', `Bearer ${await token({ sub, alg: 'HS512' })}`, 'INVALID_TOKEN'],
    [
      'RS256 (asymmetric) token',
      `Bearer ${await new SignJWT({ sub }).setProtectedHeader({ alg: 'RS256' }).setIssuer('tollgate').setAudience('tollgate-api').setExpirationTime('1h').sign(rsa.privateKey)}`,
      'INVALID_TOKEN',
    ],
    ['tampered payload', `Bearer ${h}.${b64({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), sub: 'someone-else' })}.${s}`, 'INVALID_TOKEN'],
    // The first character: its six bits are all signature (the last one's low bits are padding, so
    // rewriting the end could leave the signature unchanged about once in a thousand runs).
    ['tampered signature', `Bearer ${h}.${p}.${s![0] === 'A' ? 'B' : 'A'}${s!.slice(1)}`, 'INVALID_TOKEN'],
    ['missing sub', `Bearer ${await token({ sub: null })}`, 'INVALID_TOKEN'],
    ['unsafe sub', `Bearer ${await token({ sub: '../etc/passwd' })}`, 'INVALID_TOKEN'],
    ['wrong issuer', `Bearer ${await token({ sub, iss: 'evil' })}`, 'INVALID_TOKEN'],
    ['wrong audience', `Bearer ${await token({ sub, aud: 'other-api' })}`, 'INVALID_TOKEN'],
    ['JWE-shaped (5 parts)', `Bearer ${h}.${p}.${s}.${s}.${s}`, 'INVALID_TOKEN'],
    ['JSON serialization', `Bearer ${JSON.stringify({ payload: p, signatures: [{ protected: h, signature: s }] })}`, 'INVALID_TOKEN'],
    ['jku header to attacker', `Bearer ${b64({ alg: 'HS256', jku: 'http://127.0.0.1:9/jwks' })}.${p}.${s}`, 'INVALID_TOKEN'],
    ['oversized', `Bearer ${'a'.repeat(9000)}.${p}.${s}`, 'INVALID_TOKEN'],
  ]
  for (const [name, authorization, code] of cases) {
    const res = await gw.inject({ method: 'GET', url: `/api/${sub}/tasks`, headers: authorization ? { authorization } : {} })
    t.equal(res.statusCode, 401, `${name}: 401`)
    const body = res.json()
    t.same(body, { detail: body.detail, error_code: code, status_code: 401 }, `${name}: ${code} envelope`)
    const challenge = res.headers['www-authenticate'] as string
    t.match(challenge, /^Bearer realm="api"/, `${name}: RFC 6750 challenge`)
    if (code !== 'UNAUTHORIZED') t.match(challenge, /error="invalid_token"/, `${name}: invalid_token challenge`)
  }
  t.equal(up.seen.length, 0, 'no refused request reached the service')

  const expired = await gw.inject({
    method: 'GET',
    url: `/api/${sub}/tasks`,
    headers: { authorization: `Bearer ${await token({ sub, expiresIn: Math.floor(Date.now() / 1000) - 120 })}` },
  })
  t.equal(expired.json().detail, 'Token has expired')
  const invalid = await gw.inject({ method: 'GET', url: `/api/${sub}/tasks`, headers: { authorization: 'Bearer x.y.z' } })
  t.equal(invalid.json().detail, 'Invalid token')

  const ok = await gw.inject({ method: 'GET', url: `/api/${sub}/tasks`, headers: { authorization: `bearer ${good}` } })
  t.equal(ok.statusCode, 200, 'positive control: the scheme is case-insensitive')
})

t.test('a token in the query string is not a credential', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url })
  const good = await token()
  const res = await gw.inject({ method: 'GET', url: `/api/${subOf(good)}/tasks?access_token=${good}` })
  t.equal(res.statusCode, 401)
  t.equal(res.json().error_code, 'UNAUTHORIZED')
  t.equal(up.seen.length, 0)
})

t.test('clock tolerance: a token expired 10 s ago still passes, 31 s ago does not', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url })
  const now = Math.floor(Date.now() / 1000)
  const recent = await token({ expiresIn: now - 10 })
  const stale = await token({ expiresIn: now - 31 })
  t.equal((await gw.inject({ url: `/api/${subOf(recent)}/tasks`, headers: { authorization: `Bearer ${recent}` } })).statusCode, 200)
  t.equal((await gw.inject({ url: `/api/${subOf(stale)}/tasks`, headers: { authorization: `Bearer ${stale}` } })).statusCode, 401)
})

t.test('a cached token still expires', async (t) => {
  const up = await startUpstream(t)
  const short = await token({ expiresIn: Math.floor(Date.now() / 1000) + 2 })
  // The gateway's clock starts after the token was signed (its iat is not in the future) and moves past its exp.
  const clock = createClock(Date.now())
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url, JWT_CLOCK_TOLERANCE_S: 0 }, { now: () => clock.now })
  const url = `/api/${subOf(short)}/tasks`
  t.equal((await gw.inject({ url, headers: { authorization: `Bearer ${short}` } })).statusCode, 200)
  clock.tick(2100)
  const res = await gw.inject({ url, headers: { authorization: `Bearer ${short}` } })
  t.equal(res.statusCode, 401)
  t.equal(res.json().error_code, 'TOKEN_EXPIRED')
})

t.test('ids are opaque: a Better Auth style subject works', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url })
  const sub = 'DKAEwfLSToFv2sDkqGJLes0Bscdlkzch'
  const jwt = await token({ sub })
  const res = await gw.inject({ url: `/api/${sub}/tasks`, headers: { authorization: `Bearer ${jwt}` } })
  t.equal(res.statusCode, 200)
  t.equal(up.seen[0]!.headers['x-user-id'], sub)
  void SECRET
})
