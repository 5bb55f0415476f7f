/**
 * EdDSA signing keys over their life, each test on a database of its own
 * (created with a random name, dropped at teardown; the shared one keeps a
 * single key): replicas starting together create one key; a rotation
 * publishes the new kid first, signs with it from activates_at, and old
 * tokens keep verifying until their key is retired longer than TOKEN_TTL_S;
 * automatic rotation happens once across replicas; the rotate-keys CLI; the
 * stored private keys decrypt only with their secret.
 */
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t from 'tap'
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, importJWK, exportJWK, jwtVerify, type JSONWebKeySet } from 'jose'
import { ConfigError, type App } from '@tollgate/common'
import * as testing from '@tollgate/common/testing'
import { buildApp } from '../src/app.js'
import { runMigrations } from '../src/migrations.js'
import { decryptPrivateJwk, ensureSigningKey, signingKeyEncryptionKey, SIGNING_ALG, SIGNING_KEYS_LOCK } from '../src/credentials/signing-keys.js'
import { asUser, DATABASE_URL, inject, PASSWORD, SECRET, signin, signup, testConfig } from './helper.js'

const cli = fileURLToPath(new URL('../dist/rotate-keys-cli.js', import.meta.url))

// The file's bound is a liveness bound: a fresh database per test, CLI processes and replicas (over 120 s on a
// loaded 2-core machine, where the default bound cut it off).
t.setTimeout(300_000)

type Tap = testing.SkippableTest & { comment(...args: unknown[]): void }

/** A migrated database of this test's own, or null (the test is then skipped with the reason). */
async function freshDb(t: Tap): Promise<{ url: string; client: pg.Client } | null> {
  const db = await testing.freshDatabaseOrSkip(t, DATABASE_URL)
  if (!db) return null
  t.comment(`fresh database ${db.name} on the ${db.host}`)
  await runMigrations(db.url)
  const client = new pg.Client({ connectionString: db.url })
  await client.connect()
  t.teardown(() => client.end()) // runs before the drop (teardowns run in reverse)
  return { url: db.url, client }
}

async function eddsaApp(t: Tap, url: string, overrides: Record<string, unknown> = {}): Promise<App> {
  const app = await buildApp(testConfig({ DATABASE_URL: url, JWT_ALG: 'EdDSA', JWT_KEY_REFRESH_S: '1', ...overrides }))
  t.teardown(() => app.close())
  return app
}

async function jwks(app: App): Promise<JSONWebKeySet> {
  const res = await inject(app, { method: 'GET', url: '/.well-known/jwks.json', identity: null })
  if (res.statusCode !== 200) throw new Error(`jwks: ${res.statusCode} ${res.body}`)
  return res.json()
}
const kids = async (app: App) => (await jwks(app)).keys.map((k) => k.kid!).sort()

async function tokenFor(app: App, email: string): Promise<string> {
  const res = await signin(app, email, PASSWORD)
  if (res.statusCode !== 200) throw new Error(`signin: ${res.statusCode} ${res.body}`)
  return res.json().token
}
const kidOf = (token: string) => decodeProtectedHeader(token).kid

async function keyRows(client: pg.Client) {
  const { rows } = await client.query<{ kid: string; activates_at: Date; retired_at: Date | null; created_at: Date }>(
    'SELECT kid, activates_at, retired_at, created_at FROM signing_keys ORDER BY activates_at, created_at',
  )
  return rows
}

t.test('two replicas starting at once on a fresh database create exactly one key', async (t) => {
  const db = await freshDb(t)
  if (!db) return
  const apps: App[] = []
  t.teardown(() => Promise.all(apps.map((a) => a.close())))
  // Both are held on the key lock until both wait there, then released together.
  const replica = (name: string) => ({
    name,
    run: async (url: string) => {
      apps.push(await buildApp(testConfig({ DATABASE_URL: url, JWT_ALG: 'EdDSA' })))
      return []
    },
  })
  await testing.raceMigrations(db.url, [replica('replica #1'), replica('replica #2')], [SIGNING_KEYS_LOCK])

  const rows = await keyRows(db.client)
  t.equal(rows.length, 1, 'one key')
  t.equal(rows[0]!.retired_at, null)
  t.same(await kids(apps[0]!), [rows[0]!.kid])
  t.same(await kids(apps[1]!), [rows[0]!.kid], 'both publish it')

  const user = await signup(apps[0]!)
  const a = await tokenFor(apps[0]!, user.email)
  const b = await tokenFor(apps[1]!, user.email)
  t.equal(kidOf(a), rows[0]!.kid)
  t.equal(kidOf(b), rows[0]!.kid, 'both sign with it')
  // A token of one replica signs out at the other.
  const out = await inject(apps[1]!, { method: 'POST', url: '/api/auth/signout', identity: asUser(user.id), headers: { authorization: `Bearer ${a}` } })
  t.equal(out.statusCode, 204)

  const later = await eddsaApp(t, db.url)
  t.same(await kids(later), [rows[0]!.kid], 'a restart reuses it')
  t.equal((await keyRows(db.client)).length, 1)
})

