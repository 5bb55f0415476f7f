/**
 * Live task updates through the edge (issue 18): server-sent events through
 * the gateway's own forwarder, WebSockets through @fastify/http-proxy, both
 * governed while open (revocation, expiry, account deletion, shutdown, a
 * per-user cap). A real listening gateway in front of a real fixture upstream
 * that speaks the task-service's wire format.
 */
import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import WebSocket from 'ws'
import { createClock } from '@sinonjs/fake-timers'
import { proofKey } from '@tollgate/common'
import { buildGateway, logCapture, SECRET, startUpstream, token, until } from './helper.js'
import { startLiveTasks } from './fixtures/live-tasks.js'
import { spawnGateway } from './gateway-process.js'
import type { BuildOptions } from '../src/app.js'

const jtiOf = (jwt: string): string => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).jti
const expOf = (jwt: string): number => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).exp

type Tap = Test

async function setup(tt: Tap, overrides: Record<string, unknown> = {}, opts: BuildOptions = {}) {
  const auth = await startUpstream(tt)
  const tasks = await startLiveTasks(tt, proofKey(SECRET))
  const gw = await buildGateway(tt, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url, ...overrides }, opts)
  const base = await gw.listen({ port: 0, host: '127.0.0.1' })
  return { auth, tasks, gw, base }
}


/** An SSE subscription over fetch, as a browser would open it. */
async function subscribe(tt: Tap, base: string, path: string, jwt: string, headers: Record<string, string> = {}) {
  const ac = new AbortController()
  const res = await fetch(base + path, { headers: { authorization: `Bearer ${jwt}`, ...headers }, signal: ac.signal })
  const s = { res, text: '', ended: false, close: () => ac.abort() }
  tt.teardown(() => ac.abort())
  if (res.status === 200) {
    const reader = res.body!.getReader()
    const decoder = new TextDecoder()
    void (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          s.text += decoder.decode(value, { stream: true })
        }
      } catch {
        // aborted by the test
      }
      s.ended = true
    })()
  } else {
    s.text = await res.text()
    s.ended = true
  }
  return s
}

const wsUrl = (base: string, sub: string) => `${base.replace('http', 'ws')}/api/${sub}/tasks/live`

/** Resolves with a WebSocket's close code and reason. */
const closeOf = (ws: WebSocket) => new Promise<[number, string]>((resolve) => ws.on('close', (code, reason) => resolve([code, reason.toString()])))

/** The status a WebSocket upgrade is answered with (101 when it opens; the socket is then closed). */
function upgradeStatus(url: string, protocols?: string[]): Promise<number> {
  return new Promise<number>((resolve) => {
    const ws = new WebSocket(url, protocols)
    ws.on('unexpected-response', (_req, r) => resolve(r.statusCode!))
    ws.on('open', () => {
      resolve(101)
      ws.close()
    })
    ws.on('error', () => {})
  })
}

/** One SSE stream and one WebSocket of the same token, both open and connected; `closed` is the WebSocket's end. */
async function openBoth(tt: Tap, base: string, sub: string, jwt: string) {
  const s = await subscribe(tt, base, `/api/${sub}/tasks/events`, jwt)
  const ws = new WebSocket(wsUrl(base, sub), ['bearer', jwt])
  const closed = closeOf(ws)
  await new Promise((resolve) => ws.on('open', resolve))
  await until(() => s.text.includes(': connected'), 'connected')
  return { s, closed }
}

