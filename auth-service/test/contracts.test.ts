/**
 * The auth-service as producer of the internal contracts
 * ('@tollgate/common/contracts'): its answers, at the contract's paths, pass
 * the very schemas the consumers check them with. A field renamed or dropped
 * on either side fails here (the gateway's side: gateway/test/contracts.test.ts).
 */
import t from 'tap'
import { Compile } from 'typebox/compile'
import { Value } from 'typebox/value'
import { Jwks, RevocationFeed, ServiceTokenExchange, SubjectRevocation } from '@tollgate/common/contracts'
import { asUser, build, inject, PASSWORD, signin, signup } from './helper.js'

const gateway = { caller: 'service:gateway' as const, userId: '' }
const service = { caller: 'service:better-auth-app' as const, userId: '' }

t.test('revocation feed: every page, with a token and a subject cutoff in it, passes the contract', async (t) => {
  const app = await build(t)
  const start = (await inject(app, { method: RevocationFeed.method, url: RevocationFeed.path, identity: gateway })).json().cursor as number

  const user = await signup(app)
  const token = (await signin(app, user.email, PASSWORD)).json().token as string
  const out = await inject(app, { method: 'POST', url: '/api/auth/signout', identity: asUser(user.id), headers: { authorization: `Bearer ${token}` } })
  t.equal(out.statusCode, 204)
  const revoked = await inject(app, { method: SubjectRevocation.method, url: SubjectRevocation.path, identity: service, payload: { issuer: 'https://app.example.com', sub: 'contract-user' } })
  t.equal(revoked.statusCode, 204)

  const res = await inject(app, { method: RevocationFeed.method, url: `${RevocationFeed.path}?after=${start}`, identity: gateway })
  t.equal(res.statusCode, 200)
  const page = res.json()
  t.ok(Compile(RevocationFeed.page).Check(page), 'the page is what the gateway accepts')
  t.ok(page.revoked.some((r: { issuer?: string; not_before?: number }) => r.issuer === 'https://app.example.com' && typeof r.not_before === 'number'), 'the optional members, as the contract names them')
  t.ok(page.revoked.length >= 2)
})

t.test('revocation feed: the query is the contract’s (its bounds refused here as the schema says)', async (t) => {
  const app = await build(t)
  for (const query of ['after=-1', 'limit=0', 'limit=10001']) {
    const res = await inject(app, { method: 'GET', url: `${RevocationFeed.path}?${query}`, identity: gateway })
    t.equal(res.statusCode, 400, query)
  }
  t.notOk(Value.Check(RevocationFeed.query, { after: -1, limit: 5000 }))
  t.ok(Value.Check(RevocationFeed.query, { after: 0, limit: 10_000 }))
})

t.test('service token: the answer passes the contract; a body outside it is refused', async (t) => {
  const credentials = JSON.stringify({ 'report-service': { secret: 's'.repeat(40), scope: ['tasks:read'] } })
  const app = await build(t, { SERVICE_CREDENTIALS: credentials })
  const ask = (payload: unknown) =>
    inject(app, { method: ServiceTokenExchange.method, url: ServiceTokenExchange.path, payload, identity: { caller: 'anonymous', userId: '' } })

  const body = { service: 'report-service', secret: 's'.repeat(40) }
  t.ok(Value.Check(ServiceTokenExchange.body, body))
  const ok = await ask(body)
  t.equal(ok.statusCode, 200)
  t.ok(Value.Check(ServiceTokenExchange.response, ok.json()), 'the token answer is the contract’s')
  t.ok(Number.isFinite(Date.parse(ok.json().expires_at)))

  for (const bad of [{ service: 'report-service' }, { ...body, service: '' }, { ...body, secret: 's'.repeat(513) }]) {
    t.notOk(Value.Check(ServiceTokenExchange.body, bad), JSON.stringify(bad).slice(0, 60))
    t.equal((await ask(bad)).statusCode, 400, 'what the contract refuses, the route refuses')
  }
})

t.test('subject revocation: bodies inside the contract are taken, bodies outside it refused', async (t) => {
  const app = await build(t)
  const send = (payload: unknown) => inject(app, { method: SubjectRevocation.method, url: SubjectRevocation.path, payload, identity: service })
  const good = { issuer: 'https://app.example.com', sub: 'u-1', token_lifetime_s: 3600 }
  t.ok(Value.Check(SubjectRevocation.body, good))
  t.equal((await send(good)).statusCode, 204)
  for (const bad of [{ issuer: 'https://app.example.com', sub: 'has space' }, { issuer: 'https://app.example.com' }, { ...good, token_lifetime_s: 0 }]) {
    t.notOk(Value.Check(SubjectRevocation.body, bad), JSON.stringify(bad))
    t.equal((await send(bad)).statusCode, 400, JSON.stringify(bad))
  }
})

t.test('JWKS: the published set passes the contract and the gateway’s check of any issuer’s set', async (t) => {
  // Same secret as eddsa-signing.test.ts: the shared database keeps the key it made.
  const app = await build(t, { JWT_ALG: 'EdDSA', SIGNING_KEY_SECRET: 'tollgate-test-signing-key-secret-0123456789' })
  const res = await inject(app, { method: Jwks.method, url: Jwks.path, identity: null })
  t.equal(res.statusCode, 200)
  const set = res.json()
  t.ok(set.keys.length > 0)
  t.ok(Value.Check(Jwks.published, set), 'what the auth-service publishes')
  t.ok(Compile(Jwks.keySet).Check(set), 'what the gateway accepts')

  const hs = await build(t)
  const empty = (await inject(hs, { method: Jwks.method, url: Jwks.path, identity: null })).json()
  t.same(empty, { keys: [] })
  t.ok(Compile(Jwks.keySet).Check(empty), 'HS256: an empty set, still a set')
})
