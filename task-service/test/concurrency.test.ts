import t from 'tap'
import { asUser, build, newUserId } from './helper.js'

t.test('concurrent toggles are atomic: an even number leaves the task where it started', async (t) => {
  const app = await build(t)
  const u = asUser(app, newUserId())
  const task = (await u.create({ title: 'flip me' })).json()

  const two = await Promise.all([u.toggle(task.id), u.toggle(task.id)])
  t.same(two.map((r) => r.statusCode), [200, 200])
  t.same(two.map((r) => r.json().completed).sort(), [false, true], 'each toggle saw the other\'s result')
  t.equal((await u.get(task.id)).json().completed, false, 'two toggles: back to pending')

  const n = 10
  const many = await Promise.all(Array.from({ length: n }, () => u.toggle(task.id)))
  t.ok(many.every((r) => r.statusCode === 200))
  const states = many.map((r) => r.json().completed)
  t.equal(states.filter((c) => c).length, n / 2, 'half the toggles returned completed')
  t.equal(states.filter((c) => !c).length, n / 2, 'half returned pending')
  t.equal((await u.get(task.id)).json().completed, false, `${n} toggles: back to pending`)

  await u.toggle(task.id)
  const odd = await Promise.all(Array.from({ length: 5 }, () => u.toggle(task.id)))
  t.ok(odd.every((r) => r.statusCode === 200))
  t.equal((await u.get(task.id)).json().completed, false, 'from completed, five toggles end pending')
})
