/** Hostile bodies and router errors at the task-service itself (issue 12, items 8 and 10). */
import t from 'tap'
import { build, inject, newUserId } from './helper.js'

const NESTED = '['.repeat(520_000) + ']'.repeat(520_000)

t.test('deeply nested JSON on the JSON routes is 400 VALIDATION_ERROR', async (t) => {
  const app = await build(t)
  const userId = newUserId()
  const created = await inject(app, { method: 'POST', url: `/api/${userId}/tasks`, userId, payload: { title: 'one' } })
  t.equal(created.statusCode, 201)
  for (const [method, url] of [
    ['POST', `/api/${userId}/tasks`],
    ['PUT', `/api/${userId}/tasks/${created.json().id}`],
  ] as const) {
    const res = await inject(app, { method, url, userId, headers: { 'content-type': 'application/json' }, payload: NESTED })
    t.equal(res.statusCode, 400, `${method} ${url}`)
    t.equal(res.json().error_code, 'VALIDATION_ERROR')
  }
})

t.test('router errors are in the envelope with the request id, never echoing the input', async (t) => {
  const app = await build(t)
  const cases: Array<[string, number, string]> = [
    [`/api/${'u'.repeat(300)}/tasks`, 414, 'URI_TOO_LONG'],
    ['/api/%zz-marker/tasks', 400, 'VALIDATION_ERROR'],
  ]
  for (const [url, status, code] of cases) {
    const res = await app.inject({ url, headers: { 'x-request-id': 'task-rid' } })
    t.equal(res.statusCode, status, url.slice(0, 30))
    t.same(Object.keys(res.json()).sort(), ['detail', 'error_code', 'status_code'])
    t.equal(res.json().error_code, code)
    t.notMatch(res.body, /uuu|marker/)
    t.equal(res.headers['x-request-id'], 'task-rid')
  }
})
