/**
 * Live task updates on one replica: what the SSE and WebSocket routes send,
 * to whom, resumption, heartbeats, shutdown, and the rows behind them.
 * Streams are read from a real listening server; the writes go through inject.
 */
import t from 'tap'
import { Writable } from 'node:stream'
import WebSocket from 'ws'
import { asUser, build, database, inject, newBetterAuthId, newUserId } from './helper.js'
import { listening, openEvents, openLive, proofHeaders } from './live-client.js'

/** The HTTP answer that refused a WebSocket upgrade. */
async function refusal(opening: Promise<unknown>): Promise<{ status: number; body: string }> {
  try {
    await opening
  } catch (err) {
    return err as { status: number; body: string }
  }
  throw new Error('the upgrade was accepted')
}

t.test('SSE: headers, a comment first, then one event per create, update, completion and deletion', async (t) => {
  const app = await build(t)
  const base = await listening(app)
  const user = newUserId()
  const stream = await openEvents(t, base, user)
  t.equal(stream.status, 200)
  t.equal(stream.headers.get('content-type'), 'text/event-stream')
  t.equal(stream.headers.get('cache-control'), 'no-store')
  t.equal(stream.headers.get('x-accel-buffering'), 'no')
  const first = await stream.next()
  t.equal(first?.raw, ': connected', 'the first frame is the connected comment')

  const api = asUser(app, user)
  const created = (await api.create({ title: 'Buy milk', description: 'two' })).json()
  const updated = (await api.update(created.id, { title: 'Buy oat milk' })).json()
  const completed = (await api.toggle(created.id)).json()
  const reopened = (await api.toggle(created.id)).json()
  const put = (await api.update(created.id, { title: 'Buy oat milk', completed: true })).json()
  t.equal((await api.remove(created.id)).statusCode, 204)

  const expected = [
    ['created', created],
    ['updated', updated],
    ['completed', completed],
    ['updated', reopened],
    ['updated', put],
    ['deleted', put],
  ] as const
  let previous = 0n
  for (const [type, task] of expected) {
    const frame = await stream.next()
    t.ok(frame, `a frame for ${type}`)
    t.match(frame!.raw, /^id: \d+\ndata: \{.*\}$/, 'exactly an id line and a data line, no event line')
    t.equal(frame!.event, undefined)
    const id = BigInt(frame!.id!)
    t.ok(id > previous, 'ids grow')
    previous = id
    t.same(JSON.parse(frame!.data!), { type, task }, `${type}: the task exactly as the REST API returned it`)
  }
})

t.test('another user: 403 on their path (before anything streams), and their writes never reach my stream', async (t) => {
  const app = await build(t)
  const base = await listening(app)
  const alice = newUserId()
  const mallory = newBetterAuthId()

  const forbidden = await inject(app, { method: 'GET', url: `/api/${alice}/tasks/events`, userId: mallory })
  t.equal(forbidden.statusCode, 403)
  t.same(forbidden.json(), { detail: 'Access forbidden', error_code: 'FORBIDDEN', status_code: 403 })
  const unproven = await inject(app, { method: 'GET', url: `/api/${alice}/tasks/events` })
  t.equal(unproven.statusCode, 401, 'no gateway proof: 401')
  const streamAsOther = await openEvents(t, base, alice, { asUser: mallory })
  t.equal(streamAsOther.status, 403, 'over the network too')
  t.equal(streamAsOther.headers.get('content-type'), 'application/json; charset=utf-8')

  const mine = await openEvents(t, base, mallory)
  await mine.next() // connected
  for (let i = 0; i < 3; i++) await asUser(app, alice).create({ title: `alice ${i}` })
  const own = (await asUser(app, mallory).create({ title: 'mine' })).json()
  const event = await mine.nextEvent()
  t.same(event?.task, own, 'the first event on my stream is my own write, none of alice’s came before it')
})

