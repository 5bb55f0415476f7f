/**
 * Signout revokes at every gateway replica within a second, and the
 * revocation outlives a gateway restart (the list lives in the auth-service's
 * database; each replica polls it).
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { call, serviceUrls, startCluster, startGateway } from './cluster.js'

const databaseUrl = process.env.TEST_DATABASE_URL!

t.test('a signed-out token is refused on two gateway processes, also after one restarts', async (t) => {
  const cluster = await startCluster(t, { DATABASE_URL: databaseUrl, LOG_LEVEL: 'info' })
  const { auth, tasks } = serviceUrls(cluster.output())
  const env = { AUTH_SERVICE_URL: auth, TASK_SERVICE_URL: tasks }
  let b = await startGateway(t, env)
  const a = cluster.url

  const email = `revoke-${randomUUID()}@example.com`
  const user = (await call(a, 'POST', '/api/auth/signup', { email, password: 'SecurePass123!' })).json
  const token = (await call(a, 'POST', '/api/auth/signin', { email, password: 'SecurePass123!' })).json.token
  const other = (await call(a, 'POST', '/api/auth/signin', { email, password: 'SecurePass123!' })).json.token
  const path = `/api/${user.id}/tasks`
  t.equal((await call(a, 'GET', path, undefined, token)).status, 200, 'replica A accepts the token')
  t.equal((await call(b.url, 'GET', path, undefined, token)).status, 200, 'replica B accepts the token')

  t.equal((await call(a, 'POST', '/api/auth/signout', undefined, token)).status, 204, 'signout through A')
  const signedOutAt = Date.now()
  let res
  do {
    res = await call(b.url, 'GET', path, undefined, token)
  } while (res.status === 200 && Date.now() - signedOutAt < 3000)
  const took = Date.now() - signedOutAt
  t.equal(res.status, 401)
  t.equal(res.json.error_code, 'TOKEN_REVOKED')
  t.ok(took < 1000, `replica B refuses it ${took} ms after signout`)
  t.equal((await call(a, 'GET', '/api/auth/me', undefined, token)).json.error_code, 'TOKEN_REVOKED', 'replica A (which forwarded the signout) at once')
  t.equal((await call(b.url, 'GET', path, undefined, other)).status, 200, 'the same user’s other session still works')

  t.equal(await b.stop(), 0, 'replica B stops cleanly')
  b = await startGateway(t, env)
  t.equal((await call(b.url, 'GET', path, undefined, token)).json.error_code, 'TOKEN_REVOKED', 'still revoked after B restarts')
})
