/** The account-deletion purge: service callers only, all of one user's tasks, idempotent. */
import t from 'tap'
import { Value } from 'typebox/value'
import { AccountPurge } from '@tollgate/common/contracts'
import { asUser, build, database, inject, newBetterAuthId, newUserId } from './helper.js'

t.test('a service purges one user’s tasks; twice changes nothing; others keep theirs', async (t) => {
  const app = await build(t)
  const gone = newUserId()
  const kept = newUserId()
  for (let i = 0; i < 3; i++) await asUser(app, gone).create({ title: `t${i}` })
  await asUser(app, kept).create({ title: 'mine' })

  const purge = () => inject(app, { method: 'DELETE', url: `/internal/users/${gone}/tasks`, caller: 'service:auth-service' })
  const first = await purge()
  t.equal(first.statusCode, 204)
  t.same((await asUser(app, gone).list()).json(), [], 'their tasks are gone')
  t.equal((await purge()).statusCode, 204, 'a repeated purge is fine')
  t.equal((await asUser(app, kept).list()).json().length, 1, 'another user keeps theirs')
})

t.test('users and unproven callers cannot purge', async (t) => {
  const app = await build(t)
  const victim = newUserId()
  await asUser(app, victim).create({ title: 'keep me' })
  for (const o of [{ caller: 'user' as const, userId: victim }, { caller: 'anonymous' as const }, {}]) {
    const res = await inject(app, { method: 'DELETE', url: `/internal/users/${victim}/tasks`, ...o })
    t.equal(res.statusCode, 401, JSON.stringify(o))
  }
  t.equal((await asUser(app, victim).list()).json().length, 1)
})

t.test('after the purge no task can be created for that user, even with a token that still verifies', async (t) => {
  const app = await build(t)
  const gone = newUserId()
  await asUser(app, gone).create({ title: 'before' })
  const purge = await inject(app, { method: 'DELETE', url: `/internal/users/${gone}/tasks`, caller: 'service:auth-service' })
  t.equal(purge.statusCode, 204)
  const late = await asUser(app, gone).create({ title: 'after' })
  t.equal(late.statusCode, 401, 'refused')
  t.same(late.json(), { detail: 'Token has been revoked', error_code: 'TOKEN_REVOKED', status_code: 401 })
  const db = database(t)
  const { rows } = await db.query('SELECT count(*)::int AS n FROM tasks WHERE user_id = $1', [gone])
  t.equal(rows[0].n, 0, 'no task row')
  t.equal((await asUser(app, newUserId()).create({ title: 'someone else' })).statusCode, 201, 'other users are unaffected')
})

t.test('creates racing a purge: none survives it (the purge and each insert meet on one lock)', async (t) => {
  const app = await build(t, { DB_POOL_MAX: 20 })
  const db = database(t)
  for (let round = 0; round < 5; round++) {
    const gone = newUserId()
    const creates = Array.from({ length: 30 }, (_, i) => asUser(app, gone).create({ title: `t${i}` }))
    const purge = inject(app, { method: 'DELETE', url: `/internal/users/${gone}/tasks`, caller: 'service:auth-service' })
    const results = await Promise.all([purge, ...creates])
    t.equal(results[0]!.statusCode, 204)
    const statuses = new Set(results.slice(1).map((r) => r.statusCode))
    t.ok([...statuses].every((s) => s === 201 || s === 401), `every create answers 201 or 401: ${[...statuses]}`)
    const { rows } = await db.query('SELECT count(*)::int AS n FROM tasks WHERE user_id = $1', [gone])
    t.equal(rows[0].n, 0, `round ${round}: no task row survives the purge`)
  }
})

t.test('the purge contract: the path the auth-service sends reaches this route, for the account ids it holds', async (t) => {
  const app = await build(t)
  for (const userId of [newUserId(), newBetterAuthId()]) {
    t.ok(Value.Check(AccountPurge.params, { user_id: userId }), userId)
    await asUser(app, userId).create({ title: 'mine' })
    const res = await inject(app, { method: AccountPurge.method, url: AccountPurge.pathFor(userId), caller: 'service:auth-service' })
    t.equal(res.statusCode, 204, userId)
    t.same((await asUser(app, userId).list()).json(), [], `${userId}: their tasks are gone`)
  }
})
