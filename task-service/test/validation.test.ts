import t from 'tap'
import { asUser, build, inject, newUserId } from './helper.js'

// Every bad input is a 400 envelope naming what was wrong: never a 500, never stored.

t.test('list query validation', async (t) => {
  const app = await build(t)
  const u = asUser(app, newUserId())
  const cases: Array<[string, string]> = [
    ['limit=0', 'limit'],
    ['limit=101', 'limit'],
    ['limit=-1', 'limit'],
    ['limit=1.5', 'limit'],
    ['limit=abc', 'limit'],
    ['limit=', 'limit'],
    ['limit=1&limit=2', 'limit'],
    ['offset=-1', 'offset'],
    ['offset=1000001', 'offset'],
    ['offset=x', 'offset'],
    ['status=bogus', 'status'],
    ['status=', 'status'],
    ['sort=id', 'sort'],
    ['sort=created_at;DROP TABLE tasks', 'sort'],
    ['sort=title%20desc', 'sort'],
    ['order=sideways', 'order'],
    ['order=ASC', 'order'],
  ]
  for (const [query, field] of cases) {
    const res = await u.list(query)
    t.equal(res.statusCode, 400, query)
    t.equal(res.headers['cache-control'], 'no-store')
    const body = res.json()
    t.equal(body.error_code, 'VALIDATION_ERROR', query)
    t.equal(body.status_code, 400)
    t.match(body.detail, new RegExp(`querystring/${field}\\b`), `${query}: detail names ${field}`)
  }
})

t.test('create validation', async (t) => {
  const app = await build(t)
  const userId = newUserId()
  const u = asUser(app, userId)
  const cases: Array<[string, unknown, string]> = [
    ['empty title', { title: '' }, 'title'],
    ['whitespace-only title', { title: ' \t\n\u00a0\u2003 ' }, 'title'],
    ['201-character title', { title: 'a'.repeat(201) }, 'title'],
    ['201 emoji title', { title: '😀'.repeat(201) }, 'title'],
    ['missing title', { description: 'x' }, 'title'],
    ['null title', { title: null }, 'title'],
    ['numeric title', { title: 5 }, 'title'],
    ['array title', { title: ['a'] }, 'title'],
    ['object title', { title: { a: 1 } }, 'title'],
    ['boolean title', { title: true }, 'title'],
    ['1001-character description', { title: 'ok', description: 'd'.repeat(1001) }, 'description'],
    ['numeric description', { title: 'ok', description: 0 }, 'description'],
    ['array description', { title: 'ok', description: ['x'] }, 'description'],
    ['NUL in title', { title: 'a\u0000b' }, 'title'],
    ['NUL in description', { title: 'ok', description: 'a\u0000b' }, 'description'],
    ['lone surrogate in title', { title: 'a\ud800b' }, 'title'],
    ['lone surrogate in description', { title: 'ok', description: '\udc00' }, 'description'],
  ]
  for (const [name, payload, field] of cases) {
    const res = await u.create(payload)
    t.equal(res.statusCode, 400, name)
    const body = res.json()
    t.equal(body.error_code, 'VALIDATION_ERROR', name)
    t.equal(body.status_code, 400)
    t.match(body.detail, new RegExp(`^body.*\\b${field}\\b`), `${name}: detail names ${field}`)
  }

  const shapes: Array<[string, string]> = [
    ['malformed JSON', '{"title": "a",'],
    ['JSON array body', '[{"title":"a"}]'],
    ['JSON string body', '"title"'],
    ['JSON null body', 'null'],
    ['empty body', ''],
    ['prototype poisoning', '{"title":"a","__proto__":{"x":1}}'],
  ]
  for (const [name, raw] of shapes) {
    const res = await inject(app, {
      method: 'POST',
      url: `/api/${userId}/tasks`,
      userId,
      payload: raw,
      headers: { 'content-type': 'application/json' },
    })
    t.equal(res.statusCode, 400, name)
    t.same(Object.keys(res.json()).sort(), ['detail', 'error_code', 'status_code'])
    t.equal(res.json().error_code, 'VALIDATION_ERROR', name)
    t.equal(res.headers['cache-control'], 'no-store')
  }
  const malformed = await inject(app, {
    method: 'POST',
    url: `/api/${userId}/tasks`,
    userId,
    payload: '{"title": "a",',
    headers: { 'content-type': 'application/json' },
  })
  t.same(malformed.json(), { detail: 'Malformed JSON body', error_code: 'VALIDATION_ERROR', status_code: 400 })

  const text = await inject(app, {
    method: 'POST',
    url: `/api/${userId}/tasks`,
    userId,
    payload: 'title=a',
    headers: { 'content-type': 'text/plain' },
  })
  t.equal(text.statusCode, 415, 'the API speaks JSON only')
  t.equal(text.json().error_code, 'UNSUPPORTED_MEDIA_TYPE')

  t.same((await u.list()).json(), [], 'nothing was stored by any refused request')
})