t.test('Last-Event-ID: the events after it first, then live ones, none missing, none twice', async (t) => {
  const app = await build(t, { DB_POOL_MAX: 20 })
  const base = await listening(app)
  const db = database(t)
  const user = newUserId()
  const api = asUser(app, user)

  const first = await openEvents(t, base, user)
  await first.next()
  const a = (await api.create({ title: 'a' })).json()
  await api.create({ title: 'b' })
  const seen = [await first.nextEvent(), await first.nextEvent()]
  first.close()
  const lastSeen = seen[1]!.id

  // Written while disconnected, and more written while the resumed stream replays.
  await api.toggle(a.id)
  await api.create({ title: 'c' })
  const resumed = await openEvents(t, base, user, { lastEventId: lastSeen })
  t.equal(resumed.status, 200)
  t.equal((await resumed.next())?.raw, ': connected')
  const racing = Array.from({ length: 20 }, (_, i) => api.create({ title: `race ${i}` }))
  await Promise.all(racing)
  const { rows } = await db.query<{ id: string }>(
    'SELECT id::text AS id FROM task_events e WHERE user_id = $1 AND id > $2 ORDER BY e.id',
    [user, lastSeen],
  )
  t.equal(rows.length, 22)
  const got: string[] = []
  for (let i = 0; i < rows.length; i++) got.push((await resumed.nextEvent())!.id)
  t.same(got, rows.map((r) => r.id), 'exactly the rows after Last-Event-ID, in order')

  // Nothing else was pending: the next event is the next write.
  const last = (await api.create({ title: 'after' })).json()
  t.same((await resumed.nextEvent())?.task, last)

  const zero = await openEvents(t, base, user, { lastEventId: '0' })
  await zero.next()
  t.equal((await zero.nextEvent())?.task.title, 'a', '0 replays everything kept')
})

t.test('the replay orders events by id as numbers, across a change in digit count (99 -> 100)', async (t) => {
  const app = await build(t)
  const base = await listening(app)
  const db = database(t)
  const user = newUserId()
  // Move the sequence (forward only) just below the next power of ten: one more digit per run
  // on a database that is kept, so give up far before bigint's 19 digits.
  const { rows } = await db.query<{ last: string }>('SELECT last_value::text AS last FROM task_events_id_seq')
  if (rows[0]!.last.length >= 15) return t.pass('skipped: the test database’s event ids are already 15 digits long')
  const next = 10n ** BigInt(rows[0]!.last.length)
  await db.query("SELECT setval('task_events_id_seq', $1)", [(next - 5n).toString()])
  const titles = ['a', 'b', 'c', 'd', 'e']
  for (const title of titles) await asUser(app, user).create({ title })
  const stream = await openEvents(t, base, user, { lastEventId: '0' })
  await stream.next()
  const got = []
  for (let i = 0; i < titles.length; i++) got.push(await stream.nextEvent())
  t.ok(got[0]!.id.length < got.at(-1)!.id.length, `ids straddle ${next}: ${got.map((e) => e?.id).join(',')}`)
  t.same(got.map((e) => e?.task.title), titles, 'in write order')
})

t.test('events read while a stream is still replaying wait, then are handed over once each, in order', async (t) => {
  const app = await build(t)
  await app.ready()
  const user = newUserId()
  const api = asUser(app, user)
  const before = (await api.create({ title: 'before' })).json()
  const got: Array<[string, string]> = []
  const aborted: string[] = []
  const sink = {
    send: (e: { id: string; task: { title: string } }) => void got.push([e.id, e.task.title]),
    heartbeat() {},
    async shutdown() {},
    abort: (reason: string) => void aborted.push(reason),
  }
  const subscription = await app.taskEvents.subscribe(user, sink as never)
  // Committed and read by the hub before the stream goes live: they wait.
  for (const title of ['one', 'two', 'three']) await api.create({ title })
  app.taskEvents.wakeAll()
  await app.taskEvents.idle()
  t.same(got, [], 'nothing handed over before start')
  await subscription.start(0n) // replays everything of the user, then what waited
  t.same(got.map(([, title]) => title), [before.title, 'one', 'two', 'three'], 'each once, in order')
  t.same(got.map(([id]) => BigInt(id)), got.map(([id]) => BigInt(id)).sort((x, y) => (x < y ? -1 : 1)))
  t.same(aborted, [], 'the stream was not dropped')
  await api.create({ title: 'live' })
  app.taskEvents.wakeAll()
  await app.taskEvents.idle()
  t.equal(got.at(-1)?.[1], 'live', 'and it is live')
  subscription.unsubscribe()
})