t.test('SSE flows through the gateway event by event, with Last-Event-ID, and never the token upstream', async (t) => {
  // A short upstream timeout: a live stream has it to its first byte only. Short client timeouts too: they bound
  // receiving the request, never the answer's length.
  const { tasks, base } = await setup(t, { UPSTREAM_TIMEOUT_MS: 100, REQUEST_TIMEOUT_MS: 100, HEADERS_TIMEOUT_MS: 100 })
  const sub = randomUUID()
  const jwt = await token({ sub })
  const s = await subscribe(t, base, `/api/${sub}/tasks/events`, jwt, { 'last-event-id': '41' })
  t.equal(s.res.status, 200)
  t.match(s.res.headers.get('content-type'), /^text\/event-stream/)
  t.equal(s.res.headers.get('cache-control'), 'no-store')
  await until(() => s.text.includes(': connected\n\n'), 'the connected comment')
  for (let i = 1; i <= 3; i++) {
    // Each event reaches the client before the next is even written: nothing is held back.
    const id = tasks.emit(sub, 'created', { id: `t${i}`, title: `task ${i}` })
    await until(() => s.text.includes(`id: ${id}\n`), `event ${id}`)
    // Longer than the upstream timeout between events (the gateway's timer is due first: same process, same
    // timers): the stream stays open.
    await new Promise((r) => setTimeout(r, 150))
  }
  t.notOk(s.ended, 'still open after quiet gaps longer than UPSTREAM_TIMEOUT_MS')
  const [open] = tasks.live(sub)
  t.equal(open!.headers['last-event-id'], '41', 'Last-Event-ID forwarded for resumption')
  t.equal(open!.headers.authorization, undefined, 'the token stays at the edge')
  t.equal(open!.headers['x-user-id'], sub, 'the signed identity is forwarded (the fixture checked its proof)')
  s.close()
  await until(() => tasks.live(sub).length === 0, 'the upstream stream to close when the client leaves')
  t.pass('the client leaving closes the upstream stream')
})

t.test('a token in the query is refused on both live routes, even beside a valid one', async (t) => {
  const { base } = await setup(t)
  const sub = randomUUID()
  const jwt = await token({ sub })
  for (const q of [`access_token=${jwt}`, `token=${jwt}`]) {
    const s = await subscribe(t, base, `/api/${sub}/tasks/events?${q}`, jwt)
    t.equal(s.res.status, 400, q.split('=')[0])
    t.equal(JSON.parse(s.text).error_code, 'VALIDATION_ERROR')
  }
  t.equal(await upgradeStatus(`${wsUrl(base, sub)}?access_token=${jwt}`, ['bearer', jwt]), 400, 'a WebSocket with a token in the query is refused')
  t.equal(await upgradeStatus(`${wsUrl(base, sub)}?token=${jwt}`), 400, 'and is never taken as the credential')
})

