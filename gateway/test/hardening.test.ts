/** What a hostile client can do at the HTTP level: oversized and slow requests, smuggling, header probing. */
import t from 'tap'
import { connect } from 'node:net'
import { buildGateway, startUpstream, subOf, token } from './helper.js'

/** Send raw bytes to a listening gateway; resolve with everything it answers before closing. */
function raw(port: number, data: string | string[], opts: { gapMs?: number; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve) => {
    const chunks = Array.isArray(data) ? data : [data]
    const socket = connect(port, '127.0.0.1')
    let answer = ''
    const done = () => {
      clearTimeout(timer)
      resolve(answer)
    }
    const timer = setTimeout(() => {
      socket.destroy()
      done()
    }, opts.timeoutMs ?? 5000)
    socket.on('data', (d) => (answer += d))
    socket.on('close', done)
    socket.on('error', done)
    socket.on('connect', async () => {
      for (const chunk of chunks) {
        if (socket.destroyed) break
        socket.write(chunk)
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs))
      }
    })
  })
}

async function listening(t: Parameters<typeof buildGateway>[0], overrides = {}) {
  const tasks = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: tasks.url, ...overrides })
  await gw.listen({ port: 0, host: '127.0.0.1' })
  const port = (gw.server.address() as { port: number }).port
  return { gw, port, tasks }
}

t.test('security headers on every answer; nothing reveals the stack', async (t) => {
  const { gw } = await listening(t)
  for (const url of ['/health', '/nowhere', '/api/x/tasks']) {
    const res = await gw.inject({ url })
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${url}: nosniff`)
    t.ok(res.headers['strict-transport-security'], `${url}: HSTS`)
    t.match(String(res.headers['content-security-policy']), /default-src 'none'/)
    t.notOk(res.headers['x-powered-by'], 'no x-powered-by')
    t.notOk(res.headers.server, 'no server banner')
  }
})

t.test('a URL over the limit is 414 in the envelope', async (t) => {
  const { gw } = await listening(t)
  const res = await gw.inject({ url: `/api/x/tasks?q=${'a'.repeat(5000)}` })
  t.equal(res.statusCode, 414)
  t.same(res.json(), { detail: 'Request URI is too long', error_code: 'URI_TOO_LONG', status_code: 414 })
})

t.test('headers over Node’s limit are 431 in the envelope', async (t) => {
  const { port } = await listening(t)
  const answer = await raw(port, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
  t.match(answer, /^HTTP\/1\.1 431 /)
  t.match(answer, /"error_code":"HEADERS_TOO_LARGE","status_code":431/)
})

t.test('slowloris: a client that never finishes its headers is cut off', async (t) => {
  const { port } = await listening(t, { HEADERS_TIMEOUT_MS: 500, REQUEST_TIMEOUT_MS: 1000 })
  const started = Date.now()
  // One header line every 300 ms, forever (bounded here to 20 lines).
  const lines = ['GET /health HTTP/1.1\r\n', ...Array.from({ length: 20 }, (_, i) => `X-Slow-${i}: a\r\n`)]
  const answer = await raw(port, lines, { gapMs: 300, timeoutMs: 8000 })
  const took = Date.now() - started
  t.ok(took < 3000, `connection ended after ${took} ms`)
  t.notMatch(answer, /200 OK/)
})

t.test('request smuggling: Content-Length with Transfer-Encoding is refused, nothing reaches the service', async (t) => {
  const { port, tasks } = await listening(t)
  const jwt = await token()
  const smuggled =
    `POST /api/${subOf(jwt)}/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${jwt}\r\n` +
    `Content-Type: application/json\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n` +
    `0\r\n\r\nGET /api/auth/me HTTP/1.1\r\nHost: x\r\n\r\n`
  const answer = await raw(port, smuggled)
  t.match(answer, /^HTTP\/1\.1 400 /)
  t.equal(tasks.seen.length, 0)
})

t.test('duplicate Content-Length is refused', async (t) => {
  const { port, tasks } = await listening(t)
  const answer = await raw(port, 'POST /api/auth/signup HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}')
  t.match(answer, /^HTTP\/1\.1 400 /)
  t.match(answer, /"status_code":400/)
  t.equal(tasks.seen.length, 0)
})
