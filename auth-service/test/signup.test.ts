import t from 'tap'
import bcrypt from 'bcrypt'
import { commonPasswordCount } from '../src/credentials/common-passwords.js'
import { build, db, inject, PASSWORD, secretFree, signup, uniqueEmail } from './helper.js'

const SIGNUP = '/api/auth/signup'
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

t.test('signup creates a user and answers 201 with the public fields only', async (t) => {
  const app = await build(t)
  const email = uniqueEmail()
  const res = await inject(app, { method: 'POST', url: SIGNUP, payload: { email, password: PASSWORD, name: 'Ada' } })
  t.equal(res.statusCode, 201)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['created_at', 'email', 'id', 'name'])
  t.match(body.id, UUID)
  t.equal(body.email, email)
  t.equal(body.name, 'Ada')
  t.match(body.created_at, ISO)
  t.equal(res.headers['cache-control'], 'no-store')
  t.ok(secretFree(res, PASSWORD), 'no password or hash in the body')

  const client = await db(t)
  const { rows } = await client.query('SELECT email, password_hash FROM users WHERE id = $1', [body.id])
  t.equal(rows[0].email, email)
  t.match(rows[0].password_hash, /^\$2b\$10\$/, 'stored as a bcrypt hash with the configured cost')
  t.not(rows[0].password_hash, PASSWORD)
})

t.test('email is trimmed and lower-cased before validation and storage', async (t) => {
  const app = await build(t)
  const email = uniqueEmail()
  const res = await inject(app, {
    method: 'POST',
    url: SIGNUP,
    payload: { email: `  ${email.toUpperCase()}\t`, password: PASSWORD },
  })
  t.equal(res.statusCode, 201)
  t.equal(res.json().email, email)
})

t.test('name is optional and may be null; it is stored as sent', async (t) => {
  const app = await build(t)
  const none = await signup(app)
  t.equal(none.res.json().name, null)
  const explicitNull = await signup(app, { name: null })
  t.equal(explicitNull.res.json().name, null)
  const empty = await signup(app, { name: '' })
  t.equal(empty.res.json().name, '', 'an empty name is not turned into null')
  const hundred = 'é'.repeat(50) + '😀'.repeat(50)
  const long = await signup(app, { name: hundred })
  t.equal(long.res.json().name, hundred, '100 characters, some outside the BMP, fit')
})

t.test('unknown body fields are ignored, never stored or echoed', async (t) => {
  const app = await build(t)
  const email = uniqueEmail()
  const res = await inject(app, {
    method: 'POST',
    url: SIGNUP,
    payload: { email, password: PASSWORD, id: '00000000-0000-4000-8000-000000000000', password_hash: 'x', admin: true },
  })
  t.equal(res.statusCode, 201)
  t.not(res.json().id, '00000000-0000-4000-8000-000000000000')
  t.notOk('admin' in res.json())
})

t.test('validation matrix: 400 VALIDATION_ERROR envelope, never a 500', async (t) => {
  const app = await build(t)
  const cases: Array<[string, Record<string, unknown>]> = [
    ['missing email', { password: PASSWORD }],
    ['missing password', { email: uniqueEmail() }],
    ['empty object', {}],
    ['bad email', { email: 'not-an-email', password: PASSWORD }],
    ['email not a string', { email: { $gt: '' }, password: PASSWORD }],
    ['email over 255 chars', { email: `${'a'.repeat(60)}@${`${'b'.repeat(60)}.`.repeat(4)}com`, password: PASSWORD }],
    ['7-char password', { email: uniqueEmail(), password: '1234567' }],
    ['73-byte password', { email: uniqueEmail(), password: 'a'.repeat(73) }],
    ['73 bytes in 72 characters', { email: uniqueEmail(), password: 'é' + 'a'.repeat(71) }],
    ['40 four-byte emoji (160 bytes)', { email: uniqueEmail(), password: '😀'.repeat(40) }],
    ['password with NUL', { email: uniqueEmail(), password: 'abc\u0000defgh' }],
    ['name of 101 chars', { email: uniqueEmail(), password: PASSWORD, name: 'n'.repeat(101) }],
    ['name not a string', { email: uniqueEmail(), password: PASSWORD, name: { a: 1 } }],
    ['NUL in name', { email: uniqueEmail(), password: PASSWORD, name: 'Ada\u0000Lovelace' }],
    ['NUL in email', { email: 'a\u0000b@example.com', password: PASSWORD }],
  ]
  for (const [what, payload] of cases) {
    const res = await inject(app, { method: 'POST', url: SIGNUP, payload })
    t.equal(res.statusCode, 400, what)
    t.match(res.json(), { error_code: 'VALIDATION_ERROR', status_code: 400, detail: String }, what)
    t.notMatch(res.body, /\bat .+:\d+:\d+|SELECT|INSERT|pg_|127\.0\.0\.1/i, `${what}: no internals`)
    t.equal(res.headers['cache-control'], 'no-store', `${what}: no-store`)
  }
})