t.test('a Last-Event-ID beyond anything of this user starts at the newest: later events still arrive', async (t) => {
  const app = await build(t)
  const base = await listening(app)
  const user = newUserId()
  const stream = await openEvents(t, base, user, { lastEventId: '9000000000000000000' })
  await stream.next()
  const task = (await asUser(app, user).create({ title: 'x' })).json()
  t.same((await stream.nextEvent())?.task, task)
})

t.test('HEAD on the events route: the stream\'s status and headers, no body, no subscription', async (t) => {
  const app = await build(t)
  const user = newUserId()
  const res = await inject(app, { method: 'HEAD' as never, url: `/api/${user}/tasks/events`, userId: user })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'text/event-stream')
  t.equal(res.body, '')
  t.equal(app.taskEvents.streams, 0)
})

t.test('a malformed Last-Event-ID is 400 VALIDATION_ERROR', async (t) => {
  const app = await build(t)
  const user = newUserId()
  for (const value of ['abc', '-1', '1.5', '0x10', '12345678901234567890', '9223372036854775808']) {
    const res = await inject(app, { method: 'GET', url: `/api/${user}/tasks/events`, userId: user, headers: { 'last-event-id': value } })
    t.equal(res.statusCode, 400, value)
    t.equal(res.json().error_code, 'VALIDATION_ERROR', value)
    t.equal(res.json().status_code, 400)
  }
  // Another user's path is 403 whatever the header says (the owner check runs first).
  const other = await inject(app, { method: 'GET', url: `/api/${user}/tasks/events`, userId: newUserId(), headers: { 'last-event-id': 'abc' } })
  t.equal(other.statusCode, 403)
})

t.test('heartbeat comments on SSE and pings on WebSocket at the configured interval', async (t) => {
  const app = await build(t, { TASK_EVENTS_HEARTBEAT_MS: 50 })
  const base = await listening(app)
  const user = newUserId()
  const stream = await openEvents(t, base, user)
  t.equal((await stream.next())?.raw, ': connected')
  t.equal((await stream.next())?.raw, ': heartbeat', 'a heartbeat comment')

  const live = await openLive(t, base, user)
  await new Promise<void>((resolve) => live.socket.once('ping', () => resolve()))
  t.pass('the server pings')
})

t.test('WebSocket: the same events as JSON messages; `bearer` offered is `bearer` chosen', async (t) => {
  const app = await build(t)
  const base = await listening(app)
  const user = newUserId()
  const live = await openLive(t, base, user, { protocols: ['bearer', 'eyJhbGciOiJIUzI1NiJ9.e30.c2ln'] })
  t.equal(live.socket.protocol, 'bearer')
  const api = asUser(app, user)
  const created = (await api.create({ title: 'ws' })).json()
  const completed = (await api.toggle(created.id)).json()
  await api.remove(created.id)
  const messages = [await live.next(), await live.next(), await live.next()]
  t.same(messages.map((m) => [m?.type, m?.task]), [
    ['created', created],
    ['completed', completed],
    ['deleted', completed],
  ])
  for (const m of messages) t.match(m?.id, /^\d+$/, 'the event id, as a string')
  t.same(Object.keys(messages[0]!), ['id', 'type', 'task'])

  const plain = await openLive(t, base, user)
  t.equal(plain.socket.protocol, '', 'no subprotocol offered, none chosen')
})

