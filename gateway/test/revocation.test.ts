/** Signed-out tokens are refused within a poll interval; a list that cannot be refreshed fails closed. */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { createClock } from '@sinonjs/fake-timers'
import { waitUntil } from '@tollgate/common/testing'
import { buildGateway, logCapture, startUpstream, subOf, token } from './helper.js'
import { RevocationList, type RevocationPage } from '../src/auth/revocation-list.js'

const jtiOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).jti as string

/** Resolves once the gateway has logged `msg`: the revocation list's own lines, waited for rather than slept for. */
const logged = (log: ReturnType<typeof logCapture>, msg: string) => waitUntil(async () => log.count(msg) > 0, { intervalMs: 10, what: `log line "${msg}"` })

t.test('a revoked token gets 401 TOKEN_REVOKED within a second; other tokens of the user still work', async (t) => {
  const auth = await startUpstream(t)
  const tasks = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url, REVOCATION_POLL_MS: 100 })
  const sub = randomUUID()
  const a = await token({ sub })
  const b = await token({ sub })
  const url = `/api/${sub}/tasks`
  t.equal((await gw.inject({ url, headers: { authorization: `Bearer ${a}` } })).statusCode, 200, 'works (and is now cached)')

  auth.revoked.push({ jti: jtiOf(a), exp: Math.floor(Date.now() / 1000) + 3600 })
  // Within a second means within a poll (REVOCATION_POLL_MS, 100 ms here): polls run one after another, so once
  // a second poll has begun after the push, the one that served the revocation has been applied. Refused from
  // then on, asserted on that event rather than on the wall clock of a busy machine.
  const polls = auth.feedPolls
  await waitUntil(async () => auth.feedPolls >= polls + 2, { intervalMs: 10, what: 'the feed to serve the revocation' })
  const res = await gw.inject({ url, headers: { authorization: `Bearer ${a}` } })
  t.equal(res.statusCode, 401)
  t.same(res.json(), { detail: 'Token has been revoked', error_code: 'TOKEN_REVOKED', status_code: 401 })
  t.match(res.headers['www-authenticate'], /error="invalid_token"/)
  t.equal((await gw.inject({ url, headers: { authorization: `Bearer ${b}` } })).statusCode, 200, 'another token of the user')
})

t.test('a stale revocation list fails closed with 503; REVOCATION_FAIL_OPEN keeps serving', async (t) => {
  const auth = await startUpstream(t)
  const tasks = await startUpstream(t)
  // Staleness is measured on this clock: the test moves it past the bound instead of sleeping.
  const clock = createClock(Date.now())
  const now = () => clock.now
  const closedLog = logCapture()
  const openLog = logCapture()
  const stale = { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url, REVOCATION_POLL_MS: 100, REVOCATION_MAX_STALENESS_MS: 500, LOG_LEVEL: 'info' }
  const closed = await buildGateway(t, stale, { now, logStream: closedLog.stream })
  const open = await buildGateway(t, { ...stale, REVOCATION_FAIL_OPEN: true }, { now, logStream: openLog.stream })
  const jwt = await token()
  const req = { url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } }
  t.equal((await closed.inject(req)).statusCode, 200)

  auth.feedUp = false
  // Once a poll has failed, none succeeds while the feed is down (polls run one after another).
  await Promise.all([logged(closedLog, 'revocation list sync failing'), logged(openLog, 'revocation list sync failing')])
  clock.tick(499)
  t.equal((await closed.inject(req)).statusCode, 200, 'within the staleness bound: still served')
  clock.tick(101)
  const res = await closed.inject(req)
  t.equal(res.statusCode, 503)
  t.same(res.json(), { detail: 'Token revocation status unavailable', error_code: 'SERVICE_UNAVAILABLE', status_code: 503 })
  t.equal(res.headers['retry-after'], '2')
  t.equal((await closed.admin.inject({ url: '/ready' })).statusCode, 503, 'not ready')
  t.equal((await open.inject(req)).statusCode, 200, 'fail-open replica keeps serving')
  t.equal((await closed.inject({ method: 'POST', url: '/api/auth/signin', payload: { email: 'a@example.com', password: 'secret' } })).statusCode, 200, 'anonymous routes are unaffected')

  auth.feedUp = true
  await logged(closedLog, 'revocation list is in sync again')
  t.equal((await closed.inject(req)).statusCode, 200, 'recovers by itself')
})

