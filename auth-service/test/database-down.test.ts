import t from 'tap'
import { buildApp } from '../src/app.js'
import { asUser, inject, PASSWORD, testConfig, uniqueEmail } from './helper.js'

// Nothing listens on port 1: every connection is refused at once.
const DOWN = 'postgres://postgres:postgres@127.0.0.1:1/auth'

t.test('an unreachable database is 503 SERVICE_UNAVAILABLE, fast, without internals', async (t) => {
  const app = await buildApp(testConfig({ DATABASE_URL: DOWN, DB_CONNECT_TIMEOUT_MS: '200' }))
  t.teardown(() => app.close())

  const requests = [
    { method: 'POST', url: '/api/auth/signin', payload: { email: uniqueEmail(), password: PASSWORD } },
    { method: 'POST', url: '/api/auth/signup', payload: { email: uniqueEmail(), password: PASSWORD } },
    { method: 'GET', url: '/api/auth/me', identity: asUser('00000000-0000-4000-8000-000000000000') },
  ] as const
  for (const req of requests) {
    const start = Date.now()
    const res = await inject(app, req)
    t.equal(res.statusCode, 503, req.url)
    t.same(res.json(), { detail: 'Database unavailable', error_code: 'SERVICE_UNAVAILABLE', status_code: 503 }, req.url)
    t.ok(res.headers['retry-after'], 'retry-after')
    t.notMatch(res.body, /127\.0\.0\.1|ECONNREFUSED|postgres/i, 'no hostnames or driver messages')
    t.ok(Date.now() - start < 3000, `${req.url} answered quickly`)
  }

  const ready = await app.inject({ method: 'GET', url: '/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json(), { error_code: 'SERVICE_UNAVAILABLE', checks: { database: 'unavailable' } })
})