t.test('WebSocket: refused before the upgrade, in the envelope', async (t) => {
  const app = await build(t)
  const base = await listening(app)
  const alice = newUserId()
  const mallory = newUserId()
  const refused = await refusal(openLive(t, base, alice, { asUser: mallory }))
  t.equal(refused.status, 403, 'another user')
  t.same(JSON.parse(refused.body), { detail: 'Access forbidden', error_code: 'FORBIDDEN', status_code: 403 })

  const path = `/api/${alice}/tasks/live`
  const status = await new Promise<number>((resolve) => {
    const socket = new WebSocket(`${base.replace('http', 'ws')}${path}`)
    socket.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode!)
      socket.terminate()
    })
    socket.on('error', () => resolve(-1))
  })
  t.equal(status, 401, 'no gateway proof: 401')

  const plainGet = await fetch(`${base}${path}`, { headers: proofHeaders(path, alice) })
  t.equal(plainGet.status, 426, 'a plain GET is told to upgrade')
  t.same(await plainGet.json(), {
    detail: 'This endpoint speaks WebSocket only: send an Upgrade request',
    error_code: 'VALIDATION_ERROR',
    status_code: 426,
  })
})

t.test('the bearer token in Sec-WebSocket-Protocol is never logged', async (t) => {
  const lines: string[] = []
  const logStream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk))
      done()
    },
  })
  const app = await build(t, { LOG_LEVEL: 'trace' }, true, { logStream })
  const base = await listening(app)
  const user = newUserId()
  const token = 'eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2VuLXRleHQ.U0VDUkVU'
  const live = await openLive(t, base, user, { protocols: ['bearer', token] })
  await asUser(app, user).create({ title: 'logged?' })
  await live.next()
  t.equal((await refusal(openLive(t, base, user, { asUser: newUserId(), protocols: ['bearer', token] }))).status, 403)
  live.socket.close()
  await live.closed
  await app.close()
  t.ok(lines.length > 0, 'something was logged')
  t.notOk(lines.join('').includes(token), 'the token is in no log line')
  t.notOk(lines.join('').includes('c2VjcmV0LXRva2VuLXRleHQ'), 'not even a part of it')
})

t.test('shutdown: SSE streams get a shutdown event and end, WebSockets close 1001, then the app closes', async (t) => {
  const app = await build(t)
  const base = await listening(app)
  const user = newUserId()
  const stream = await openEvents(t, base, user)
  await stream.next()
  const live = await openLive(t, base, user)
  t.equal(app.taskEvents.streams, 2)

  await app.close()
  const frame = await stream.next()
  t.equal(frame?.raw, 'event: shutdown\ndata: {}', 'the shutdown event')
  t.equal(await stream.next(), null, 'then the stream ends')
  t.same(await live.closed, { code: 1001, reason: 'server shutting down' })
})

t.test('the account purge deletes the user’s events; events past the retention window are pruned', async (t) => {
  const app = await build(t)
  const db = database(t)
  const gone = newUserId()
  const kept = newUserId()
  await asUser(app, gone).create({ title: 'a' })
  await asUser(app, kept).create({ title: 'b' })
  const count = async (user: string) =>
    (await db.query('SELECT count(*)::int AS n FROM task_events WHERE user_id = $1', [user])).rows[0].n as number
  t.equal(await count(gone), 1)
  const purge = await inject(app, { method: 'DELETE', url: `/internal/users/${gone}/tasks`, caller: 'service:auth-service' })
  t.equal(purge.statusCode, 204)
  t.equal(await count(gone), 0, 'the purged user’s events are gone')
  t.equal(await count(kept), 1, 'others keep theirs')

  const old = newUserId()
  await db.query(
    `INSERT INTO task_events (user_id, type, task, created_at) VALUES ($1, 'created', '{}', now() - interval '11 minutes')`,
    [old],
  )
  await app.taskEvents.prune()
  t.equal(await count(old), 0, 'older than 10 minutes (the default retention): pruned')
  t.equal(await count(kept), 1, 'recent ones stay')
})

t.test('the OpenAPI document shows both endpoints', async (t) => {
  const app = await build(t)
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
  t.ok(doc.paths['/api/{user_id}/tasks/events']?.get, 'events')
  t.ok(doc.paths['/api/{user_id}/tasks/live']?.get, 'live')
  t.ok(doc.paths['/api/{user_id}/tasks/events'].get.responses['200'].content['text/event-stream'], 'the stream type')
})
