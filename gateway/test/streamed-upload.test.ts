/**
 * A body streamed to a service (chunked, so counted as it passes) that goes
 * over BODY_LIMIT_BYTES after the service has begun its answer: no 413 can be
 * put in place of an answer already on its way, so the upload is cut instead:
 * the service's request is aborted mid-body (it never takes the truncated
 * body for a whole one), and the client's answer ends visibly incomplete
 * rather than looking whole.
 */
import t from 'tap'
import http from 'node:http'
import { LINGER_MAX_MS } from '@tollgate/common'
import { answerCount, rawConnection } from '@tollgate/common/testing'
import { MAX_BUFFERED_BYTES } from '../src/proxy/forwarder.js'
import { buildGateway, startUpstream, subOf, token, until } from './helper.js'

const LIMIT = 16 * 1024
const STARTED = `${'s'.repeat(MAX_BUFFERED_BYTES)}\n`

interface Received {
  /** Whether the service's request body ended whole. */
  complete: boolean
  bytes: number
}

/**
 * A service that begins its answer as soon as a POST arrives, then reads the
 * body: its first part is over what the gateway collects before passing an
 * answer on (MAX_BUFFERED_BYTES), so the answer is on its way to the client
 * while the upload goes on.
 */
async function answeringAtOnce(t: Parameters<typeof buildGateway>[0]) {
  const received: Array<Promise<Received>> = []
  const server = http.createServer((req, res) => {
    // The gateway's own reads (its /docs fetching /openapi.json) are not the upload.
    if (req.method !== 'POST') {
      res.writeHead(404).end()
      return
    }
    let bytes = 0
    req.on('data', (chunk: Buffer) => (bytes += chunk.length))
    req.on('end', () => res.end('done\n'))
    received.push(new Promise((resolve) => req.once('close', () => resolve({ complete: req.complete, bytes }))))
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write(STARTED)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, received }
}

interface Answer {
  status?: number
  body: string
  /** Whether the answer ended whole ('end'), rather than cut ('aborted', a socket error). */
  whole: boolean
}

/** A chunked POST: a small first chunk, then, once the answer has begun, `more` bytes, and the end. */
function uploadOnceAnswered(port: number, path: string, headers: Record<string, string>, more: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, headers: { 'content-type': 'application/octet-stream', ...headers }, agent: false })
    const out: Answer = { body: '', whole: false }
    req.on('error', (e) => (out.status === undefined ? reject(e) : resolve(out)))
    req.on('response', (res) => {
      out.status = res.statusCode
      res.setEncoding('utf8')
      res.once('data', () => req.end(Buffer.alloc(more, 'b')))
      res.on('data', (d: string) => (out.body += d))
      res.on('end', () => {
        out.whole = res.complete
        resolve(out)
      })
      res.on('error', () => resolve(out))
    })
    req.write(Buffer.alloc(1024, 'a'))
  })
}

t.test('over the limit once the answer has begun: the service request aborted mid-body, the answer cut, no 413 spliced in', async (t) => {
  const auth = await startUpstream(t)
  const tasks = await answeringAtOnce(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url, BODY_LIMIT_BYTES: LIMIT })
  await gw.listen({ port: 0, host: '127.0.0.1' })
  const port = (gw.server.address() as { port: number }).port
  const jwt = await token()
  const path = `/api/${subOf(jwt)}/tasks`

  const within = await uploadOnceAnswered(port, path, { authorization: `Bearer ${jwt}` }, 1024)
  t.same(within, { status: 200, body: `${STARTED}done\n`, whole: true }, 'under the limit: the service reads it all and finishes its answer')
  t.same(await tasks.received[0], { complete: true, bytes: 2048 })

  const over = await uploadOnceAnswered(port, path, { authorization: `Bearer ${jwt}` }, 4 * LIMIT)
  t.equal(over.status, 200, "the service's status stands")
  t.notMatch(over.body, /PAYLOAD_TOO_LARGE/, 'no error envelope inside the answer')
  t.equal(over.whole, false, 'the answer ends incomplete: the client cannot take it for a whole one')
  t.notMatch(over.body, /done/, 'the service never finished reading it')
  const seen = await tasks.received[1]!
  t.equal(seen.complete, false, "the service's request was aborted mid-body")
  t.ok(seen.bytes <= LIMIT, `the service got at most the limit (${seen.bytes} bytes)`)
})

/** A service that reads a few KB of an upload, then drops the connection. */
async function droppingMidBody(t: Parameters<typeof buildGateway>[0]) {
  const server = http.createServer((req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(404).end()
      return
    }
    let bytes = 0
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      if (bytes > 8 * 1024) req.socket.destroy()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

t.test('the service drops an upload mid-body, the client stops sending: 502 at once, the connection cut within the linger bound', async (t) => {
  const auth = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: await droppingMidBody(t) })
  await gw.listen({ port: 0, host: '127.0.0.1' })
  const port = (gw.server.address() as { port: number }).port
  const jwt = await token()
  const path = `/api/${subOf(jwt)}/tasks`
  const c = rawConnection(port)
  t.teardown(() => c.socket.destroy())
  c.socket.write(`POST ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${jwt}\r\ncontent-type: application/octet-stream\r\ncontent-length: 100000\r\n\r\n`)
  c.socket.write(Buffer.alloc(20_000, 'a'))
  await until(() => c.state.received.includes('\r\n\r\n'), 'the answer')
  t.match(c.state.received, /^HTTP\/1\.1 502 /, 'the broken upload is a 502')
  // The client gives up on its body and asks again on the same connection: those bytes are still body to the gateway,
  // so no answer can come; the connection must be cut at the linger bound (it was held for the 72 s keep-alive).
  c.socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${jwt}\r\n\r\n`)
  await c.closed
  t.ok(c.state.closedAfterMs < LINGER_MAX_MS + 3000, `cut after ${c.state.closedAfterMs} ms (bound ${LINGER_MAX_MS} ms)`)
  t.equal(answerCount(c.state.received), 1, 'one answer: the 502')
})

t.test('the service drops an upload mid-body, the client finishes sending: the connection stays usable', async (t) => {
  const auth = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: await droppingMidBody(t) })
  await gw.listen({ port: 0, host: '127.0.0.1' })
  const port = (gw.server.address() as { port: number }).port
  const jwt = await token()
  const c = rawConnection(port)
  t.teardown(() => c.socket.destroy())
  c.socket.write(`POST /api/${subOf(jwt)}/tasks HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${jwt}\r\ncontent-type: application/octet-stream\r\ncontent-length: 100000\r\n\r\n`)
  c.socket.write(Buffer.alloc(20_000, 'a'))
  await until(() => c.state.received.includes('\r\n\r\n'), 'the answer')
  t.match(c.state.received, /^HTTP\/1\.1 502 /)
  c.socket.write(Buffer.alloc(80_000, 'a'))
  c.socket.write('GET /health HTTP/1.1\r\nhost: x\r\n\r\n')
  await until(() => answerCount(c.state.received) === 2, 'the second answer')
  t.match(c.state.received, /HTTP\/1\.1 200 /, 'the next request on the connection is answered')
  t.equal(c.state.closedAfterMs, -1, 'the connection is still open')
})
