/**
 * The gateway's access line: exactly one per request, with the client address
 * (as TRUST_PROXY resolves it), the user, the upstream and the target it went
 * to, the upstream's time, bytes in and out and the user agent; credentials
 * never appear. The latency histogram per upstream and target is on the admin
 * listener's /metrics.
 */
import t from 'tap'
import { request as httpRequest } from 'node:http'
import { buildGateway, logCapture, startUpstream, subOf, token } from './helper.js'

const completed = (lines: Array<Record<string, unknown>>, id: string) => lines.filter((l) => l.reqId === id && l.msg === 'request completed')

t.test('one access line per request, with who, where to, how long and how much', async (t) => {
  const tasks = await startUpstream(t)
  const log = logCapture()
  const gw = await buildGateway(t, { TASK_SERVICE_URL: tasks.url, LOG_LEVEL: 'info', TRUST_PROXY: '127.0.0.1' }, { logStream: log.stream })
  const jwt = await token()
  const user = subOf(jwt)
  const host = new URL(tasks.url).host

  const get = await gw.inject({
    url: `/api/${user}/tasks?status=all`,
    headers: { authorization: `Bearer ${jwt}`, cookie: 'session=cookie-secret-value', 'user-agent': 'access-test/1.0', 'x-request-id': 'access-get', 'x-forwarded-for': '203.0.113.9' },
    remoteAddress: '127.0.0.1',
  })
  t.equal(get.statusCode, 200)
  const [line, ...more] = completed(log.lines, 'access-get')
  t.same(more, [], 'exactly one line for the request id')
  t.match(line, {
    method: 'GET',
    url: `/api/${user}/tasks?status=all`,
    status: 200,
    ip: '203.0.113.9',
    userAgent: 'access-test/1.0',
    userId: user,
    upstream: 'tasks',
    target: host,
    bytesIn: 0,
    bytesOut: Buffer.byteLength(get.body),
  })
  t.type(line!.upstreamMs, 'number', 'upstream time')
  t.ok((line!.upstreamMs as number) <= (line!.ms as number), 'upstream time within the total')

  const body = JSON.stringify({ title: 'x'.repeat(100) })
  const post = await gw.inject({
    method: 'POST',
    url: `/api/${user}/tasks`,
    headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json', 'x-request-id': 'access-post' },
    payload: body,
  })
  t.equal(post.statusCode, 200)
  t.match(completed(log.lines, 'access-post'), [{ method: 'POST', bytesIn: Buffer.byteLength(body), upstream: 'tasks', target: host }])

  const refused = await gw.inject({ url: `/api/${user}/tasks`, headers: { authorization: 'Bearer not.a.token', 'x-request-id': 'access-401' } })
  t.equal(refused.statusCode, 401)
  const [denied, ...again] = completed(log.lines, 'access-401')
  t.same(again, [])
  t.match(denied, { status: 401, bytesOut: Buffer.byteLength(refused.body) })
  t.notOk('upstream' in denied!, 'never forwarded: no upstream')
  t.notOk('userId' in denied!, 'not authenticated: no user')

  const all = log.lines.map((l) => JSON.stringify(l)).join('\n')
  t.notMatch(all, jwt, 'the token never appears')
  t.notMatch(all, /cookie-secret-value/, 'the cookie never appears')
  t.notMatch(all, /authorization|"cookie"/i, 'nor do those headers')

  const metrics = (await gw.admin.inject({ url: '/metrics' })).body
  const bucket = new RegExp(`gateway_upstream_duration_seconds_count\\{service="gateway",upstream="tasks",target="${host.replace(/\./g, '\\.')}"\\} 2`)
  t.match(metrics, bucket, 'the latency histogram per upstream and target')
})

t.test('a chunked upload counts its bytes; a dead upstream names the target it tried', async (t) => {
  const tasks = await startUpstream(t)
  const log = logCapture()
  const gw = await buildGateway(t, { TASK_SERVICE_URL: tasks.url, LOG_LEVEL: 'info' }, { logStream: log.stream })
  const url = await gw.listen({ port: 0, host: '127.0.0.1' })
  const jwt = await token()
  const user = subOf(jwt)
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(`${url}/api/${user}/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json', 'x-request-id': 'access-chunked' },
    })
    req.on('response', (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode!))
    })
    req.on('error', reject)
    req.write('{"title":')
    req.end('"chunked"}')
  })
  t.equal(status, 200)
  await gw.close()
  t.match(completed(log.lines, 'access-chunked'), [{ bytesIn: Buffer.byteLength('{"title":"chunked"}'), ip: '127.0.0.1' }])

  const log2 = logCapture()
  const down = await buildGateway(t, { TASK_SERVICE_URL: 'http://127.0.0.1:1', LOG_LEVEL: 'info' }, { logStream: log2.stream })
  const res = await down.inject({ url: `/api/${user}/tasks`, headers: { authorization: `Bearer ${jwt}`, 'x-request-id': 'access-502' } })
  t.equal(res.statusCode, 502)
  const [line, ...more] = completed(log2.lines, 'access-502')
  t.same(more, [])
  t.match(line, { status: 502, upstream: 'tasks', target: '127.0.0.1:1', userId: user, bytesOut: Buffer.byteLength(res.body) })
  t.notOk('upstreamMs' in line!, 'no answer: no upstream time')
})
