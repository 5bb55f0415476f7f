import t from 'tap'
import { asUser, build, db, inject, PASSWORD, secretFree, signup } from './helper.js'

t.test('me answers the caller’s public profile', async (t) => {
  const app = await build(t)
  const { id, email, res: created } = await signup(app, { name: 'Linus' })
  const res = await inject(app, { method: 'GET', url: '/api/auth/me', identity: asUser(id) })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  t.same(Object.keys(body).sort(), ['created_at', 'email', 'id', 'name', 'updated_at'])
  t.same(body, { id, email, name: 'Linus', created_at: created.json().created_at, updated_at: body.updated_at })
  t.match(body.updated_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
  t.ok(secretFree(res, PASSWORD), 'no password or hash in the body')
})

t.test('me for a user that no longer exists is 401 INVALID_TOKEN', async (t) => {
  const app = await build(t)
  const { id } = await signup(app)
  const client = await db(t)
  await client.query('DELETE FROM users WHERE id = $1', [id])
  const res = await inject(app, { method: 'GET', url: '/api/auth/me', identity: asUser(id) })
  t.equal(res.statusCode, 401)
  t.same(res.json(), { detail: 'Invalid token', error_code: 'INVALID_TOKEN', status_code: 401 })
  t.match(res.headers['www-authenticate'], /error="invalid_token"/)
})

t.test('a subject that is not one of our ids is 401, never a 500', async (t) => {
  const app = await build(t)
  // External issuers' ids are opaque text (Better Auth: 32 random characters).
  for (const sub of ['DKAEwfLSToFv2sDkqGJLes0Bscdlkzch', "1' OR '1'='1", '00000000-0000-4000-8000-000000000000']) {
    const res = await inject(app, { method: 'GET', url: '/api/auth/me', identity: asUser(sub) })
    t.equal(res.statusCode, 401, sub)
    t.equal(res.json().error_code, 'INVALID_TOKEN', sub)
  }
})

t.test('me refuses an anonymous caller', async (t) => {
  const app = await build(t)
  const res = await inject(app, { method: 'GET', url: '/api/auth/me' })
  t.equal(res.statusCode, 401)
  t.equal(res.json().error_code, 'UNAUTHORIZED')
})