t.test('the list is bounded: entries leave with their tokens, and a reset starts over', async (t) => {
  const clock = createClock(Date.now())
  const nowS = Math.floor(clock.now / 1000)
  const tok = (jti: string | undefined, sub = 'someone', iat = nowS, iss = 'tollgate') => ({ jti, iss, sub, iat })
  const pages: RevocationPage[] = [
    { cursor: 3, reset: false, more: true, revoked: [{ jti: 'expired', exp: nowS - 10 }, { jti: 'a', exp: nowS + 60 }] },
    { cursor: 4, reset: false, more: false, revoked: [{ jti: 'b', exp: nowS + 1 }] },
    { cursor: 1, reset: true, more: false, revoked: [{ jti: 'c', exp: nowS + 60 }, { jti: 'user:deleted-user', exp: nowS + 60, user_id: 'deleted-user', not_before: nowS - 5 }, { jti: 'subject:idp x', exp: nowS + 60, user_id: 'x', not_before: nowS - 5, issuer: 'https://idp' }] },
  ]
  const asked: number[] = []
  const list = new RevocationList({
    fetchPage: async (after) => {
      asked.push(after)
      return pages.shift()!
    },
    pollMs: 1000,
    maxStalenessMs: 1000,
    failOpen: false,
    ownIssuer: 'tollgate',
    log: { info() {}, warn() {} } as never,
    now: () => clock.now,
  })
  t.equal(list.check(tok('a')), 'unavailable', 'never loaded: fail closed')
  await list.sync()
  t.same(asked, [0, 3], 'follows the cursor across pages')
  t.equal(list.size, 2, 'the expired entry was never kept')
  t.equal(list.check(tok('a')), 'revoked')
  t.equal(list.check(tok('x')), 'ok')
  t.equal(list.check(tok(undefined)), 'ok', 'a token without jti cannot be revoked individually')
  clock.tick(1100) // b's expiry passes
  await list.sync()
  t.same(asked, [0, 3, 4])
  t.equal(list.size, 3, 'reset dropped the old entries, b expired; c and the two subject cutoffs remain')
  t.equal(list.check(tok('c')), 'revoked')
  t.equal(list.check(tok('d', 'deleted-user', nowS - 100)), 'revoked', 'every token of a deleted user issued before the cutoff')
  t.equal(list.check(tok(undefined, 'deleted-user', nowS - 100)), 'revoked', 'with or without a jti')
  t.equal(list.check(tok('e', 'someone-else', nowS - 100)), 'ok', 'other users are untouched')
  t.equal(list.check(tok(undefined, 'deleted-user', nowS - 100, 'https://idp')), 'ok', 'the same id at another issuer is another subject')
  t.equal(list.check(tok(undefined, 'x', nowS - 100, 'https://idp')), 'revoked', "a subject of an external issuer, cut off by the feed's issuer")
  t.equal(list.check(tok(undefined, 'x', nowS - 100)), 'ok', 'and not our user of that id')
})

t.test('the replica that forwards a signout or an account deletion refuses at once, before any poll', async (t) => {
  const auth = await startUpstream(t)
  const tasks = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url, REVOCATION_POLL_MS: 60_000 })
  const sub = randomUUID()
  const [a, b, c] = await Promise.all([token({ sub }), token({ sub }), token({ sub })])
  auth.behave.status = 204
  t.equal((await gw.inject({ method: 'POST', url: '/api/auth/signout', headers: { authorization: `Bearer ${a}` } })).statusCode, 204)
  const url = `/api/${sub}/tasks`
  t.equal((await gw.inject({ url, headers: { authorization: `Bearer ${a}` } })).json().error_code, 'TOKEN_REVOKED', 'the signed-out token')
  t.equal((await gw.inject({ url, headers: { authorization: `Bearer ${b}` } })).statusCode, 200, 'another token of the user')
  t.equal((await gw.inject({ method: 'DELETE', url: '/api/auth/me', headers: { authorization: `Bearer ${b}` } })).statusCode, 204)
  t.equal((await gw.inject({ url, headers: { authorization: `Bearer ${c}` } })).json().error_code, 'TOKEN_REVOKED', 'every token of a deleted account')
})

t.test('a listener that throws: the revocation holds, the other listeners are still told, the failure is logged', async (t) => {
  const nowS = Math.floor(Date.now() / 1000)
  const errors: unknown[] = []
  const list = new RevocationList({
    fetchPage: async () => ({ cursor: 1, reset: false, more: false, revoked: [{ jti: 'fed', exp: nowS + 60 }] }),
    pollMs: 1000,
    maxStalenessMs: 60_000,
    failOpen: false,
    ownIssuer: 'tollgate',
    log: { info() {}, warn() {}, error: (obj: unknown, msg: string) => errors.push([obj, msg]) } as never,
  })
  const told: string[] = []
  list.onRevoked(() => {
    throw new Error('a broken subscriber')
  })
  list.onRevoked((e) => told.push('jti' in e ? e.jti : e.sub))
  await list.sync()
  list.revokeToken('here', nowS + 60)
  t.same(told, ['fed', 'here'], 'the listener after the broken one heard of both, from the feed and applied here')
  const tok = (jti: string) => ({ jti, iss: 'tollgate', sub: 'u', iat: nowS })
  t.equal(list.check(tok('fed')), 'revoked')
  t.equal(list.check(tok('here')), 'revoked')
  t.equal(errors.length, 2, 'one error line per failure')
  t.match(errors[0], [{ err: { message: 'a broken subscriber' } }, 'revocation listener failed'])
})
