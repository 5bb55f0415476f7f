/**
 * Revocation by subject (POST /internal/subject-revocations): services only,
 * one row per (issuer, subject) that only moves later, and the feed carries
 * the issuer so the gateway cuts off that issuer's subject and no other.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { freshDatabaseOrSkip } from '@tollgate/common/testing'
import { runMigrations } from '../src/migrations.js'
import { build, DATABASE_URL, inject } from './helper.js'

const gateway = { caller: 'service:gateway' as const, userId: '' }
const app_ = { caller: 'service:better-auth-app' as const, userId: '' }
const ISSUER = 'https://app.example.test'
const newSub = () => randomBytes(24).toString('base64url').slice(0, 32)

t.test('a service revokes a subject of an issuer; the feed carries it with its issuer', async (t) => {
  const app = await build(t)
  const cursor = (await inject(app, { method: 'GET', url: '/internal/revocations', identity: gateway })).json().cursor as number
  const sub = newSub()
  const before = Math.floor(Date.now() / 1000)
  const res = await inject(app, { method: 'POST', url: '/internal/subject-revocations', identity: app_, payload: { issuer: ISSUER, sub, token_lifetime_s: 900 } })
  t.equal(res.statusCode, 204)
  t.equal(res.headers['cache-control'], 'no-store')

  const feed = (await inject(app, { method: 'GET', url: `/internal/revocations?after=${cursor}`, identity: gateway })).json()
  const entries = feed.revoked.filter((r: { user_id?: string }) => r.user_id === sub)
  t.equal(entries.length, 1)
  const entry = entries[0]
  t.equal(entry.issuer, ISSUER, 'the issuer travels with the cutoff')
  t.ok(entry.not_before >= before && entry.not_before <= before + 5, 'tokens issued up to now')
  t.ok(entry.exp >= entry.not_before + 900 && entry.exp <= entry.not_before + 900 + 300, 'kept as long as such a token lives, plus the clock tolerance')

  // Again, later cutoff and longer lifetime: the same row moves later, never earlier.
  const again = await inject(app, {
    method: 'POST',
    url: '/internal/subject-revocations',
    identity: app_,
    payload: { issuer: ISSUER, sub, issued_before: entry.not_before - 100, token_lifetime_s: 60 },
  })
  t.equal(again.statusCode, 204)
  const next = (await inject(app, { method: 'GET', url: `/internal/revocations?after=${feed.cursor}`, identity: gateway })).json()
  const moved = next.revoked.filter((r: { user_id?: string }) => r.user_id === sub)
  t.equal(moved.length, 1, 'one row per subject')
  t.equal(moved[0].not_before, entry.not_before, 'an earlier cutoff does not undo a later one')
  t.equal(moved[0].exp, entry.exp)
})

t.test('only services may call it, with a sane body', async (t) => {
  const app = await build(t)
  const payload = { issuer: ISSUER, sub: newSub() }
  for (const identity of [null, { caller: 'user' as const, userId: 'u' }, { caller: 'anonymous' as const, userId: '' }]) {
    t.equal((await inject(app, { method: 'POST', url: '/internal/subject-revocations', identity, payload })).statusCode, 401, JSON.stringify(identity))
  }
  const bad = [
    { issuer: ISSUER },
    { sub: newSub() },
    { issuer: '', sub: newSub() },
    { issuer: ISSUER, sub: '../etc/passwd' },
    { issuer: ISSUER, sub: newSub(), issued_before: Math.floor(Date.now() / 1000) + 3600 },
    { issuer: ISSUER, sub: newSub(), token_lifetime_s: 0 },
  ]
  for (const body of bad) {
    const res = await inject(app, { method: 'POST', url: '/internal/subject-revocations', identity: app_, payload: body })
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(res.json().error_code, 'VALIDATION_ERROR')
  }
})

/** Revoke fresh subjects; returns them. */
async function revokeMany(app: Awaited<ReturnType<typeof build>>, n: number): Promise<string[]> {
  const subs: string[] = []
  for (let i = 0; i < n; i++) {
    const sub = newSub()
    subs.push(sub)
    await inject(app, { method: 'POST', url: '/internal/subject-revocations', identity: app_, payload: { issuer: ISSUER, sub, token_lifetime_s: 900 } })
  }
  return subs
}

/** Read the feed from `after` in pages of `limit`, as a gateway does, collecting our issuer's subjects. */
async function readAll(app: Awaited<ReturnType<typeof build>>, after: number, limit: number) {
  const seen = new Set<string>()
  let cursor = after
  let pages = 0
  for (; pages < 100; pages++) {
    const page = (await inject(app, { method: 'GET', url: `/internal/revocations?after=${cursor}&limit=${limit}`, identity: gateway })).json()
    for (const r of page.revoked) if (r.issuer === ISSUER) seen.add(r.user_id)
    cursor = page.cursor
    if (!page.more) break
  }
  return { seen, pages }
}

t.test('small pages always advance, even when every row is a recent one', async (t) => {
  const app = await build(t)
  const start = (await inject(app, { method: 'GET', url: '/internal/revocations', identity: gateway })).json().cursor as number
  const subs = await revokeMany(app, 6)
  const { seen, pages } = await readAll(app, start, 2)
  t.ok(pages < 100, `the reader got through in ${pages + 1} pages`)
  t.ok(subs.every((s) => seen.has(s)), 'every revocation delivered')
})

t.test('the feed pages in numeric seq order: crossing a power of ten loses nothing', async (t) => {
  // A database of its own: the sequence is moved to just below 1,000 without touching the shared one.
  const scratch = await freshDatabaseOrSkip(t, DATABASE_URL)
  if (!scratch) return
  t.teardown(() => scratch.drop())
  await runMigrations(scratch.url)
  const app = await build(t, { DATABASE_URL: scratch.url })
  const client = new pg.Client({ connectionString: scratch.url })
  await client.connect()
  t.teardown(() => client.end())
  const boundary = 1000
  await client.query(`SELECT setval(pg_get_serial_sequence('revoked_tokens', 'seq'), $1)`, [boundary - 4])
  const subs = await revokeMany(app, 8) // seqs 997 .. 1004: from three digits to four
  const { seen } = await readAll(app, boundary - 4, 2)
  t.same(subs.filter((s) => !seen.has(s)), [], `all ${subs.length} revocations across seq ${boundary} delivered`)
})
