/** Hostile bodies and router errors at the auth-service itself (issue 12, items 8 and 10). */
import t from 'tap'
import { build, inject } from './helper.js'

const NESTED = '['.repeat(520_000) + ']'.repeat(520_000)

t.test('deeply nested JSON on the JSON routes is 400 VALIDATION_ERROR', async (t) => {
  const app = await build(t)
  for (const url of ['/api/auth/signup', '/api/auth/signin']) {
    const res = await inject(app, { method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: NESTED })
    t.equal(res.statusCode, 400, url)
    t.equal(res.json().error_code, 'VALIDATION_ERROR')
    t.equal(res.json().status_code, 400)
  }
})

t.test('router errors are in the envelope with the request id, never echoing the input', async (t) => {
  const app = await build(t)
  for (const url of ['/api/auth/%zz-marker', '/.well-known/%E0%A4%A-marker']) {
    const res = await app.inject({ url, headers: { 'x-request-id': 'auth-rid' } })
    t.equal(res.statusCode, 400, url)
    t.same(res.json(), { detail: 'Malformed URL', error_code: 'VALIDATION_ERROR', status_code: 400 })
    t.notMatch(res.body, 'marker')
    t.equal(res.headers['x-request-id'], 'auth-rid')
  }
})
