import t from 'tap'
import { asUser, build, newBetterAuthId, newUserId, UUID_RE } from './helper.js'

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const KEYS = ['completed', 'created_at', 'description', 'id', 'title', 'updated_at', 'user_id']

t.test('create, read, update, toggle, delete: exact shapes', async (t) => {
  const app = await build(t)
  const userId = newUserId()
  const u = asUser(app, userId)

  const created = await u.create({ title: '  Buy milk  ', description: 'two litres' })
  t.equal(created.statusCode, 201)
  t.match(created.headers['content-type'], /^application\/json/)
  t.equal(created.headers['cache-control'], 'no-store')
  const task = created.json()
  t.same(Object.keys(task).sort(), KEYS)
  t.match(task.id, UUID_RE)
  t.equal(task.user_id, userId)
  t.equal(task.title, 'Buy milk', 'title is stored trimmed')
  t.equal(task.description, 'two litres')
  t.equal(task.completed, false)
  t.match(task.created_at, ISO)
  t.equal(task.updated_at, task.created_at)

  const got = await u.get(task.id)
  t.equal(got.statusCode, 200)
  t.equal(got.headers['cache-control'], 'no-store')
  t.same(got.json(), task)

  const noDescription = await u.create({ title: 'No description' })
  t.equal(noDescription.statusCode, 201)
  t.equal(noDescription.json().description, null, 'absent description is stored as null')
  const nullDescription = await u.create({ title: 'Null description', description: null })
  t.equal(nullDescription.json().description, null)
  const emptyDescription = await u.create({ title: 'Empty description', description: '' })
  t.equal(emptyDescription.json().description, '', 'an empty description stays empty, not null')

  const put = await u.update(task.id, { title: 'Buy oat milk', completed: true })
  t.equal(put.statusCode, 200)
  t.equal(put.headers['cache-control'], 'no-store')
  const updated = put.json()
  t.same(Object.keys(updated).sort(), KEYS)
  t.equal(updated.id, task.id)
  t.equal(updated.title, 'Buy oat milk')
  t.equal(updated.description, 'two litres', 'absent description is left unchanged')
  t.equal(updated.completed, true)
  t.equal(updated.created_at, task.created_at, 'created_at never changes')
  t.ok(Date.parse(updated.updated_at) >= Date.parse(task.updated_at), 'updated_at moves forward')

  const kept = await u.update(task.id, { title: 'Buy oat milk' })
  t.equal(kept.json().completed, true, 'absent completed is left unchanged')
  t.equal(kept.json().description, 'two litres')

  const cleared = await u.update(task.id, { title: 'Buy oat milk', description: null, completed: false })
  t.equal(cleared.json().description, null, 'explicit null clears the description')
  t.equal(cleared.json().completed, false)

  const described = await u.update(task.id, { title: 'Buy oat milk', description: 'barista edition' })
  t.equal(described.json().description, 'barista edition')

  const on = await u.toggle(task.id)
  t.equal(on.statusCode, 200)
  t.equal(on.headers['cache-control'], 'no-store')
  t.same(Object.keys(on.json()).sort(), KEYS)
  t.equal(on.json().completed, true)
  t.equal(on.json().title, 'Buy oat milk')
  const off = await u.toggle(task.id)
  t.equal(off.json().completed, false)
  t.ok(Date.parse(off.json().updated_at) >= Date.parse(on.json().updated_at))

  const del = await u.remove(task.id)
  t.equal(del.statusCode, 204)
  t.equal(del.body, '', '204 has an empty body')
  t.equal(del.headers['cache-control'], 'no-store')

  for (const res of [await u.get(task.id), await u.remove(task.id), await u.toggle(task.id), await u.update(task.id, { title: 'x' })]) {
    t.equal(res.statusCode, 404)
    t.same(res.json(), { detail: 'Task not found', error_code: 'NOT_FOUND', status_code: 404 })
  }

  const list = await u.list()
  t.equal(list.statusCode, 200)
  t.same(list.json().map((x: { title: string }) => x.title).sort(), ['Empty description', 'No description', 'Null description'])
})

t.test('title limits are counted after trimming, in characters', async (t) => {
  const app = await build(t)
  const u = asUser(app, newUserId())
  const exact = 'a'.repeat(200)
  const res = await u.create({ title: `   ${exact}   ` })
  t.equal(res.statusCode, 201, '200 characters plus surrounding spaces is accepted')
  t.equal(res.json().title, exact)
  const emoji = '😀'.repeat(200)
  const wide = await u.create({ title: emoji, description: '🎉'.repeat(1000) })
  t.equal(wide.statusCode, 201, '200 emoji are 200 characters (PostgreSQL counts code points)')
  t.equal(wide.json().title, emoji)
  const one = await u.create({ title: 'x' })
  t.equal(one.statusCode, 201)
  const max = await u.create({ title: 't', description: 'd'.repeat(1000) })
  t.equal(max.statusCode, 201, 'a 1000-character description is accepted')
})

t.test('user ids are opaque: a Better Auth id (not a UUID) works', async (t) => {
  const app = await build(t)
  const userId = newBetterAuthId()
  t.equal(userId.length, 32)
  const u = asUser(app, userId)
  const res = await u.create({ title: 'from Better Auth' })
  t.equal(res.statusCode, 201)
  t.equal(res.json().user_id, userId)
  t.equal((await u.get(res.json().id)).statusCode, 200)
  t.equal((await u.list()).json().length, 1)

  const longest = asUser(app, 'u'.repeat(128))
  t.equal((await longest.list()).statusCode, 200, '128 characters is the longest id')
})

t.test('an uppercase UUID names the same task', async (t) => {
  const app = await build(t)
  const u = asUser(app, newUserId())
  const { id } = (await u.create({ title: 'case' })).json()
  const res = await u.get(id.toUpperCase())
  t.equal(res.statusCode, 200)
  t.equal(res.json().id, id)
})