t.test('a replica whose transaction began before another one\'s key was committed still sees that key, and makes none', async (t) => {
  // The race behind "exactly one key": replica A begins, waits on the key lock while replica B (holding it)
  // inserts a key that activates at B's own time and commits. A's check must see B's key, which
  // activates after A's transaction began: the check reads the time of its statement, not of A's transaction.
  const db = await freshDb(t)
  if (!db) return
  const pool = new pg.Pool({ connectionString: db.url, max: 1 })
  t.teardown(() => pool.end())
  const holder = db.client
  await holder.query('BEGIN')
  await holder.query('SELECT pg_advisory_xact_lock($1)', [SIGNING_KEYS_LOCK])
  const ensured = ensureSigningKey(pool, signingKeyEncryptionKey(SECRET))
  // A is in its transaction, waiting on the lock (a liveness deadline only).
  for (let i = 0; ; i++) {
    const { rowCount } = await db.client.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`)
    if (rowCount) break
    if (i > 1000) throw new Error('the replica never waited on the key lock')
    await new Promise((r) => setTimeout(r, 10))
  }
  await holder.query(
    `INSERT INTO signing_keys (kid, alg, public_jwk, private_jwk_enc, activates_at) VALUES ('held', $1, '{"kty":"OKP"}', 'x', clock_timestamp())`,
    [SIGNING_ALG],
  )
  await holder.query('COMMIT')
  t.equal(await ensured, null, 'the waiting replica finds a key that signs, and creates none')
  t.same((await keyRows(db.client)).map((r) => r.kid), ['held'], 'one key')
})

t.test('rotation: the new kid is published first, signs from activates_at, old tokens keep verifying', async (t) => {
  const db = await freshDb(t)
  if (!db) return
  // Two replicas; the rotation comes from the CLI, a third process.
  const a = await eddsaApp(t, db.url, { TOKEN_TTL_S: '60' })
  const b = await eddsaApp(t, db.url, { TOKEN_TTL_S: '60' })
  const user = await signup(a)
  const oldToken = await tokenFor(a, user.email)
  const [oldKid] = await kids(a)
  t.equal(kidOf(oldToken), oldKid)

  const AHEAD_S = 3 // room to see the old key still signing while the new one is already published
  const r = await testing.runNodeScript(cli, {
    DATABASE_URL: db.url,
    BETTER_AUTH_SECRET: SECRET,
    JWT_ALG: 'EdDSA',
    JWT_KEY_PUBLISH_AHEAD_S: String(AHEAD_S),
  })
  t.equal(r.code, 0, r.stderr)
  const m = /^auth-service: signing key (\S+) published, signs from (\S+); (\S+) stop signing then\n$/.exec(r.stdout)
  t.ok(m, `one line naming the keys: ${r.stdout}`)
  const newKid = m![1]!
  const activatesAt = Date.parse(m![2]!)
  t.equal(m![3], oldKid, 'the old key retires')
  const rows = await keyRows(db.client)
  t.same(rows.map((x) => x.kid), [oldKid, newKid])
  t.equal(rows[0]!.retired_at!.getTime(), rows[1]!.activates_at.getTime(), 'the old key retires when the new one activates')
  t.equal(rows[1]!.activates_at.getTime(), activatesAt)
  t.equal(rows[1]!.activates_at.getTime() - rows[1]!.created_at.getTime(), AHEAD_S * 1000, 'JWT_KEY_PUBLISH_AHEAD_S later')

  // Each replica reloads every JWT_KEY_REFRESH_S (1 s here).
  await testing.waitUntil(async () => (await kids(a)).length === 2 && (await kids(b)).length === 2, { timeoutMs: 5000, what: 'both kids published' })
  t.same(await kids(a), [oldKid, newKid].sort(), 'the JWKS holds both kids')
  const before = await tokenFor(b, user.email)
  const signedAt = Date.now()
  if (signedAt < activatesAt - 100) t.equal(kidOf(before), oldKid, 'before activates_at the old key still signs')
  else t.comment(`replicas reloaded too late to observe the old key signing (${signedAt - activatesAt} ms after activation)`)

  // From activates_at (by the database clock) both sign with the new key: asked until they do (the deadline is a
  // liveness bound), rather than slept until the instant.
  let fromA = ''
  let fromB = ''
  await testing.waitUntil(async () => {
    ;[fromA, fromB] = [await tokenFor(a, user.email), await tokenFor(b, user.email)]
    return kidOf(fromA) === newKid && kidOf(fromB) === newKid
  }, { timeoutMs: 30_000, what: 'both replicas signing with the new key' })
  t.equal(kidOf(fromA), newKid, 'after activates_at replica A signs with the new key')
  t.equal(kidOf(fromB), newKid, 'and so does replica B')
  t.ok(Date.now() >= activatesAt - 1000, 'not before activates_at (give or take the clocks)')

  const set = createLocalJWKSet(await jwks(b))
  for (const [name, token] of [['old', oldToken], ['new', fromA]] as const) {
    const { payload } = await jwtVerify(token, set, { algorithms: ['EdDSA'], issuer: 'tollgate', audience: 'tollgate-api' })
    t.equal(payload.sub, user.id, `the ${name} token verifies against the JWKS`)
  }
  const out = await inject(b, { method: 'POST', url: '/api/auth/signout', identity: asUser(user.id), headers: { authorization: `Bearer ${oldToken}` } })
  t.equal(out.statusCode, 204, 'the old token still verifies at signout')

  // Retired longer ago than the tokens live: gone from the JWKS, its tokens with it.
  const current = await tokenFor(a, user.email) // signed by the new key
  const oldSession = before
  await db.client.query("UPDATE signing_keys SET retired_at = now() - interval '1 hour' WHERE kid = $1", [oldKid])
  await testing.waitUntil(async () => (await kids(a)).length === 1 && (await kids(b)).length === 1, { timeoutMs: 5000, what: 'old kid dropped' })
  t.same(await kids(a), [newKid], 'a key retired longer than TOKEN_TTL_S ago leaves the JWKS')
  t.notMatch(JSON.stringify(await jwks(a)), oldKid!)
  if (kidOf(oldSession) === oldKid) {
    const refused = await inject(a, { method: 'POST', url: '/api/auth/signout', identity: asUser(user.id), headers: { authorization: `Bearer ${oldSession}` } })
    t.equal(refused.statusCode, 401, 'and its tokens no longer verify')
  }
  const kept = await inject(a, { method: 'POST', url: '/api/auth/signout', identity: asUser(user.id), headers: { authorization: `Bearer ${current}` } })
  t.equal(kept.statusCode, 204, 'tokens of the current key still do')
  t.equal((await keyRows(db.client)).length, 2, 'the row stays (no new key was needed)')
})

t.test('automatic rotation (JWT_KEY_ROTATION_DAYS) happens once across replicas', async (t) => {
  const db = await freshDb(t)
  if (!db) return
  const opts = { JWT_KEY_ROTATION_DAYS: '1', JWT_KEY_PUBLISH_AHEAD_S: '1' }
  const a = await eddsaApp(t, db.url, opts)
  const b = await eddsaApp(t, db.url, opts)
  const [first] = await keyRows(db.client)
  t.same(await kids(a), [first!.kid])
  // Each refresh tick checks for rotation, then reloads: a replica publishing a row added now has run a
  // rotation check since. The marker is a retired key (never signs, never counts for rotation, published
  // within its retention), removed again before the rotation.
  await db.client.query(
    `INSERT INTO signing_keys (kid, alg, public_jwk, private_jwk_enc, created_at, activates_at, retired_at)
     SELECT 'tick-marker', alg, public_jwk, private_jwk_enc, now() - interval '3 days', now() - interval '3 days', now() - interval '1 minute'
       FROM signing_keys`,
  )
  await testing.waitUntil(async () => (await kids(a)).includes('tick-marker') && (await kids(b)).includes('tick-marker'), { timeoutMs: 30_000, what: 'both replicas reloaded' })
  await db.client.query("DELETE FROM signing_keys WHERE kid = 'tick-marker'")
  t.equal((await keyRows(db.client)).length, 1, 'a key younger than a day is left alone')

  await db.client.query("UPDATE signing_keys SET created_at = now() - interval '2 days'")
  await testing.waitUntil(async () => (await keyRows(db.client)).length > 1, { timeoutMs: 30_000, what: 'a rotation' })
  // Both replicas have checked again once both publish the new kid: a replica that still saw only the old
  // key made its (refused) rotation attempt in the tick whose reload then found the new one.
  await testing.waitUntil(async () => (await kids(a)).length === 2 && (await kids(b)).length === 2, { timeoutMs: 30_000, what: 'published' })
  const rows = await keyRows(db.client)
  t.equal(rows.length, 2, 'one new key, not one per replica')
  t.equal(rows[0]!.retired_at!.getTime(), rows[1]!.activates_at.getTime())
  const user = await signup(a)
  let signed = ''
  await testing.waitUntil(async () => kidOf((signed = await tokenFor(b, user.email))) === rows[1]!.kid, { timeoutMs: 30_000, what: 'the new key signing' })
  t.equal(kidOf(signed), rows[1]!.kid, 'the new key signs')
})

t.test('rotate-keys CLI: one line and exit 1 on failure', async (t) => {
  const base = { BETTER_AUTH_SECRET: SECRET, JWT_ALG: 'EdDSA', DB_CONNECT_TIMEOUT_MS: '2000' }
  const down = await testing.runNodeScript(cli, { ...base, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/auth' })
  t.equal(down.code, 1)
  t.match(down.stderr, /^auth-service: rotate-keys failed: .*ECONNREFUSED.*\n$/)
  t.equal(down.stdout, '')

  const hs = await testing.runNodeScript(cli, { ...base, JWT_ALG: 'HS256', DATABASE_URL })
  t.equal(hs.code, 1)
  t.equal(hs.stderr, 'auth-service: rotate-keys failed: JWT_ALG is HS256; signing keys are used only with JWT_ALG=EdDSA\n')

  const bad = await testing.runNodeScript(cli, { ...base, JWT_KEY_PUBLISH_AHEAD_S: 'soon', DATABASE_URL })
  t.equal(bad.code, 1)
  t.match(bad.stderr, /^auth-service: invalid configuration: JWT_KEY_PUBLISH_AHEAD_S .*\n$/)

  const db = await freshDb(t)
  if (!db) return
  await db.client.query('DROP TABLE signing_keys')
  const unmigrated = await testing.runNodeScript(cli, { ...base, DATABASE_URL: db.url })
  t.equal(unmigrated.code, 1)
  t.equal(unmigrated.stderr, 'auth-service: rotate-keys failed: relation "signing_keys" does not exist (42P01)\n')
})

t.test('stored private keys decrypt only with their secret; a wrong secret stops the start', async (t) => {
  const db = await freshDb(t)
  if (!db) return
  const app = await eddsaApp(t, db.url)
  const [published] = (await jwks(app)).keys
  const { rows } = await db.client.query<{ kid: string; private_jwk_enc: string }>('SELECT kid, private_jwk_enc FROM signing_keys')
  const row = rows[0]!
  t.notMatch(row.private_jwk_enc, /"d"\s*:/)

  const jwk = decryptPrivateJwk(signingKeyEncryptionKey(SECRET), row.kid, row.private_jwk_enc)
  t.match(jwk, { kty: 'OKP', crv: 'Ed25519', x: published!.x })
  t.type(jwk.d, 'string', 'BETTER_AUTH_SECRET decrypts it (SIGNING_KEY_SECRET unset)')
  const derivedPublic = await exportJWK(await importJWK({ kty: 'OKP', crv: 'Ed25519', x: jwk.x! }, 'EdDSA'))
  t.equal(derivedPublic.x, published!.x)
  t.throws(() => decryptPrivateJwk(signingKeyEncryptionKey(SECRET, 'another-secret-of-at-least-32-characters'), row.kid, row.private_jwk_enc), 'another secret fails')
  t.throws(() => decryptPrivateJwk(signingKeyEncryptionKey(SECRET), 'another-kid', row.private_jwk_enc), 'the kid is authenticated: no moving a ciphertext to another row')

  const err = await buildApp(testConfig({ DATABASE_URL: db.url, JWT_ALG: 'EdDSA', SIGNING_KEY_SECRET: 'another-secret-of-at-least-32-characters' })).then(
    (wrong) => wrong.close().then(() => null),
    (e: unknown) => e,
  )
  t.ok(err instanceof ConfigError, 'a ConfigError (server.ts exits with it, one line)')
  t.match((err as Error).message, /^SIGNING_KEY_SECRET .*does not decrypt the signing keys/, 'naming the variable')
  t.equal((await keyRows(db.client)).length, 1, 'and no key was added or replaced')
  t.equal(decodeJwt(await tokenFor(app, (await signup(app)).email)).iss, 'tollgate', 'the right secret still signs')
})
