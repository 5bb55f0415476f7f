/**
 * The gateway as consumer of the internal contracts
 * ('@tollgate/common/contracts'): it asks at the contract's paths and refuses
 * an answer that does not match the contract's schema, as it refuses any bad
 * answer (the auth-service's side: auth-service/test/contracts.test.ts).
 */
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import { Pool } from 'undici'
import { exportJWK, generateKeyPair } from 'jose'
import { Value } from 'typebox/value'
import { proofKey, verifyIdentity } from '@tollgate/common'
import { Jwks, RevocationFeed, type RevocationPage } from '@tollgate/common/contracts'
import { revocationFeed } from '../src/auth/revocation-feed.js'
import { createJwksKeySource, KeySourceUnavailable } from '../src/auth/jwks-key-source.js'

type Tap = Test

const KEY = proofKey('test-secret-for-the-contracts-0123456789')

/** An upstream answering whatever `answer` holds, recording what it was asked. */
async function upstream(t: Tap, path: string, answer: { body: unknown }) {
  const app = Fastify()
  const seen: Array<{ url: string; proven: boolean }> = []
  app.get(path, async (request) => {
    seen.push({ url: request.url, proven: verifyIdentity(KEY, request.headers, request.method, request.url, String(request.headers['x-request-id']), 5000)?.caller === 'service:gateway' })
    return answer.body
  })
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  return { base, seen, log: app.log }
}

const goodPage: RevocationPage = {
  cursor: 7,
  reset: false,
  more: false,
  revoked: [
    { jti: 'j-1', exp: 2_000_000_000 },
    { jti: 'cutoff', exp: 2_000_000_000, user_id: 'u-1', not_before: 1_900_000_000, issuer: 'https://app.example.com' },
  ],
}

t.test('revocation feed: asked at the contract’s path, as the gateway; a page in the contract is taken', async (t) => {
  const answer = { body: goodPage as unknown }
  const { base, seen } = await upstream(t, RevocationFeed.path, answer)
  const pool = new Pool(base)
  t.teardown(() => pool.close())
  const fetchPage = revocationFeed(pool, KEY, 2000)

  t.same(await fetchPage(3), goodPage)
  t.equal(seen[0]!.url, `${RevocationFeed.path}?after=3`)
  t.ok(seen[0]!.proven, 'with the identity proof of service:gateway (the producer refuses anything else)')
  t.ok(Value.Check(RevocationFeed.query, Value.Default(RevocationFeed.query, { after: 3 })), 'its query is the contract’s')
})

t.test('revocation feed: a page the contract does not describe is refused, never half-applied', async (t) => {
  const answer = { body: goodPage as unknown }
  const { base } = await upstream(t, RevocationFeed.path, answer)
  const pool = new Pool(base)
  t.teardown(() => pool.close())
  const fetchPage = revocationFeed(pool, KEY, 2000)

  const { more: _more, ...withoutMore } = goodPage
  const { exp: _exp, ...entryWithoutExp } = goodPage.revoked[0]!
  for (const [why, body] of [
    ['a page missing `more`', withoutMore],
    ['an entry missing `exp`', { ...goodPage, revoked: [entryWithoutExp] }],
    ['a cursor as a string', { ...goodPage, cursor: '7' }],
    ['not_before as a string', { ...goodPage, revoked: [{ ...goodPage.revoked[1]!, not_before: '1900000000' }] }],
    ['not a page at all', []],
  ] as const) {
    answer.body = body
    await t.rejects(fetchPage(0), /malformed revocation feed/, why)
  }
})

t.test('JWKS: a set in the contract gives its keys; a set outside it is an unavailable issuer, not an empty one', async (t) => {
  const { publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true })
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'EdDSA', use: 'sig' }
  t.ok(Value.Check(Jwks.published, { keys: [jwk] }), 'the set the auth-service would publish')
  const answer = { body: { keys: [jwk] } as unknown }
  const { base, log } = await upstream(t, Jwks.path, answer)
  const source = (cooldownMs: number) => {
    const s = createJwksKeySource({ url: `${base}${Jwks.path}`, algorithms: ['EdDSA'], timeoutMs: 2000, cooldownMs, refreshMs: 600_000, log })
    t.teardown(() => s.stop())
    return s
  }

  t.ok(await source(0).getKey({ alg: 'EdDSA', kid: 'k1' }), 'a contract set verifies')

  const { kty: _kty, ...withoutKty } = jwk
  for (const [why, body] of [
    ['no `keys`', { key: jwk }],
    ['a key without `kty`', { keys: [withoutKty] }],
    ['`keys` not a list', { keys: jwk }],
  ] as const) {
    answer.body = body
    t.notOk(Value.Check(Jwks.keySet, body), why)
    await t.rejects(source(0).getKey({ alg: 'EdDSA', kid: 'k1' }), KeySourceUnavailable, why)
  }
})