t.test('sign-out ends exactly that token\'s stream with a final revoked event, at an event boundary', async (t) => {
  const { auth, tasks, gw, base } = await setup(t)
  const alice = randomUUID()
  const bob = randomUUID()
  const [a1, a2, b1] = await Promise.all([token({ sub: alice }), token({ sub: alice }), token({ sub: bob })])
  const s1 = await subscribe(t, base, `/api/${alice}/tasks/events`, a1)
  const s2 = await subscribe(t, base, `/api/${alice}/tasks/events`, a2)
  const sb = await subscribe(t, base, `/api/${bob}/tasks/events`, b1)
  await until(() => [s1, s2, sb].every((s) => s.text.includes(': connected')), 'all three connected')
  tasks.emit(alice, 'created', { id: 'x' })
  await until(() => s1.text.includes('id: ') && s2.text.includes('id: '), 'a first event')
  // Half an event is on its way when the token is signed out: the gateway's event must not land inside it.
  tasks.write(alice, 'id: 99\ndata: {"type":"upd')
  await new Promise((r) => setTimeout(r, 50))
  // Signed out through this gateway: applied here at once.
  auth.behave.status = 204
  t.equal((await gw.inject({ method: 'POST', url: '/api/auth/signout', headers: { authorization: `Bearer ${a1}` } })).statusCode, 204)
  await until(() => s1.ended, 'the signed-out stream to end')
  t.match(s1.text, /\n\nevent: revoked\ndata: \{"reason":"token_revoked"\}\n\n$/, 'ends with the revoked event')
  t.notMatch(s1.text, /"upd/, 'after whole events only')
  t.notOk(s2.ended, "the user's other token keeps its stream")
  t.notOk(sb.ended, "another user's stream is untouched")
  tasks.write(alice, 'ated","task":{"id":"x"}}\n\n')
  await until(() => s2.text.includes('id: 99'), 'the completed event on the other stream')
  t.pass('the half event completes on the stream that stayed')
})

t.test('a sign-out learnt from the revocation feed (another replica) ends the stream', async (t) => {
  const { auth, tasks, base } = await setup(t, { REVOCATION_POLL_MS: 100 })
  const sub = randomUUID()
  const [a1, a2] = await Promise.all([token({ sub }), token({ sub })])
  const s1 = await subscribe(t, base, `/api/${sub}/tasks/events`, a1)
  const s2 = await subscribe(t, base, `/api/${sub}/tasks/events`, a2)
  await until(() => s1.text.includes(': connected') && s2.text.includes(': connected'), 'connected')
  const at = Date.now()
  auth.revoked.push({ jti: jtiOf(a1), exp: expOf(a1) })
  await until(() => s1.ended, 'the revoked stream to end')
  t.comment(`closed ${Date.now() - at} ms after the feed had it`)
  t.match(s1.text, /event: revoked\ndata: \{"reason":"token_revoked"\}\n\n$/)
  t.notOk(s2.ended)
  await until(() => tasks.live(sub).length === 1, 'the upstream side of the closed stream to close')
  t.pass('the upstream stream of the revoked token is closed too')
})

t.test('account deletion ends every stream of the user, SSE and WebSocket, and no one else\'s', async (t) => {
  const { auth, gw, base } = await setup(t)
  const alice = randomUUID()
  const bob = randomUUID()
  const [a1, a2, a3, b1] = await Promise.all([token({ sub: alice }), token({ sub: alice }), token({ sub: alice }), token({ sub: bob })])
  const s1 = await subscribe(t, base, `/api/${alice}/tasks/events`, a1)
  const s2 = await subscribe(t, base, `/api/${alice}/tasks/events`, a2)
  const sb = await subscribe(t, base, `/api/${bob}/tasks/events`, b1)
  const ws = new WebSocket(wsUrl(base, alice), ['bearer', a3])
  const closed = closeOf(ws)
  await new Promise((resolve) => ws.on('open', resolve))
  await until(() => [s1, s2, sb].every((s) => s.text.includes(': connected')), 'connected')
  auth.behave.status = 204
  t.equal((await gw.inject({ method: 'DELETE', url: '/api/auth/me', headers: { authorization: `Bearer ${a1}` } })).statusCode, 204)
  await until(() => s1.ended && s2.ended, "the user's streams to end")
  for (const s of [s1, s2]) t.match(s.text, /event: revoked\ndata: \{"reason":"user_revoked"\}\n\n$/)
  t.same(await closed, [4401, 'user_revoked'], 'the WebSocket closes with 4401')
  t.notOk(sb.ended, "another user's stream is untouched")
})

t.test('a stream ends when its token expires, at its exp (the gateway clock; the 30 s tolerance is not added)', async (t) => {
  const jwt = await token({ expiresIn: '60s' })
  const exp = expOf(jwt) * 1000
  let at = exp - 300 // 300 ms of validity left by the gateway's clock
  const { base } = await setup(t, {}, { now: () => at })
  const sub = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).sub
  const s = await subscribe(t, base, `/api/${sub}/tasks/events`, jwt)
  t.equal(s.res.status, 200)
  await until(() => s.ended, 'the stream to end at expiry')
  t.match(s.text, /: connected\n\n[^]*event: revoked\ndata: \{"reason":"token_expired"\}\n\n$/)
  at = exp + 1000
  const again = await subscribe(t, base, `/api/${sub}/tasks/events`, jwt)
  t.equal(again.res.status, 401, 'and cannot be reopened with it (within the tolerance a request would still pass)')
  t.equal(JSON.parse(again.text).error_code, 'TOKEN_EXPIRED')
})

