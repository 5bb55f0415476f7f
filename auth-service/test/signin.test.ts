import t from 'tap'
import { decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose'
import { build, db, inject, PASSWORD, SECRET, secretFree, signin, signup, uniqueEmail } from './helper.js'

const KEY = new TextEncoder().encode(SECRET)
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

t.test('signin answers the user, a token and its expiry', async (t) => {
  const app = await build(t)
  const { id, email } = await signup(app, { name: 'Grace' })
  const before = Math.floor(Date.now() / 1000)
  const res = await signin(app, ` ${email.toUpperCase()} `, PASSWORD)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  t.same(Object.keys(body).sort(), ['expires_at', 'token', 'user'])
  t.same(body.user, { id, email, name: 'Grace' })
  t.match(body.expires_at, ISO)
  t.ok(secretFree(res, PASSWORD), 'no password or hash in the body')

  t.same(decodeProtectedHeader(body.token), { alg: 'HS256', typ: 'at+jwt' })
  const { payload } = await jwtVerify(body.token, KEY, {
    algorithms: ['HS256'],
    issuer: 'tollgate',
    audience: 'tollgate-api',
  })
  t.equal(payload.sub, id)
  t.equal(payload.email, email)
  t.equal(payload.name, 'Grace')
  t.match(payload.jti, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  t.equal(payload.exp! - payload.iat!, 604800, '7 days by default')
  t.ok(payload.iat! >= before && payload.iat! <= Math.floor(Date.now() / 1000) + 1)
  t.equal(new Date(body.expires_at).getTime(), payload.exp! * 1000, 'expires_at is exp')
})

t.test('each sign-in is a fresh token with its own jti; claims follow config', async (t) => {
  const app = await build(t, { TOKEN_TTL_S: '900', JWT_ISSUER: 'issuer-x', JWT_AUDIENCE: 'aud-y' })
  const { email } = await signup(app)
  const a = decodeJwt((await signin(app, email, PASSWORD)).json().token)
  const b = decodeJwt((await signin(app, email, PASSWORD)).json().token)
  t.not(a.jti, b.jti)
  t.equal(a.exp! - a.iat!, 900)
  t.equal(a.iss, 'issuer-x')
  t.equal(a.aud, 'aud-y')
  t.equal(a.name, null, 'a user without a name gets name: null')
})

t.test('unknown email and wrong password give the identical answer', async (t) => {
  const app = await build(t)
  const { email } = await signup(app)
  const wrong = await signin(app, email, 'not the password')
  const unknown = await signin(app, uniqueEmail('nobody'), 'not the password')
  for (const res of [wrong, unknown]) {
    t.equal(res.statusCode, 401)
    t.same(res.json(), { detail: 'Invalid email or password', error_code: 'INVALID_CREDENTIALS', status_code: 401 })
    t.match(res.headers['www-authenticate'], /^Bearer realm=/)
  }
  t.equal(wrong.body, unknown.body, 'byte-identical bodies')
  const headers = (h: Record<string, unknown>) => {
    const { date: _d, 'x-request-id': _r, ...rest } = h
    return rest
  }
  t.same(headers(wrong.headers), headers(unknown.headers), 'identical headers but date and request id')
})

t.test('an unknown email costs a bcrypt comparison, like a wrong password', async (t) => {
  const app = await build(t)
  const { email } = await signup(app)
  const time = async (e: string) => {
    const start = process.hrtime.bigint()
    await signin(app, e, 'not the password')
    return Number(process.hrtime.bigint() - start) / 1e6
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const wrong: number[] = []
  const unknown: number[] = []
  for (let i = 0; i < 5; i++) {
    wrong.push(await time(email))
    unknown.push(await time(uniqueEmail('nobody')))
  }
  // Without the dummy hash an unknown email answers in ~1 ms against tens of ms.
  t.ok(median(unknown) > median(wrong) * 0.4, `unknown ${median(unknown)} ms vs wrong ${median(wrong)} ms`)
})

t.test('verification is byte-exact: NUL and over-long passwords never match', async (t) => {
  const app = await build(t)
  const nul = await inject(app, {
    method: 'POST',
    url: '/api/auth/signup',
    payload: { email: uniqueEmail(), password: 'abc\u0000defgh' },
  })
  t.equal(nul.statusCode, 400, 'a password with NUL is refused at signup')

  // bcrypt cycles "password + NUL" over 72 bytes: these would alias without the NUL rule.
  const { email } = await signup(app, { password: 'abcdefgh' })
  const alias = await signin(app, email, 'abcdefgh\u0000abcdefgh')
  t.equal(alias.statusCode, 401)
  t.equal(alias.json().error_code, 'INVALID_CREDENTIALS')
  t.equal((await signin(app, email, 'abc\u0000xyzzy')).statusCode, 401)

  // bcrypt would ignore byte 73 onwards: a longer password must not match a 72-byte one.
  const p72 = 'p'.repeat(72)
  const long = await signup(app, { password: p72 })
  t.equal((await signin(app, long.email, p72)).statusCode, 200, 'the 72-byte password works')
  t.equal((await signin(app, long.email, `${p72}x`)).statusCode, 401, '72 bytes + more does not')

  const emoji = await signup(app, { password: '😀'.repeat(18) })
  t.equal((await signin(app, emoji.email, '😀'.repeat(18))).statusCode, 200, 'multi-byte password works')
  t.equal((await signin(app, emoji.email, '😀'.repeat(17))).statusCode, 401)
})

t.test('signin validation: 400 for a malformed request, never a 500', async (t) => {
  const app = await build(t)
  const cases: Array<[string, unknown]> = [
    ['missing password', { email: uniqueEmail() }],
    ['missing email', { password: PASSWORD }],
    ['bad email', { email: 'nope', password: PASSWORD }],
    ['empty password', { email: uniqueEmail(), password: '' }],
    ['NUL in email', { email: 'x\u0000@example.com', password: PASSWORD }],
  ]
  for (const [what, payload] of cases) {
    const res = await inject(app, { method: 'POST', url: '/api/auth/signin', payload })
    t.equal(res.statusCode, 400, what)
    t.equal(res.json().error_code, 'VALIDATION_ERROR', what)
  }
})

t.test('a hash made with a lower cost is upgraded at the next sign-in', async (t) => {
  const at10 = await build(t)
  const { id, email } = await signup(at10)
  const client = await db(t)
  const stored = async () => (await client.query('SELECT password_hash, updated_at FROM users WHERE id = $1', [id])).rows[0]
  const before = await stored()
  t.match(before.password_hash, /^\$2b\$10\$/)

  const at11 = await build(t, { BCRYPT_COST: '11' })
  t.equal((await signin(at11, email, 'wrong password')).statusCode, 401)
  t.match((await stored()).password_hash, /^\$2b\$10\$/, 'a failed sign-in changes nothing')

  t.equal((await signin(at11, email, PASSWORD)).statusCode, 200)
  const after = await stored()
  t.match(after.password_hash, /^\$2b\$11\$/, 'upgraded to cost 11')
  t.same(after.updated_at, before.updated_at, 'an internal rehash is not a profile update')
  t.equal((await signin(at11, email, PASSWORD)).statusCode, 200, 'the new hash verifies')

  // Never downgraded by a replica still running the lower cost.
  t.equal((await signin(at10, email, PASSWORD)).statusCode, 200)
  t.match((await stored()).password_hash, /^\$2b\$11\$/)
})
