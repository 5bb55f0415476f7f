/**
 * A `..` path segment, raw or percent-encoded, is refused at the edge (400
 * VALIDATION_ERROR) and never forwarded: a service or proxy further along
 * that normalises the path would otherwise serve a route other than the one
 * the gateway authorized (`/api/<me>/tasks/%2e%2e/..` is not a task). A path
 * that cannot be decoded is refused rather than guessed at. Dots that are no
 * segment of their own (`a..b`, `v1.2`) and dots in the query pass.
 */
import t from 'tap'
import http from 'node:http'
import { buildGateway, startUpstream, subOf, token } from './helper.js'

t.test('dot segments: refused before any service sees them; ordinary dots pass', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url, AUTH_SERVICE_URL: up.url })
  const jwt = await token()
  const me = `/api/${subOf(jwt)}/tasks`
  await gw.listen({ port: 0, host: '127.0.0.1' })
  const port = (gw.server.address() as { port: number }).port
  // A plain Node client sends the path as written (app.inject and fetch resolve dot segments before sending).
  const call = (path: string, method: 'GET' | 'PUT' = 'GET') =>
    new Promise<{ statusCode: number; json: () => { error_code: string } }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method, headers: { authorization: `Bearer ${jwt}` } }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (body += d))
        res.on('end', () => resolve({ statusCode: res.statusCode!, json: () => JSON.parse(body) }))
      })
      req.on('error', reject)
      req.end()
    })

  const refused = [
    `${me}/..`,
    `${me}/%2e%2e`,
    `${me}/%2E%2e`,
    `${me}/.%2e`,
    `${me}/..%2fother`,
    `${me}/%2e%2e%2F%2e%2e%2Fadmin`,
    `${me}/..%5cother`,
    `${me}/%2e%2e?status=all`,
    // Undecodable: a truncated escape, an invalid UTF-8 sequence.
    `${me}/%E0%A4%A`,
    `${me}/%C0%AE%C0%AE`,
  ]
  for (const url of refused) {
    const res = await call(url)
    t.equal(res.statusCode, 400, url)
    t.equal(res.json().error_code, 'VALIDATION_ERROR', url)
  }
  const put = await call(`${me}/%2e%2e`, 'PUT')
  t.equal(put.statusCode, 400, 'a method with a body too')
  t.equal(up.seen.length, 0, 'none of them reached the service')

  for (const url of [`${me}/a..b`, `${me}/v1.2`, `${me}/...`, `${me}/x%2Ey`, `${me}?q=../..`]) {
    const res = await call(url)
    t.equal(res.statusCode, 200, `${url}: no dot segment`)
  }
  t.same(
    up.seen.map((s) => s.url),
    [`${me}/a..b`, `${me}/v1.2`, `${me}/...`, `${me}/x%2Ey`, `${me}?q=../..`],
    'forwarded as they came',
  )
})