t.test('each user holds at most STREAMS_PER_USER streams; the next gets 429; the gauge counts them', async (t) => {
  const { gw, base } = await setup(t)
  const sub = randomUUID()
  const jwt = await token({ sub })
  const open = []
  for (let i = 0; i < 10; i++) open.push(await subscribe(t, base, `/api/${sub}/tasks/events`, jwt))
  t.ok(open.every((s) => s.res.status === 200), 'ten streams open')
  const eleventh = await subscribe(t, base, `/api/${sub}/tasks/events`, jwt)
  t.equal(eleventh.res.status, 429)
  t.same(JSON.parse(eleventh.text), { detail: 'At most 10 open live streams per user', error_code: 'RATE_LIMITED', status_code: 429 })
  const other = await subscribe(t, base, `/api/${randomUUID()}/tasks/events`, jwt)
  t.equal(other.res.status, 403, 'a stream of another user id is refused (ownership)')
  t.equal(await upgradeStatus(wsUrl(base, sub), ['bearer', jwt]), 429, 'WebSockets count against the same cap')
  const metrics = (await gw.admin.inject('/metrics')).body
  t.match(metrics, /gateway_open_streams\{kind="sse"[^}]*\} 10/)
  open[0]!.close()
  let reopened = await subscribe(t, base, `/api/${sub}/tasks/events`, jwt)
  for (let i = 0; reopened.res.status === 429 && i < 100; i++) {
    await new Promise((r) => setTimeout(r, 20))
    reopened = await subscribe(t, base, `/api/${sub}/tasks/events`, jwt)
  }
  t.equal(reopened.res.status, 200, 'a closed stream frees its place')
})

t.test('WebSocket: bearer subprotocol in, only "bearer" echoed and forwarded, events through, 4401 on sign-out', async (t) => {
  const logs = logCapture()
  const { auth, tasks, gw, base } = await setup(t, { LOG_LEVEL: 'trace' }, { logStream: logs.stream })
  const sub = randomUUID()
  const jwt = await token({ sub })
  const ws = new WebSocket(wsUrl(base, sub), ['bearer', jwt])
  const messages: unknown[] = []
  ws.on('message', (data) => messages.push(JSON.parse(String(data))))
  const closed = closeOf(ws)
  await new Promise((resolve) => ws.on('open', resolve))
  t.equal(ws.protocol, 'bearer', 'the gateway echoes bearer, never the token')
  await until(() => tasks.live(sub).length === 1, 'the upstream socket')
  const [open] = tasks.live(sub)
  t.equal(open!.protocol, 'bearer', 'the upstream is offered bearer')
  t.equal(open!.headers['sec-websocket-protocol'], 'bearer', 'and nothing else')
  t.notOk(JSON.stringify(open!.headers).includes(jwt), 'the token reaches the upstream nowhere')
  tasks.emit(sub, 'completed', { id: 'w1' })
  await until(() => messages.length === 1, 'a message')
  t.match(messages[0], { type: 'completed', task: { id: 'w1' } })
  auth.behave.status = 204
  t.equal((await gw.inject({ method: 'POST', url: '/api/auth/signout', headers: { authorization: `Bearer ${jwt}` } })).statusCode, 204)
  t.same(await closed, [4401, 'token_revoked'])
  await until(() => tasks.live(sub).length === 0, 'the upstream socket to close')
  t.pass('the upstream socket is closed too')
  t.ok(logs.lines.length > 0, 'the gateway logged (at trace)')
  t.notOk(JSON.stringify(logs.lines).includes(jwt.split('.')[2]!), 'and the token is in no log line')
})

