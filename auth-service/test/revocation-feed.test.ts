/** The feed the gateway polls: new revocations by cursor, expired ones never, gateway callers only. */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { build, inject } from './helper.js'

const gateway = { caller: 'service:gateway' as const, userId: '' }

t.test('revocations appear in the feed after the cursor, and only unexpired ones', async (t) => {
  const app = await build(t)
  const first = await inject(app, { method: 'GET', url: '/internal/revocations', identity: gateway })
  t.equal(first.statusCode, 200)
  t.equal(first.headers['cache-control'], 'no-store')
  const cursor = first.json().cursor as number

  // Revoke through the public route, as signout does.
  const email = `feed-${randomUUID()}@example.com`
  await inject(app, { method: 'POST', url: '/api/auth/signup', payload: { email, password: 'SecurePass123!' } })
  const signin = (await inject(app, { method: 'POST', url: '/api/auth/signin', payload: { email, password: 'SecurePass123!' } })).json()
  const jti = JSON.parse(Buffer.from(signin.token.split('.')[1], 'base64url').toString()).jti
  const out = await inject(app, {
    method: 'POST',
    url: '/api/auth/signout',
    identity: { caller: 'user', userId: signin.user.id },
    headers: { authorization: `Bearer ${signin.token}` },
  })
  t.equal(out.statusCode, 204)

  const next = (await inject(app, { method: 'GET', url: `/internal/revocations?after=${cursor}`, identity: gateway })).json()
  t.ok(next.cursor > cursor, 'cursor advances')
  const entry = next.revoked.find((r: { jti: string }) => r.jti === jti)
  t.ok(entry, 'the signed-out token is in the feed')
  t.ok(entry.exp > Date.now() / 1000, 'with its expiry')

  const beyond = (await inject(app, { method: 'GET', url: `/internal/revocations?after=${next.cursor + 1_000_000}`, identity: gateway })).json()
  t.equal(beyond.reset, true, 'a cursor from a rebuilt table asks the gateway to start over')
})

t.test('only the gateway may read the feed', async (t) => {
  const app = await build(t)
  for (const identity of [null, { caller: 'user' as const, userId: randomUUID() }, { caller: 'anonymous' as const, userId: '' }, { caller: 'service:task-service' as const, userId: '' }]) {
    const res = await inject(app, { method: 'GET', url: '/internal/revocations', identity })
    t.equal(res.statusCode, 401, JSON.stringify(identity))
  }
})
