/**
 * One credential per request, in the Authorization header only (RFC 6750
 * section 2; SECURITY S-13): Node keeps only the first of two Authorization
 * headers, so without a look at the raw headers a second, different token
 * would pass unseen.
 */
import t from 'tap'
import { buildGateway, startUpstream, subOf, token } from './helper.js'

t.test('two credentials are a 400 invalid_request; the header alone still works', async (t) => {
  const upstream = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: upstream.url, TASK_SERVICE_URL: upstream.url })
  const jwt = await token()
  const url = `/api/${subOf(jwt)}/tasks`

  const ok = await gw.inject({ url, headers: { authorization: `bearer ${jwt}` } })
  t.equal(ok.statusCode, 200, 'one header, scheme in any case')

  const two = await gw.inject({ url, headers: { authorization: [`Bearer ${jwt}`, 'Bearer garbage'] } as never })
  t.equal(two.statusCode, 400, 'two Authorization headers')
  t.equal(two.json().error_code, 'VALIDATION_ERROR')
  t.match(two.headers['www-authenticate'], /error="invalid_request"/)

  const both = await gw.inject({ url: `${url}?access_token=${jwt}`, headers: { authorization: `Bearer ${jwt}` } })
  t.equal(both.statusCode, 400, 'the header and an access_token parameter')
  t.notMatch(both.body, jwt.slice(-20), 'the token is not echoed')

  const queryOnly = await gw.inject({ url: `${url}?access_token=${jwt}` })
  t.equal(queryOnly.statusCode, 401, 'a token in the query string is no credential')
  t.equal(queryOnly.json().error_code, 'UNAUTHORIZED')
  t.equal(upstream.seen.length, 1, 'only the one good request reached the service')
})