t.test('WebSocket: no token, a bad token, or another user are refused before the upgrade; expiry closes 4401', async (t) => {
  const jwt = await token({ expiresIn: '60s' })
  const exp = expOf(jwt) * 1000
  let at = exp - 300
  const { base } = await setup(t, { JWT_CLOCK_TOLERANCE_S: 0 }, { now: () => at })
  const sub = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).sub
  const url = wsUrl(base, sub)
  t.equal(await upgradeStatus(url), 401, 'no token')
  t.equal(await upgradeStatus(url, ['bearer', 'not-a-jwt']), 401, 'a bad token')
  t.equal(await upgradeStatus(wsUrl(base, randomUUID()), ['bearer', jwt]), 403, 'another user')
  t.same(await closeOf(new WebSocket(url, ['bearer', jwt])), [4401, 'token_expired'], 'closed when the token expires')
  at = exp + 1000
  t.equal(await upgradeStatus(url, ['bearer', jwt]), 401, 'and cannot reopen')
})

t.test('shutdown ends streams with a reason: SSE event: shutdown, WebSocket 1001', async (t) => {
  const { gw, base } = await setup(t)
  const sub = randomUUID()
  const { s, closed } = await openBoth(t, base, sub, await token({ sub }))
  await gw.close()
  await until(() => s.ended, 'the stream to end')
  t.match(s.text, /event: shutdown\ndata: \{"reason":"shutdown"\}\n\n$/)
  t.same(await closed, [1001, 'shutdown'])
})

t.test('open streams never take the connections the API shares with the upstream', async (t) => {
  const { base } = await setup(t, { UPSTREAM_CONNECTIONS: 2, UPSTREAM_TIMEOUT_MS: 2000 })
  const sub = randomUUID()
  const jwt = await token({ sub })
  const streams = []
  for (let i = 0; i < 4; i++) streams.push(await subscribe(t, base, `/api/${sub}/tasks/events`, jwt))
  t.ok(streams.every((s) => s.res.status === 200), 'more streams than UPSTREAM_CONNECTIONS')
  const res = await fetch(`${base}/api/${sub}/tasks`, { headers: { authorization: `Bearer ${jwt}` } })
  t.equal(res.status, 404, 'an API request still reaches the upstream at once (the fixture has no list: 404, not a 504)')
})

t.test('two replicas: a sign-out in the feed ends the stream at each', async (t) => {
  const auth = await startUpstream(t)
  const tasks = await startLiveTasks(t, proofKey(SECRET))
  const env = { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url }
  const bases = []
  for (let i = 0; i < 2; i++) bases.push(await (await buildGateway(t, env)).listen({ port: 0, host: '127.0.0.1' }))
  const sub = randomUUID()
  const [jwt, other] = await Promise.all([token({ sub }), token({ sub })])
  const streams = await Promise.all(bases.map((base) => subscribe(t, base, `/api/${sub}/tasks/events`, jwt)))
  const kept = await Promise.all(bases.map((base) => subscribe(t, base, `/api/${sub}/tasks/events`, other)))
  await until(() => [...streams, ...kept].every((s) => s.text.includes(': connected')), 'connected at both')
  const at = Date.now()
  auth.revoked.push({ jti: jtiOf(jwt), exp: expOf(jwt) })
  await until(() => streams.every((s) => s.ended), 'both replicas to end the stream')
  t.comment(`both closed ${Date.now() - at} ms after the feed had the sign-out (poll every 250 ms)`)
  for (const s of streams) t.match(s.text, /event: revoked\ndata: \{"reason":"token_revoked"\}\n\n$/)
  t.ok(kept.every((s) => !s.ended), "the user's other token keeps its streams at both")
})

