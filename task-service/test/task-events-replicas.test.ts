/**
 * Live task updates across replicas: two apps on one database, a write on A,
 * a subscriber on B. Through LISTEN/NOTIFY where the database delivers it (a
 * real PostgreSQL), through the polling backstop where it does not (the
 * embedded PGlite) or where LISTEN is turned off.
 */
import t from 'tap'
import pg from 'pg'
import { asUser, build, database, newUserId, testDatabaseUrl } from './helper.js'
import { listening, openEvents, openLive } from './live-client.js'

/** The embedded PGlite says so in its version string. */
const embedded = await (async () => {
  const db = new pg.Client({ connectionString: testDatabaseUrl() })
  await db.connect()
  try {
    return (await db.query<{ version: string }>('SELECT version()')).rows[0]!.version.includes('PGlite')
  } finally {
    await db.end()
  }
})()

/** Resolves once `probe` is true (the hub's state settles asynchronously). */
async function until(probe: () => boolean): Promise<void> {
  while (!probe()) await new Promise((resolve) => setTimeout(resolve, 20))
}

t.test('a write on replica A reaches SSE and WebSocket subscribers on replica B (default settings)', async (t) => {
  const a = await build(t)
  const b = await build(t)
  const baseB = await listening(b)
  const user = newUserId()
  const stream = await openEvents(t, baseB, user)
  await stream.next()
  const live = await openLive(t, baseB, user)

  const api = asUser(a, user)
  const created = (await api.create({ title: 'from A' })).json()
  const completed = (await api.toggle(created.id)).json()
  t.same((await stream.nextEvent())?.task, created)
  t.same((await stream.nextEvent())?.task, completed)
  t.same((await live.next())?.task, created)
  t.same((await live.next())?.type, 'completed')
})

// PGlite shares one session between connections: a NOTIFY comes back on the
// connection that sent it, never on the listener; the first test covers it (by polling).
const noNotify = embedded && 'the embedded PGlite does not deliver NOTIFY across connections'

t.test('LISTEN/NOTIFY carries events between replicas with polling slowed to a minute', { skip: noNotify }, async (t) => {
  const a = await build(t, { TASK_EVENTS_POLL_MS: 60_000 })
  const b = await build(t, { TASK_EVENTS_POLL_MS: 60_000 })
  const baseB = await listening(b)
  await until(() => b.taskEvents.listening)
  t.pass('the probe came back: B trusts its LISTEN (the backstop poll is now every 10 minutes)')
  const user = newUserId()
  const stream = await openEvents(t, baseB, user)
  await stream.next()
  for (let i = 0; i < 3; i++) {
    const task = (await asUser(a, user).create({ title: `notified ${i}` })).json()
    t.same((await stream.nextEvent())?.task, task, `write ${i} arrived by notification`)
  }
})

t.test('with TASK_EVENTS_LISTEN=false the poll alone delivers, between replicas too', async (t) => {
  const a = await build(t, { TASK_EVENTS_LISTEN: false, TASK_EVENTS_POLL_MS: 50 })
  const b = await build(t, { TASK_EVENTS_LISTEN: false, TASK_EVENTS_POLL_MS: 50 })
  const baseA = await listening(a)
  const baseB = await listening(b)
  const user = newUserId()
  const onA = await openEvents(t, baseA, user)
  const onB = await openEvents(t, baseB, user)
  await onA.next()
  await onB.next()
  t.equal(b.taskEvents.listening, false)

  const written = []
  for (let i = 0; i < 5; i++) written.push((await asUser(i % 2 ? a : b, user).create({ title: `polled ${i}` })).json())
  for (const stream of [onA, onB]) {
    const got = []
    for (let i = 0; i < written.length; i++) got.push((await stream.nextEvent())?.task)
    t.same(got, written, 'every write, once, in order, on both replicas')
  }
})

t.test('concurrent writes on two replicas: each subscriber gets every event once, in id order', async (t) => {
  const a = await build(t, { DB_POOL_MAX: 10 })
  const b = await build(t, { DB_POOL_MAX: 10 })
  const baseA = await listening(a)
  const baseB = await listening(b)
  const db = database(t)
  const user = newUserId()
  const onA = await openEvents(t, baseA, user)
  const onB = await openEvents(t, baseB, user)
  await onA.next()
  await onB.next()

  await Promise.all(Array.from({ length: 30 }, (_, i) => asUser(i % 2 ? a : b, user).create({ title: `c${i}` })))
  const { rows } = await db.query<{ id: string }>('SELECT id::text AS id FROM task_events e WHERE user_id = $1 ORDER BY e.id', [user])
  t.equal(rows.length, 30)
  for (const stream of [onA, onB]) {
    const ids = []
    for (let i = 0; i < rows.length; i++) ids.push((await stream.nextEvent())?.id)
    t.same(ids, rows.map((r) => r.id))
  }
  await until(() => a.taskEvents.streams === 1 && b.taskEvents.streams === 1)
})

t.test('the listening connection killed: events keep coming (poll), and LISTEN comes back', { skip: noNotify }, async (t) => {
  const a = await build(t)
  const b = await build(t, { TASK_EVENTS_POLL_MS: 100 })
  const baseB = await listening(b)
  const db = database(t)
  await until(() => b.taskEvents.listening)
  const user = newUserId()
  const stream = await openEvents(t, baseB, user)
  await stream.next()

  const { rows } = await db.query(
    `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
      WHERE application_name = 'task-service-events' AND datname = current_database()`,
  )
  t.ok(rows.length >= 1, 'listeners killed')
  await until(() => !b.taskEvents.listening)
  const during = (await asUser(a, user).create({ title: 'while B has no listener' })).json()
  t.same((await stream.nextEvent())?.task, during, 'delivered by the poll')
  await until(() => b.taskEvents.listening)
  t.pass('B listens again (reconnected, probe came back)')
  const after = (await asUser(a, user).create({ title: 'after' })).json()
  t.same((await stream.nextEvent())?.task, after)
})
