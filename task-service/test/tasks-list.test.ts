import t from 'tap'
import { asUser, build, database, newUserId } from './helper.js'

type Task = { id: string; title: string; completed: boolean; created_at: string; updated_at: string }

const ids = (tasks: Task[]) => tasks.map((x) => x.id)
const sortedIds = (tasks: Task[], dir: 'asc' | 'desc') => {
  const s = ids(tasks).sort()
  return dir === 'asc' ? s : s.reverse()
}

t.test('filters, sort and order', async (t) => {
  const app = await build(t)
  const u = asUser(app, newUserId())
  const other = asUser(app, newUserId())
  await other.create({ title: 'someone else' })

  // Created one by one, so created_at strictly increases in this order.
  const made: Task[] = []
  for (const title of ['banana', 'apple', 'cherry', 'date']) made.push((await u.create({ title })).json())
  await u.toggle(made[1]!.id) // apple done
  await u.toggle(made[3]!.id) // date done
  // Touch banana last, so it has the newest updated_at.
  await u.update(made[0]!.id, { title: 'banana' })

  const all = await u.list()
  t.equal(all.statusCode, 200)
  t.equal(all.headers['cache-control'], 'no-store')
  t.same(all.json().map((x: Task) => x.title), ['date', 'cherry', 'apple', 'banana'], 'default: created_at desc')
  t.notOk(all.json().some((x: Task) => x.title === 'someone else'), 'never another user\'s tasks')

  const asc = await u.list('order=asc')
  t.same(asc.json().map((x: Task) => x.title), ['banana', 'apple', 'cherry', 'date'])

  const pending = await u.list('status=pending')
  t.same(pending.json().map((x: Task) => x.title), ['cherry', 'banana'])
  t.ok(pending.json().every((x: Task) => !x.completed))
  const completed = await u.list('status=completed')
  t.same(completed.json().map((x: Task) => x.title), ['date', 'apple'])
  t.ok(completed.json().every((x: Task) => x.completed))
  t.equal((await u.list('status=all')).json().length, 4)

  const byUpdated = await u.list('sort=updated_at')
  t.equal(byUpdated.json()[0].title, 'banana', 'updated_at desc puts the last change first')
  const byUpdatedAsc = await u.list('sort=updated_at&order=asc')
  t.equal(byUpdatedAsc.json()[3].title, 'banana')
  const stamps = byUpdatedAsc.json().map((x: Task) => Date.parse(x.updated_at))
  t.same(stamps, [...stamps].sort((a, b) => a - b), 'ascending updated_at')

  const byTitle = await u.list('sort=title&order=asc')
  t.same(byTitle.json().map((x: Task) => x.title), ['apple', 'banana', 'cherry', 'date'])
  const byTitleDesc = await u.list('sort=title&order=desc')
  t.same(byTitleDesc.json().map((x: Task) => x.title), ['date', 'cherry', 'banana', 'apple'])

  t.same((await u.list('status=completed&sort=title&order=asc&limit=1')).json().length, 1)
  t.same((await u.list('unknown=1')).statusCode, 200, 'unknown query parameters are ignored')
})

t.test('ties on created_at: order is stable and paging never repeats or skips', async (t) => {
  const app = await build(t)
  const db = database(t)
  const userId = newUserId()
  const u = asUser(app, userId)
  // One statement: every row gets the same now(), so created_at and updated_at tie.
  await db.query(`INSERT INTO tasks (user_id, title) SELECT $1, 'tie' FROM generate_series(1, 7)`, [userId])

  for (const order of ['desc', 'asc'] as const) {
    for (const sort of ['created_at', 'updated_at', 'title']) {
      const full: Task[] = (await u.list(`sort=${sort}&order=${order}`)).json()
      t.equal(full.length, 7)
      t.same(ids(full), sortedIds(full, order), `${sort} ${order}: ties broken by id ${order}`)

      const paged: string[] = []
      for (let offset = 0; offset < 9; offset += 2) {
        const page = await u.list(`sort=${sort}&order=${order}&limit=2&offset=${offset}`)
        t.equal(page.statusCode, 200)
        paged.push(...ids(page.json()))
      }
      t.same(paged, ids(full), `${sort} ${order}: pages of 2 concatenate to the full list`)
    }
  }
  t.same((await u.list('offset=7')).json(), [], 'offset past the end is an empty page')
  t.same((await u.list('offset=1000000')).json(), [])
})

t.test('limit defaults to 50 and caps at 100', async (t) => {
  const app = await build(t)
  const db = database(t)
  const userId = newUserId()
  const u = asUser(app, userId)
  await db.query(`INSERT INTO tasks (user_id, title) SELECT $1, 'bulk ' || g FROM generate_series(1, 120) g`, [userId])
  t.equal((await u.list()).json().length, 50)
  t.equal((await u.list('limit=100')).json().length, 100)
  t.equal((await u.list('limit=1')).json().length, 1)
  t.equal((await u.list('limit=100&offset=100')).json().length, 20)
})

t.test('the default list is served by the (user_id, created_at, id) index without a sort', async (t) => {
  await build(t)
  const db = database(t)
  const client = await db.connect()
  try {
    await client.query('BEGIN')
    // Force the planner's hand: on a small table a sequential scan would win anyway,
    // and with the statistics of a grown shared table a bitmap scan plus a sort can.
    // Neither says anything about the index; only a plain index scan keeps its order.
    await client.query('SET LOCAL enable_seqscan = off')
    await client.query('SET LOCAL enable_bitmapscan = off')
    for (const dir of ['DESC', 'ASC']) {
      const { rows } = await client.query(
        `EXPLAIN SELECT * FROM tasks WHERE user_id = 'x' ORDER BY created_at ${dir}, id ${dir} LIMIT 50 OFFSET 0`,
      )
      const plan = rows.map((r: Record<string, string>) => Object.values(r)[0]).join('\n')
      t.match(plan, /Index Scan.* using tasks_user_id_created_at_id_idx/, `${dir}: index scan`)
      t.notMatch(plan, /Sort/, `${dir}: no sort step`)
    }
  } finally {
    await client.query('ROLLBACK').catch(() => {})
    client.release()
  }
})
