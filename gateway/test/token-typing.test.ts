/**
 * S-07, explicit token typing (RFC 8725 3.11, RFC 9068): our access tokens
 * carry `typ: at+jwt` and the gateway refuses ours without it; a service
 * token is never an access token nor the reverse; an external issuer's typ is
 * checked when its declaration names one.
 */
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { serviceTokenKey, signServiceToken } from '@tollgate/common'
import { buildApp } from '../src/app.js'
import { buildGateway, gatewayConfig, SECRET, startUpstream, subOf, token, tempDir } from './helper.js'

type Tap = Parameters<typeof buildGateway>[0]

async function setup(t: Tap) {
  const auth = await startUpstream(t)
  const tasks = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url })
  const get = (jwt: string, sub = subOf(jwt)) => gw.inject({ url: `/api/${sub}/tasks`, headers: { authorization: `Bearer ${jwt}` } })
  return { gw, tasks, get }
}

t.test('our issuer: a correctly signed token is an access token only when typed at+jwt', async (t) => {
  const { get, tasks } = await setup(t)
  t.equal((await get(await token())).statusCode, 200, 'typ at+jwt')
  t.equal((await get(await token({ typ: 'application/at+jwt' }))).statusCode, 200, 'typ application/at+jwt (RFC 9068 4: the same type)')
  for (const [name, typ] of [
    ['typ JWT', 'JWT'],
    ['no typ', null],
    ['typ refresh+jwt', 'refresh+jwt'],
    ['typ svc+jwt', 'svc+jwt'],
  ] as const) {
    const res = await get(await token({ typ }))
    t.equal(res.statusCode, 401, `${name}: 401`)
    t.same(res.json(), { detail: 'Invalid token', error_code: 'INVALID_TOKEN', status_code: 401 }, `${name}: INVALID_TOKEN in the envelope`)
    t.match(res.headers['www-authenticate'], /error="invalid_token"/)
  }
  t.equal(tasks.seen.length, 2, 'only the two access tokens reached the service')
})

t.test('a service token is refused as an access token, and an access token as a service token', async (t) => {
  const { gw, get, tasks } = await setup(t)
  const user = await token()
  const service = (await signServiceToken(serviceTokenKey(SECRET), { service: 'auth-service', scope: [], issuer: 'tollgate', ttlSeconds: 300 })).token
  const asAccess = await get(service, subOf(user))
  t.equal(asAccess.statusCode, 401, 'a service token on a user route')
  t.equal(asAccess.json().error_code, 'INVALID_TOKEN')
  // Everything of a service token but its typ (key, audience, claims): still not one.
  const typedAsAccess = await new SignJWT({ svc: 'auth-service', scope: [] })
    .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
    .setSubject('service:auth-service')
    .setIssuer('tollgate')
    .setAudience('tollgate-internal')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(serviceTokenKey(SECRET))
  for (const [name, jwt] of [
    ['an access token', user],
    ['a service token typed at+jwt', typedAsAccess],
  ] as const) {
    const res = await gw.internal.inject({ method: 'DELETE', url: '/internal/users/u-1/tasks', headers: { authorization: `Bearer ${jwt}` } })
    t.equal(res.statusCode, 401, `${name} on a service route`)
    t.equal(res.json().error_code, 'INVALID_TOKEN')
  }
  t.equal(tasks.seen.length, 0, 'none reached the service')
})

const PARTNER_SECRET = 'partner-secret-0123456789-abcdefghijklmnop'
const LOOSE_SECRET = 'loose-secret-0123456789-abcdefghijklmnopqr'

function gatewayFile(selfTyp = '') {
  const file = join(tempDir(t, 'tollgate-typ-'), 'gw.yaml')
  writeFileSync(
    file,
    `issuers:
  self: { issuer: tollgate, audience: tollgate-api, algorithms: [HS256], secret: "\${BETTER_AUTH_SECRET}"${selfTyp} }
  partner: { issuer: partner, audience: partner-api, algorithms: [HS256], secret: "${PARTNER_SECRET}", typ: at+jwt }
  loose: { issuer: loose, audience: loose-api, algorithms: [HS256], secret: "${LOOSE_SECRET}" }
upstreams:
  auth: { targets: "\${AUTH_SERVICE_URL}" }
routes:
  - { methods: [GET], path: /api/:user_id/things, upstream: auth, access: owner(user_id) }
`,
  )
  return file
}

t.test("an external issuer's typ is checked as declared; undeclared, it is not", async (t) => {
  const up = await startUpstream(t)
  const gw = await buildApp(gatewayConfig({ GATEWAY_CONFIG: gatewayFile(), AUTH_SERVICE_URL: up.url }))
  t.teardown(() => gw.close())
  await gw.ready()
  const status = async (jwt: string) => (await gw.inject({ url: `/api/${subOf(jwt)}/things`, headers: { authorization: `Bearer ${jwt}` } })).statusCode
  const partner = { iss: 'partner', aud: 'partner-api', secret: PARTNER_SECRET }
  t.equal(await status(await token({ ...partner, typ: 'at+jwt' })), 200, 'declared at+jwt: at+jwt passes')
  t.equal(await status(await token({ ...partner, typ: 'JWT' })), 401, 'declared at+jwt: JWT refused')
  t.equal(await status(await token({ ...partner, typ: null })), 401, 'declared at+jwt: no typ refused')
  const loose = { iss: 'loose', aud: 'loose-api', secret: LOOSE_SECRET }
  t.equal(await status(await token({ ...loose, typ: 'JWT' })), 200, 'undeclared: JWT passes (Better Auth says JWT)')
  t.equal(await status(await token({ ...loose, typ: null })), 200, 'undeclared: no typ passes')
  // Our own issuer in a file that does not say typ: held to at+jwt all the same.
  t.equal(await status(await token({ typ: 'JWT' })), 401, 'our issuer, typ JWT, without a typ line')
  t.equal(await status(await token()), 200, 'our issuer, at+jwt')
})

t.test('a file that types our own issuer otherwise is refused at start', async (t) => {
  const up = await startUpstream(t)
  await t.rejects(buildApp(gatewayConfig({ GATEWAY_CONFIG: gatewayFile(', typ: JWT'), AUTH_SERVICE_URL: up.url })), /issuers\.self\.typ: the auth-service's tokens are typed at\+jwt/)
})
