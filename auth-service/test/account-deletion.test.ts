/** DELETE /api/auth/me in the auth-service: one transaction for the account, its tokens and its task purge. */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { jwtVerify } from 'jose'
import { ConfigError, SERVICE_TOKEN_AUDIENCE, serviceTokenKey } from '@tollgate/common'
import { build, DATABASE_URL, inject, SECRET } from './helper.js'
import { parseServiceCredentials } from '../src/credentials/service-tokens.js'

const gateway = { caller: 'service:gateway' as const, userId: '' }

t.test('deleting an account: gone, every token cut off in the feed, purge queued', async (t) => {
  const app = await build(t, { GATEWAY_INTERNAL_URL: 'http://127.0.0.1:1', OUTBOX_POLL_MS: 60_000 })
  const email = `del-${randomUUID()}@example.com`
  const user = (await inject(app, { method: 'POST', url: '/api/auth/signup', payload: { email, password: 'SecurePass123!' } })).json()
  const cursor = (await inject(app, { method: 'GET', url: '/internal/revocations', identity: gateway })).json().cursor
  const me = { caller: 'user' as const, userId: user.id }

  const res = await inject(app, { method: 'DELETE', url: '/api/auth/me', identity: me })
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  t.equal((await inject(app, { method: 'GET', url: '/api/auth/me', identity: me })).statusCode, 401, 'the account is gone')
  t.equal((await inject(app, { method: 'DELETE', url: '/api/auth/me', identity: me })).statusCode, 401, 'deleting twice: 401')

  const feed = (await inject(app, { method: 'GET', url: `/internal/revocations?after=${cursor}`, identity: gateway })).json()
  const cutoff = feed.revoked.find((r: { user_id?: string }) => r.user_id === user.id)
  t.ok(cutoff, 'a per-user cutoff in the revocation feed')
  t.ok(cutoff.not_before >= cutoff.exp, 'cutting off every token of the account, whatever its iat (also one signed after the deletion)')
  t.ok(cutoff.exp - Date.now() / 1000 > 7 * 86_400, 'kept longer than a token can live')

  const client = new pg.Client({ connectionString: DATABASE_URL })
  await client.connect()
  t.teardown(() => client.end())
  const { rows } = await client.query(`SELECT kind, payload FROM outbox WHERE payload->>'user_id' = $1`, [user.id])
  t.equal(rows.length, 1, 'one purge in the outbox, written with the deletion')
  t.equal(rows[0].kind, 'purge-tasks')
  t.equal(rows[0].payload.request_id, res.headers['x-request-id'], 'carrying the request id onward')
})

t.test('service tokens: a credential buys a short-lived token naming the service', async (t) => {
  const credentials = JSON.stringify({ 'report-service': { secret: 's'.repeat(40), scope: ['tasks:read'] } })
  const app = await build(t, { SERVICE_CREDENTIALS: credentials, SERVICE_TOKEN_TTL_S: 120 })
  const ask = (body: unknown, identity: Parameters<typeof inject>[1]['identity'] = { caller: 'anonymous', userId: '' }) =>
    inject(app, { method: 'POST', url: '/internal/service-token', payload: body, identity })

  const ok = await ask({ service: 'report-service', secret: 's'.repeat(40) })
  t.equal(ok.statusCode, 200)
  t.equal(ok.headers['cache-control'], 'no-store')
  const { payload, protectedHeader } = await jwtVerify(ok.json().token, serviceTokenKey(SECRET), { audience: SERVICE_TOKEN_AUDIENCE, typ: 'svc+jwt' })
  t.equal(protectedHeader.typ, 'svc+jwt')
  t.match(payload, { sub: 'service:report-service', svc: 'report-service', scope: ['tasks:read'], iss: 'tollgate' })
  t.equal(payload.exp! - payload.iat!, 120, 'minutes, not days')

  for (const [why, body] of [
    ['wrong secret', { service: 'report-service', secret: 'x'.repeat(40) }],
    ['unknown service', { service: 'nobody', secret: 's'.repeat(40) }],
  ] as const) {
    const res = await ask(body)
    t.equal(res.statusCode, 401, why)
    t.equal(res.json().error_code, 'INVALID_CREDENTIALS')
  }
  t.equal((await ask({ service: 'report-service', secret: 's'.repeat(40) }, { caller: 'user', userId: randomUUID() })).statusCode, 401, 'not for users')
  t.equal((await ask({ service: 'report-service', secret: 's'.repeat(40) }, null)).statusCode, 401, 'not around the gateway')
})

t.test('SERVICE_CREDENTIALS is checked at start', async (t) => {
  for (const bad of ['nope', '[]', '{"svc":{"secret":"short"}}', '{"Bad Name":{"secret":"' + 'x'.repeat(40) + '"}}', '{"svc":{"secret":"' + 'x'.repeat(40) + '","scope":"all"}}']) {
    t.throws(() => parseServiceCredentials(bad), ConfigError, bad)
  }
})

t.test('a sign-in whose lookup ran before the deletion gets no token once bcrypt is done', async (t) => {
  // Cost 13: the comparison takes far longer than the deletion, which runs while it is in bcrypt.
  const app = await build(t, { BCRYPT_COST: '13', GATEWAY_INTERNAL_URL: 'http://127.0.0.1:1', OUTBOX_POLL_MS: 60_000 })
  const email = `racing-${randomUUID()}@example.com`
  const password = 'SecurePass123!'
  const user = (await inject(app, { method: 'POST', url: '/api/auth/signup', payload: { email, password } })).json()
  const signingIn = inject(app, { method: 'POST', url: '/api/auth/signin', payload: { email, password } })
  await new Promise((r) => setTimeout(r, 50)) // the lookup is done, the comparison is not
  const deleted = await inject(app, { method: 'DELETE', url: '/api/auth/me', identity: { caller: 'user', userId: user.id } })
  t.equal(deleted.statusCode, 204)
  const res = await signingIn
  t.equal(res.statusCode, 401, 'no token for an account deleted during the comparison')
  t.equal(res.json().error_code, 'INVALID_CREDENTIALS')
})
