/**
 * A live stream (SSE) the edge ends while its upstream has not answered yet:
 * the open is refused as it would be if it came now (a signed-out token 401
 * TOKEN_REVOKED, a gateway shutting down 503), in the envelope, rather than
 * left waiting or turned into a stream that was never allowed.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { buildGateway, startUpstream, token, until } from './helper.js'

type Tap = Parameters<typeof buildGateway>[0]


/** A gateway whose task service holds every request unanswered. */
async function setup(t: Tap) {
  const auth = await startUpstream(t)
  const tasks = await startUpstream(t)
  tasks.behave.hold = true
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url })
  const base = await gw.listen({ port: 0, host: '127.0.0.1' })
  return { auth, tasks, gw, base }
}

async function openHeld(base: string, tasks: { holding: number }) {
  const sub = randomUUID()
  const jwt = await token({ sub })
  const before = tasks.holding
  const answer = fetch(`${base}/api/${sub}/tasks/events`, { headers: { authorization: `Bearer ${jwt}`, accept: 'text/event-stream' } })
  await until(() => tasks.holding === before + 1, 'the open to reach the task service')
  return { jwt, answer }
}

t.test('signed out while the upstream has not answered: 401 TOKEN_REVOKED', async (t) => {
  const { auth, tasks, gw, base } = await setup(t)
  const { jwt, answer } = await openHeld(base, tasks)
  auth.behave.status = 204
  t.equal((await gw.inject({ method: 'POST', url: '/api/auth/signout', headers: { authorization: `Bearer ${jwt}` } })).statusCode, 204)
  const res = await answer
  t.equal(res.status, 401)
  t.same(await res.json(), { detail: 'Token has been revoked', error_code: 'TOKEN_REVOKED', status_code: 401 })
  t.notMatch(res.headers.get('content-type') ?? '', /event-stream/, 'no stream was begun')
})

t.test('the gateway shutting down while the upstream has not answered: 503', async (t) => {
  const { tasks, gw, base } = await setup(t)
  const { answer } = await openHeld(base, tasks)
  const closing = gw.close()
  const res = await answer
  t.equal(res.status, 503)
  t.same(await res.json(), { detail: 'The gateway is shutting down', error_code: 'SERVICE_UNAVAILABLE', status_code: 503 })
  await closing
})
