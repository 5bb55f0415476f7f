/** The account-deletion purge: service callers only, all of one user's tasks, idempotent. */
import t from 'tap'
import { asUser, build, inject, newUserId } from './helper.js'

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
