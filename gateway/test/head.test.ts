/**
 * HEAD on a GET route: forwarded as a HEAD (the service is not made to build
 * a GET's body for nothing), answered with the head a GET would get, the
 * Content-Length the service declared included (RFC 9110 9.3.2), and no
 * body, small answer or one the gateway would stream.
 */
import t from 'tap'
import http from 'node:http'
import { MAX_BUFFERED_BYTES } from '../src/proxy/forwarder.js'
import { buildGateway, startUpstream, subOf, token } from './helper.js'

const SMALL = JSON.stringify({ id: 'small', title: 'a task' })
const BIG = JSON.stringify({ id: 'big', title: 'x'.repeat(2 * MAX_BUFFERED_BYTES) })

/** A task service that answers HEAD as a GET without the body, as Node does. */
async function tasksService(t: Parameters<typeof buildGateway>[0]) {
  const methods: string[] = []
  const server = http.createServer((req, res) => {
    if (!req.url!.startsWith('/api/')) return void res.writeHead(404).end()
    methods.push(req.method!)
    const body = req.url!.endsWith('/big') ? BIG : SMALL
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), etag: '"v1"' })
    res.end(req.method === 'HEAD' ? undefined : body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, methods }
}

function call(port: number, method: 'GET' | 'HEAD', path: string, jwt: string) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: { authorization: `Bearer ${jwt}` } }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('HEAD on a GET route: a HEAD upstream, the GET head with its Content-Length, no body', async (t) => {
  const auth = await startUpstream(t)
  const tasks = await tasksService(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url })
  await gw.listen({ port: 0, host: '127.0.0.1' })
  const port = (gw.server.address() as { port: number }).port
  const jwt = await token()

  for (const [name, id, body] of [
    ['a small answer', 'small', SMALL],
    ['an answer the gateway would stream', 'big', BIG],
  ] as const) {
    const path = `/api/${subOf(jwt)}/tasks/${id}`
    const get = await call(port, 'GET', path, jwt)
    t.equal(get.status, 200, `${name}: GET`)
    t.equal(get.body, body, `${name}: GET body`)
    const before = tasks.methods.length
    const head = await call(port, 'HEAD', path, jwt)
    t.same(tasks.methods.slice(before), ['HEAD'], `${name}: forwarded as one HEAD, never as a GET`)
    t.equal(head.status, 200, `${name}: HEAD`)
    t.equal(head.headers['content-length'], String(Buffer.byteLength(body)), `${name}: the length a GET would get`)
    t.equal(head.headers.etag, '"v1"', `${name}: the service's other headers`)
    t.equal(head.headers['content-type'], 'application/json', `${name}: content-type`)
    t.equal(head.body, '', `${name}: no body`)
  }
})