t.test('the revocation list tells of each new revocation once, from the feed or applied here', async (t) => {
  const { RevocationList } = await import('../src/auth/revocation-list.js')
  const nowS = Math.floor(Date.now() / 1000)
  const pages = [
    { cursor: 2, reset: false, more: false, revoked: [{ jti: 'a', exp: nowS + 60 }, { jti: 'user:u', exp: nowS + 60, user_id: 'u', not_before: nowS - 5 }] },
    { cursor: 3, reset: false, more: false, revoked: [{ jti: 'a', exp: nowS + 60 }, { jti: 'old', exp: nowS - 1 }] },
  ]
  const list = new RevocationList({
    fetchPage: async () => pages.shift() ?? { cursor: 3, reset: false, more: false, revoked: [] },
    pollMs: 1000,
    maxStalenessMs: 5000,
    failOpen: false,
    ownIssuer: 'tollgate',
    log: { warn() {}, info() {}, error() {} } as never,
  })
  const seen: unknown[] = []
  const stop = list.onRevoked((e) => seen.push(e))
  await list.sync()
  await list.sync()
  list.revokeToken('b', nowS + 60)
  list.revokeUser('u', nowS - 10, nowS + 60) // an earlier cutoff than the one known: nothing new
  list.revokeUser('u', nowS, nowS + 60)
  t.same(seen, [
    { jti: 'a' },
    { issuer: 'tollgate', sub: 'u', notBeforeS: nowS - 5 },
    { jti: 'b' },
    { issuer: 'tollgate', sub: 'u', notBeforeS: nowS },
  ])
  stop()
  list.revokeToken('c', nowS + 60)
  t.equal(seen.length, 4, 'nothing after unsubscribing')
})

t.test('a real gateway process on SIGTERM ends its streams with a reason, then exits', async (t) => {
  const auth = await startUpstream(t)
  const tasks = await startLiveTasks(t, proofKey(SECRET))
  const { url: base, proc, exited } = await spawnGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url })
  const sub = randomUUID()
  const { s, closed } = await openBoth(t, base, sub, await token({ sub }))
  const at = Date.now()
  proc.kill('SIGTERM')
  await until(() => s.ended, 'the stream to end')
  t.match(s.text, /event: shutdown\ndata: \{"reason":"shutdown"\}\n\n$/)
  t.same(await closed, [1001, 'shutdown'])
  t.equal(await exited, 0, 'the process exits cleanly')
  t.comment(`exited ${Date.now() - at} ms after SIGTERM`)
})

t.test('a revocation list gone stale ends open streams as it fails requests (unless REVOCATION_FAIL_OPEN)', async (t) => {
  // Staleness is measured on the gateways' clock, moved past the bound once the feed has failed (no sleeping it out).
  const clock = createClock(Date.now())
  const stale = { REVOCATION_POLL_MS: 100, REVOCATION_MAX_STALENESS_MS: 500, LOG_LEVEL: 'warn' }
  const closedLog = logCapture()
  const openLog = logCapture()
  const { auth, base } = await setup(t, stale, { now: () => clock.now, logStream: closedLog.stream })
  const open = await setup(t, { ...stale, REVOCATION_FAIL_OPEN: true }, { now: () => clock.now, logStream: openLog.stream })
  const sub = randomUUID()
  const jwt = await token({ sub })
  const { s, closed } = await openBoth(t, base, sub, jwt)
  const kept = await subscribe(t, open.base, `/api/${sub}/tasks/events`, jwt)
  await until(() => kept.text.includes(': connected'), 'connected')
  auth.feedUp = false
  open.auth.feedUp = false
  // Polls run one after another: once one has failed, none succeeds while the feed is down.
  await until(() => closedLog.count('revocation list sync failing') > 0 && openLog.count('revocation list sync failing') > 0, 'both lists to fail a poll')
  clock.tick(600)
  await until(() => s.ended, 'the stream to end')
  t.match(s.text, /event: shutdown\ndata: \{"reason":"revocation_unavailable"\}\n\n$/, 'come back later: event: shutdown')
  t.same(await closed, [1013, 'revocation_unavailable'], 'WebSocket 1013 (try again later)')
  const again = await subscribe(t, base, `/api/${sub}/tasks/events`, jwt)
  t.equal(again.res.status, 503, 'and a new open waits for the list, as every request does')

  // The staleness check runs every REVOCATION_POLL_MS on this process's timers, which fire in order: past
  // one more period after the fail-closed stream ended, a fail-open stream would have been ended too.
  await new Promise((r) => setTimeout(r, 150))
  t.match((await open.gw.admin.inject('/metrics')).body, /^gateway_revocation_staleness_seconds(\{[^}]*\})? 0\.[6-9]/m, 'the fail-open list is as stale')
  t.notOk(kept.ended, 'with REVOCATION_FAIL_OPEN the stream stays')
})

