/**
 * EdDSA signing keys changed under a running replica, each test on a database of its own: a token signed with a
 * key the replica has not loaded yet (made by another replica or the CLI) verifies once it reloads, which an
 * unknown kid triggers at most every 5 s; a key the replicas cannot decrypt (rotated with another secret) makes
 * sign-ins 503 with the cause logged, never a token, until a key made with the right secret takes over; and when
 * every key has been retired by hand, the next reload makes a new one.
 */
import { PassThrough } from 'node:stream'
import { install } from '@sinonjs/fake-timers'
import pg from 'pg'
import t from 'tap'
import { decodeProtectedHeader } from 'jose'
import type { App } from '@tollgate/common'
import * as testing from '@tollgate/common/testing'
import { buildApp } from '../src/app.js'
import { rotateSigningKey, signingKeyEncryptionKey } from '../src/credentials/signing-keys.js'
import { runMigrations } from '../src/migrations.js'
import { asUser, DATABASE_URL, inject, PASSWORD, SECRET, signin, signup, testConfig } from './helper.js'

// A liveness bound: a fresh database per test on a loaded 2-core machine.
t.setTimeout(180_000)

type Tap = testing.SkippableTest & { comment(...args: unknown[]): void }

const OTHER_SECRET = 'not-the-secret-the-replicas-have-0123456789'

/** A migrated database of this test's own and a pool on it, or null (the test is then skipped with the reason). */
async function freshDb(t: Tap): Promise<{ url: string; pool: pg.Pool } | null> {
  const db = await testing.freshDatabaseOrSkip(t, DATABASE_URL)
  if (!db) return null
  t.comment(`fresh database ${db.name} on the ${db.host}`)
  await runMigrations(db.url)
  const pool = new pg.Pool({ connectionString: db.url, max: 2 })
  t.teardown(() => pool.end()) // before the drop (teardowns run in reverse)
  return { url: db.url, pool }
}

async function eddsaApp(t: Tap, url: string, overrides: Record<string, unknown> = {}, logStream?: NodeJS.WritableStream): Promise<App> {
  const app = await buildApp(testConfig({ DATABASE_URL: url, JWT_ALG: 'EdDSA', ...overrides }), { logStream })
  t.teardown(() => app.close())
  return app
}

const kidOf = (token: string) => decodeProtectedHeader(token).kid

t.test('a token signed with a key made since the last reload verifies: an unknown kid reloads, at most every 5 s', async (t) => {
  const db = await freshDb(t)
  if (!db) return
  // Only Date is faked, and it stands still unless moved: the reload's cooldown is measured on it.
  const clock = install({ toFake: ['Date'], now: Date.now() })
  t.teardown(() => clock.uninstall())

  const b = await eddsaApp(t, db.url, { JWT_KEY_REFRESH_S: '3600' }) // no timed reload during the test
  const user = await signup(b)
  const rotation = await rotateSigningKey(db.pool, signingKeyEncryptionKey(SECRET), 0) // signs at once
  // A replica started after the rotation signs with the new key.
  const a = await eddsaApp(t, db.url, { JWT_KEY_REFRESH_S: '3600' })
  const res = await signin(a, user.email, PASSWORD)
  t.equal(res.statusCode, 200)
  const token: string = res.json().token
  t.equal(kidOf(token), rotation!.kid, 'signed with the new key')

  const signout = () => inject(b, { method: 'POST', url: '/api/auth/signout', identity: asUser(user.id), headers: { authorization: `Bearer ${token}` } })
  const early = await signout()
  t.equal(early.statusCode, 401, 'within 5 s of its last reload the replica does not reload for an unknown kid')
  t.equal(early.json().error_code, 'INVALID_TOKEN')
  clock.tick(5000)
  t.equal((await signout()).statusCode, 204, 'then the unknown kid reloads the keys, and the token verifies')
})

t.test('a key the replicas cannot decrypt: sign-ins answer 503 and the cause is logged, until a key made with their secret takes over', async (t) => {
  const db = await freshDb(t)
  if (!db) return
  const log = new PassThrough()
  let logged = ''
  log.on('data', (d) => (logged += d))
  const app = await eddsaApp(t, db.url, { JWT_KEY_REFRESH_S: '1', LOG_LEVEL: 'error' }, log)
  const user = await signup(app)
  t.equal((await signin(app, user.email, PASSWORD)).statusCode, 200)

  // A rotation made with another secret (SIGNING_KEY_SECRET differs where the CLI ran).
  const wrong = await rotateSigningKey(db.pool, signingKeyEncryptionKey(SECRET, OTHER_SECRET), 0)
  // Asked until the replica's reload (every JWT_KEY_REFRESH_S) brings the key in; the deadline is a liveness bound.
  let refused = await signin(app, user.email, PASSWORD)
  await testing.waitUntil(async () => (refused = await signin(app, user.email, PASSWORD)).statusCode !== 200, { timeoutMs: 30_000, what: 'the new key loaded' })
  t.equal(refused.statusCode, 503, 'no token, and not a 500')
  t.match(refused.json(), { error_code: 'SERVICE_UNAVAILABLE', detail: 'Signing key unavailable' })
  t.match(logged, new RegExp(`"kid":"${wrong!.kid}".*the signing key cannot be decrypted`), 'the log names the key and the cause')

  const right = await rotateSigningKey(db.pool, signingKeyEncryptionKey(SECRET), 0)
  let token = ''
  await testing.waitUntil(
    async () => {
      const res = await signin(app, user.email, PASSWORD)
      if (res.statusCode === 200) token = res.json().token
      return res.statusCode === 200
    },
    { timeoutMs: 30_000, what: 'signing again' },
  )
  t.equal(kidOf(token), right!.kid, 'a key made with the right secret signs again')
})

t.test('every key retired by hand: the next reload makes a new key, and sign-ins go on', async (t) => {
  const db = await freshDb(t)
  if (!db) return
  const log = new PassThrough()
  let logged = ''
  log.on('data', (d) => (logged += d))
  const app = await eddsaApp(t, db.url, { JWT_KEY_REFRESH_S: '1', LOG_LEVEL: 'warn' }, log)
  const user = await signup(app)
  const first: string = (await signin(app, user.email, PASSWORD)).json().token

  await db.pool.query('UPDATE signing_keys SET retired_at = now()')
  let token = ''
  await testing.waitUntil(
    async () => {
      const res = await signin(app, user.email, PASSWORD)
      if (res.statusCode === 200) token = res.json().token
      return res.statusCode === 200 && kidOf(token) !== kidOf(first)
    },
    { timeoutMs: 30_000, what: 'a new key signing' },
  )
  const { rows } = await db.pool.query<{ kid: string; retired_at: Date | null }>('SELECT kid, retired_at FROM signing_keys WHERE retired_at IS NULL')
  t.same(rows.map((r) => r.kid), [kidOf(token)], 'one new key, the one that signs')
  t.match(logged, new RegExp(`"kid":"${kidOf(token)}".*no signing key could sign: created one`), 'and the log says so')
})