t.test('update validation', async (t) => {
  const app = await build(t)
  const u = asUser(app, newUserId())
  const task = (await u.create({ title: 'original', description: 'kept' })).json()
  const cases: Array<[string, unknown, string]> = [
    ['missing title', { completed: true }, 'title'],
    ['empty title', { title: '' }, 'title'],
    ['whitespace-only title', { title: '   ' }, 'title'],
    ['201-character title', { title: 'b'.repeat(201) }, 'title'],
    ['1001-character description', { title: 'ok', description: 'd'.repeat(1001) }, 'description'],
    ['string completed', { title: 'ok', completed: 'true' }, 'completed'],
    ['numeric completed', { title: 'ok', completed: 1 }, 'completed'],
    ['null completed', { title: 'ok', completed: null }, 'completed'],
    ['NUL in title', { title: '\u0000' }, 'title'],
    ['NUL in description', { title: 'ok', description: '\u0000' }, 'description'],
  ]
  for (const [name, payload, field] of cases) {
    const res = await u.update(task.id, payload)
    t.equal(res.statusCode, 400, name)
    t.equal(res.json().error_code, 'VALIDATION_ERROR', name)
    t.match(res.json().detail, new RegExp(`^body.*\\b${field}\\b`), `${name}: detail names ${field}`)
  }
  const bad = await u.update('not-a-uuid', { title: '' })
  t.equal(bad.statusCode, 400, 'a bad body is 400 whatever the id')
  t.same((await u.get(task.id)).json(), task, 'the task is unchanged by every refused update')
})

t.test('a malformed task id is 404, never 400 or 500', async (t) => {
  const app = await build(t)
  const u = asUser(app, newUserId())
  // Path segments as a client sends them (percent-encoded): the proof signs that exact URL.
  const ids = [
    'not-a-uuid',
    '123',
    '00000000-0000-0000-0000-00000000000g',
    encodeURIComponent('{00000000-0000-0000-0000-000000000000}'),
    '000000000000000000000000000000000000',
    encodeURIComponent("1' OR '1'='1"),
    '00000000-0000-0000-0000-000000000000%00',
    '%00',
    '%E2%80%AE',
    'x'.repeat(150),
  ]
  for (const id of ids) {
    for (const res of [await u.get(id), await u.update(id, { title: 'x' }), await u.toggle(id), await u.remove(id)]) {
      t.equal(res.statusCode, 404, `${res.raw.req.method} ${id}`)
      t.same(res.json(), { detail: 'Task not found', error_code: 'NOT_FOUND', status_code: 404 })
    }
  }
  const random = await u.get('7f1a0a0e-9a43-4c55-9e43-1b0c6cb5a0d2')
  t.same(random.json(), { detail: 'Task not found', error_code: 'NOT_FOUND', status_code: 404 }, 'same body as an unknown UUID')
})