t.test('an open counts as a request against the rate limits (it goes through the route pipeline)', async (t) => {
  const { base } = await setup(t, { RATE_LIMIT_USER_MAX: 2, RATE_LIMIT_BATCHED: 'none' })
  const sub = randomUUID()
  const jwt = await token({ sub })
  t.equal((await subscribe(t, base, `/api/${sub}/tasks/events`, jwt)).res.status, 200)
  t.equal(await upgradeStatus(wsUrl(base, sub), ['bearer', jwt]), 101, 'the second open (a WebSocket) is within the limit')
  const third = await subscribe(t, base, `/api/${sub}/tasks/events`, jwt)
  t.equal(third.res.status, 429, 'the third is over RATE_LIMIT_USER_MAX')
  t.equal(JSON.parse(third.text).error_code, 'RATE_LIMITED')
})

t.test('WebSocket opens are balanced over the upstream\'s targets, skip one health checks took out, and get 503 when none is in', async (t) => {
  const key = proofKey(SECRET)
  const [a, b] = await Promise.all([startLiveTasks(t, key), startLiveTasks(t, key)])
  const auth = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: `${a.url}, ${b.url}`, UPSTREAM_HEALTH_CHECK_INTERVAL_MS: 50 })
  const base = await gw.listen({ port: 0, host: '127.0.0.1' })
  const opened: WebSocket[] = []
  t.teardown(() => opened.forEach((ws) => ws.terminate()))
  const open = async () => {
    const sub = randomUUID()
    const ws = new WebSocket(`${base.replace('http', 'ws')}/api/${sub}/tasks/live`, ['bearer', await token({ sub })])
    opened.push(ws)
    return new Promise<number>((resolve) => {
      ws.on('open', () => resolve(101))
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      ws.on('error', () => resolve(0))
    })
  }
  const upgraded = (x: typeof a) => x.opens.filter((o) => o.kind === 'websocket').length
  for (let i = 0; i < 4; i++) t.equal(await open(), 101, `open ${i}`)
  await until(() => upgraded(a) + upgraded(b) === 4, 'four upstream sockets')
  t.same([upgraded(a), upgraded(b)], [2, 2], 'two opens on each target')

  // b's health check fails from now on: once it is out, every open goes to a.
  const ready = async () => (await gw.admin.inject('/ready')).json().checks['task-service'] as string
  const bHost = new URL(b.url).host
  b.behave.healthStatus = 503
  for (let i = 0; i < 200 && !(await ready()).includes(`${bHost} out`); i++) await new Promise((r) => setTimeout(r, 25))
  t.match(await ready(), `${bHost} out`, 'the health checks took b out')
  for (let i = 0; i < 4; i++) t.equal(await open(), 101, `open ${i} with b out`)
  await until(() => upgraded(a) === 6, 'a took them')
  t.equal(upgraded(b), 2, 'b got none of them')

  a.behave.healthStatus = 503
  for (let i = 0; i < 200 && !(await ready()).includes(`${new URL(a.url).host} out`); i++) await new Promise((r) => setTimeout(r, 25))
  t.equal(await open(), 503, 'every target out: 503 before any upgrade')
})