t.test('boundaries that must pass: 72-byte password, 8-char password, 255-char email', async (t) => {
  const app = await build(t)
  const ok72 = await inject(app, { method: 'POST', url: SIGNUP, payload: { email: uniqueEmail(), password: 'a'.repeat(72) } })
  t.equal(ok72.statusCode, 201, '72 ASCII bytes')
  const okMulti = await inject(app, {
    method: 'POST',
    url: SIGNUP,
    payload: { email: uniqueEmail(), password: '😀'.repeat(18) },
  })
  t.equal(okMulti.statusCode, 201, '18 four-byte emoji = 72 bytes')
  const ok8 = await inject(app, { method: 'POST', url: SIGNUP, payload: { email: uniqueEmail(), password: 'k7#vQ2pz' } })
  t.equal(ok8.statusCode, 201, '8 characters')
  const local = uniqueEmail('x').split('@')[0]!
  const domain = `${'d'.repeat(60)}.${'e'.repeat(60)}.${'f'.repeat(60)}.`
  const email = `${local}@${domain}${'g'.repeat(255 - local.length - 1 - domain.length - 4)}.com`
  t.equal(email.length, 255)
  const ok255 = await inject(app, { method: 'POST', url: SIGNUP, payload: { email, password: PASSWORD } })
  t.equal(ok255.statusCode, 201, '255-character email')
})

t.test('malformed JSON is a 400 envelope; a non-JSON body is a 415 envelope', async (t) => {
  const app = await build(t)
  const raw = (payload: string, contentType: string) => inject(app, { method: 'POST', url: SIGNUP, payload, headers: { 'content-type': contentType } })

  const bad = await raw('{"email": "a@b.co", "password": ', 'application/json')
  t.equal(bad.statusCode, 400)
  t.same(bad.json(), { detail: 'Malformed JSON body', error_code: 'VALIDATION_ERROR', status_code: 400 })

  const proto = await raw(`{"email":"${uniqueEmail()}","password":"${PASSWORD}","__proto__":{"admin":true}}`, 'application/json')
  t.equal(proto.statusCode, 400, 'prototype poisoning is refused')
  t.equal(proto.json().status_code, 400)

  const text = await raw('email=a@b.co&password=12345678', 'text/plain')
  t.equal(text.statusCode, 415)
  t.same(text.json(), { detail: 'Unsupported media type', error_code: 'UNSUPPORTED_MEDIA_TYPE', status_code: 415 })

  const form = await raw('email=a@b.co&password=12345678', 'application/x-www-form-urlencoded')
  t.equal(form.statusCode, 415)
  t.equal(form.json().error_code, 'UNSUPPORTED_MEDIA_TYPE')

  const empty = await inject(app, { method: 'POST', url: SIGNUP })
  t.equal(empty.statusCode, 400, 'no body at all')
  t.equal(empty.json().error_code, 'VALIDATION_ERROR')
})

t.test('a duplicate email, in any case, is 409 CONFLICT', async (t) => {
  const app = await build(t)
  const first = await signup(app)
  for (const email of [first.email, first.email.toUpperCase(), ` ${first.email.replace(/^./, (c) => c.toUpperCase())} `]) {
    const res = await inject(app, { method: 'POST', url: SIGNUP, payload: { email, password: 'another password' } })
    t.equal(res.statusCode, 409, email)
    t.same(res.json(), { detail: 'Email already registered', error_code: 'CONFLICT', status_code: 409 })
  }
})

t.test('20 concurrent signups with one email: exactly one 201, the rest 409', async (t) => {
  const app = await build(t)
  const email = uniqueEmail('race')
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      inject(app, {
        method: 'POST',
        url: SIGNUP,
        payload: { email: i % 2 ? email.toUpperCase() : email, password: `${PASSWORD} ${i}` },
      }),
    ),
  )
  const codes = results.map((r) => r.statusCode)
  t.equal(codes.filter((c) => c === 201).length, 1, 'one winner')
  t.equal(codes.filter((c) => c === 409).length, 19, 'nineteen conflicts')
  const client = await db(t)
  const { rows } = await client.query('SELECT count(*)::int AS n FROM users WHERE lower(email) = $1', [email])
  t.equal(rows[0].n, 1, 'one row')
})

t.test('commonly used passwords are refused at signup with a 400 that says why (ASVS 2.1.7)', async (t) => {
  const app = await build(t)
  const client = await db(t)
  for (const password of ['password', '12345678', 'Password', 'QWERTYUIOP', 'iloveyou', 'sunshine1']) {
    const email = uniqueEmail()
    const res = await inject(app, { method: 'POST', url: SIGNUP, payload: { email, password } })
    t.equal(res.statusCode, 400, `${password} is refused`)
    t.same(res.json(), {
      detail: 'body/password is one of the most commonly used passwords; choose another',
      error_code: 'VALIDATION_ERROR',
      status_code: 400,
    })
    const { rows } = await client.query('SELECT 1 FROM users WHERE email = $1', [email])
    t.equal(rows.length, 0, 'no account was created')
  }
  t.ok(commonPasswordCount >= 10_000, `the list holds ${commonPasswordCount} passwords a sign-up could use`)
  const rare = await inject(app, { method: 'POST', url: SIGNUP, payload: { email: uniqueEmail(), password: 'plum-kettle-orbit-93' } })
  t.equal(rare.statusCode, 201, 'an uncommon password is accepted')
})

t.test('an existing account with a common password still signs in (only sign-up checks the list)', async (t) => {
  const app = await build(t)
  const email = uniqueEmail('legacy')
  const client = await db(t)
  // An account created before the list existed.
  await client.query('INSERT INTO users (email, password_hash) VALUES ($1, $2)', [email, await bcrypt.hash('password', 10)])
  const res = await inject(app, { method: 'POST', url: '/api/auth/signin', payload: { email, password: 'password' } })
  t.equal(res.statusCode, 200)
})
