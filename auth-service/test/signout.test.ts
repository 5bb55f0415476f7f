import t from 'tap'
import { SignJWT, decodeJwt } from 'jose'
import { asUser, build, db, inject, PASSWORD, SECRET, signin, signup } from './helper.js'

const KEY = new TextEncoder().encode(SECRET)

async function session(app: Awaited<ReturnType<typeof build>>) {
  const user = await signup(app)
  const token: string = (await signin(app, user.email, PASSWORD)).json().token
  return { ...user, token }
}

function signout(app: Awaited<ReturnType<typeof build>>, userId: string, authorization?: string) {
  return inject(app, {
    method: 'POST',
    url: '/api/auth/signout',
    identity: asUser(userId),
    ...(authorization === undefined ? {} : { headers: { authorization } }),
  })
}

function forge(claims: Record<string, unknown>, opts: { key?: Uint8Array; alg?: string; typ?: string | null } = {}) {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ iss: 'tollgate', aud: 'tollgate-api', iat: now, exp: now + 600, jti: crypto.randomUUID(), ...claims })
    .setProtectedHeader({ alg: opts.alg ?? 'HS256', ...(opts.typ === null ? {} : { typ: opts.typ ?? 'at+jwt' }) })
    .sign(opts.key ?? KEY)
}

t.test('signout stores the revocation and answers 204 with no body', async (t) => {
  const app = await build(t)
  const { id, token } = await session(app)
  const res = await signout(app, id, `Bearer ${token}`)
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  t.equal(res.headers['cache-control'], 'no-store')

  const { jti, exp } = decodeJwt(token)
  const client = await db(t)
  const { rows } = await client.query(
    'SELECT user_id, extract(epoch FROM expires_at)::bigint AS exp, seq FROM revoked_tokens WHERE jti = $1',
    [jti],
  )
  t.equal(rows.length, 1)
  t.equal(rows[0].user_id, id)
  t.equal(Number(rows[0].exp), exp, 'kept until the token would expire')
  t.ok(Number(rows[0].seq) > 0, 'a sequence number for the gateway to poll')

  const again = await signout(app, id, `Bearer ${token}`)
  t.equal(again.statusCode, 204, 'signing out twice is not an error')
  const count = await client.query('SELECT count(*)::int AS n FROM revoked_tokens WHERE jti = $1', [jti])
  t.equal(count.rows[0].n, 1)
})

t.test('only the token signed out is revoked', async (t) => {
  const app = await build(t)
  const { id, email, token } = await session(app)
  const other: string = (await signin(app, email, PASSWORD)).json().token
  t.equal((await signout(app, id, `Bearer ${token}`)).statusCode, 204)
  const client = await db(t)
  const { rows } = await client.query('SELECT jti FROM revoked_tokens WHERE jti = $1', [decodeJwt(other).jti])
  t.equal(rows.length, 0, 'the same user’s other token is untouched')
})

t.test('signing out someone else’s token is 401 and revokes nothing', async (t) => {
  const app = await build(t)
  const alice = await session(app)
  const bob = await session(app)
  const res = await signout(app, alice.id, `Bearer ${bob.token}`)
  t.equal(res.statusCode, 401)
  t.same(res.json(), { detail: 'Invalid token', error_code: 'INVALID_TOKEN', status_code: 401 })
  const client = await db(t)
  const { rows } = await client.query('SELECT 1 FROM revoked_tokens WHERE jti = $1', [decodeJwt(bob.token).jti])
  t.equal(rows.length, 0)
})

t.test('a missing, malformed or untrusted token is 401 INVALID_TOKEN', async (t) => {
  const app = await build(t)
  const { id, token } = await session(app)
  const [h, p] = token.split('.')
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${p}.`
  const cases: Array<[string, string | undefined]> = [
    ['no header', undefined],
    ['empty', ''],
    ['not bearer', `Basic ${Buffer.from('a:b').toString('base64')}`],
    ['bearer without token', 'Bearer '],
    ['garbage', 'Bearer not.a.jwt'],
    ['alg none', `Bearer ${none}`],
    ['tampered payload', `Bearer ${h}.${Buffer.from(JSON.stringify({ ...decodeJwt(token), sub: 'x' })).toString('base64url')}.${token.split('.')[2]}`],
    ['wrong key', `Bearer ${await forge({ sub: id }, { key: new TextEncoder().encode('another-secret-another-secret-0123456789') })}`],
    ['wrong algorithm', `Bearer ${await forge({ sub: id }, { alg: 'HS512' })}`],
    ['wrong issuer', `Bearer ${await forge({ sub: id, iss: 'evil' })}`],
    ['wrong audience', `Bearer ${await forge({ sub: id, aud: 'other' })}`],
    ['no jti', `Bearer ${await forge({ sub: id, jti: undefined })}`],
    ['no sub', `Bearer ${await forge({})}`],
    // S-07: not typed as an access token (RFC 9068).
    ['typ JWT', `Bearer ${await forge({ sub: id }, { typ: 'JWT' })}`],
    ['no typ', `Bearer ${await forge({ sub: id }, { typ: null })}`],
    ['typ refresh+jwt', `Bearer ${await forge({ sub: id }, { typ: 'refresh+jwt' })}`],
  ]
  for (const [what, authorization] of cases) {
    const res = await signout(app, id, authorization)
    t.equal(res.statusCode, 401, what)
    t.equal(res.json().error_code, 'INVALID_TOKEN', what)
    t.match(res.headers['www-authenticate'], /error="invalid_token"/, what)
  }
})

t.test('an expired token is 401 TOKEN_EXPIRED', async (t) => {
  const app = await build(t)
  const { id } = await signup(app)
  const now = Math.floor(Date.now() / 1000)
  const expired = await forge({ sub: id, iat: now - 7200, exp: now - 3600 })
  const res = await signout(app, id, `Bearer ${expired}`)
  t.equal(res.statusCode, 401)
  t.equal(res.json().error_code, 'TOKEN_EXPIRED')
})

t.test('signout refuses an anonymous caller', async (t) => {
  const app = await build(t)
  const { token } = await session(app)
  const res = await inject(app, { method: 'POST', url: '/api/auth/signout', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 401)
  t.equal(res.json().error_code, 'UNAUTHORIZED')
})
