/**
 * Server-sent events through the edge go out whole: when one chunk from the
 * service carries a whole event and the start of the next, the whole one is
 * passed on at once and the rest is held until it completes, so the
 * gateway's own last event (a sign-out's `revoked`) lands after the whole
 * events only, never inside one.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { proofKey } from '@tollgate/common'
import { buildGateway, SECRET, startUpstream, token, until } from './helper.js'
import { startLiveTasks } from './fixtures/live-tasks.js'


t.test('a chunk with a whole event and half of the next: the whole one flows now, the half never ahead of the final event', async (t) => {
  const auth = await startUpstream(t)
  const tasks = await startLiveTasks(t, proofKey(SECRET))
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url })
  const base = await gw.listen({ port: 0, host: '127.0.0.1' })
  const alice = randomUUID()
  const jwt = await token({ sub: alice })

  const ac = new AbortController()
  t.teardown(() => ac.abort())
  const res = await fetch(`${base}/api/${alice}/tasks/events`, { headers: { authorization: `Bearer ${jwt}` }, signal: ac.signal })
  t.equal(res.status, 200)
  const s = { text: '', ended: false }
  void (async () => {
    const decoder = new TextDecoder()
    try {
      for await (const chunk of res.body!) s.text += decoder.decode(chunk as Uint8Array, { stream: true })
    } catch {
      // aborted at teardown
    }
    s.ended = true
  })()
  await until(() => s.text.includes(': connected'), 'the stream to open')

  tasks.write(alice, 'id: 1\ndata: {"type":"created","task":{"id":"a"}}\n\nid: 2\ndata: {"type":"upd')
  await until(() => s.text.includes('id: 1\n'), 'the whole event')
  t.notMatch(s.text, /id: 2/, 'the half event is held back')

  auth.behave.status = 204
  t.equal((await gw.inject({ method: 'POST', url: '/api/auth/signout', headers: { authorization: `Bearer ${jwt}` } })).statusCode, 204)
  await until(() => s.ended, 'the signed-out stream to end')
  t.match(s.text, /id: 1\ndata: \{"type":"created","task":\{"id":"a"\}\}\n\nevent: revoked\ndata: \{"reason":"token_revoked"\}\n\n$/, 'the final event right after the whole one')
  t.notMatch(s.text, /"upd/, 'the half event never went out')
})
