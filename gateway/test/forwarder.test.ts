/**
 * The proxy itself, against plain node:http and raw TCP upstreams: bodies
 * both ways byte for byte (buffered and streamed), hop-by-hop headers, the
 * headers deadline, a client that leaves, a stale pooled connection, no
 * phantom writes (a request settled while queued is never sent), an invalid
 * upstream status, no retry with a body, Connection: close after an early
 * answer, public cache headers. The wider comparison with
 * @fastify/http-proxy is in proxy-conformance/.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { waitUntil } from '@tollgate/common/testing'
import { buildGateway, gatewayConfig, logCapture, startUpstream, subOf, token } from './helper.js'
import { buildApp } from '../src/app.js'
import { once } from 'node:events'
import Fastify from 'fastify'
import { createForwarder, MAX_BUFFERED_BYTES } from '../src/proxy/forwarder.js'
import { createUpstreamPool } from '../src/proxy/upstream.js'

type Tap = Parameters<typeof buildGateway>[0]
type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void

/** A node:http upstream that reads each body whole, then calls `handle`. */
async function plainUpstream(t: Tap, handle: Handler) {
  const closed: string[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => handle(req, res, Buffer.concat(chunks)))
    res.on('close', () => {
      if (!res.writableFinished) closed.push(req.url ?? '')
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, closed }
}

async function listeningGateway(t: Tap, overrides: Record<string, unknown>) {
  const gw = await buildGateway(t, overrides)
  await gw.listen({ port: 0, host: '127.0.0.1' })
  return { gw, base: `http://127.0.0.1:${(gw.server.address() as net.AddressInfo).port}` }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

t.test('answers small and large, with and without a length, arrive byte for byte', async (t) => {
  const small = randomBytes(1000)
  const large = randomBytes(MAX_BUFFERED_BYTES * 5 + 17)
  const up = await plainUpstream(t, (req, res) => {
    const body = req.url!.includes('large') ? large : small
    const chunked = req.url!.includes('chunked')
    res.writeHead(200, { 'content-type': 'application/octet-stream', ...(chunked ? {} : { 'content-length': body.length }) })
    if (!chunked) return res.end(body)
    // Unknown length, in pieces: the forwarder must switch from buffering to streaming mid-answer.
    let at = 0
    const next = () => {
      if (at >= body.length) return res.end()
      res.write(body.subarray(at, at + 16_384))
      at += 16_384
      setImmediate(next)
    }
    next()
  })
  const { base } = await listeningGateway(t, { TASK_SERVICE_URL: up.url })
  const jwt = await token()
  const user = subOf(jwt)
  for (const variant of ['small', 'large', 'small-chunked', 'large-chunked']) {
    const res = await fetch(`${base}/api/${user}/tasks?${variant}`, { headers: { authorization: `Bearer ${jwt}` } })
    const got = Buffer.from(await res.arrayBuffer())
    t.equal(res.status, 200, variant)
    t.equal(sha(got), sha(variant.startsWith('large') ? large : small), `${variant}: same bytes`)
    t.equal(res.headers.get('cache-control'), 'no-store', `${variant}: not cacheable`)
    t.equal(res.headers.get('x-content-type-options'), 'nosniff', `${variant}: security headers`)
    if (!variant.endsWith('chunked')) t.equal(res.headers.get('content-length'), String(got.length), `${variant}: length kept`)
  }
})

t.test('request bodies stream through byte for byte, with a length or chunked', async (t) => {
  const up = await plainUpstream(t, (req, res, body) => {
    res.writeHead(201, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ sha: sha(body), length: body.length, te: req.headers['transfer-encoding'] ?? null }))
  })
  const { base } = await listeningGateway(t, { TASK_SERVICE_URL: up.url })
  const jwt = await token()
  const body = Buffer.from(JSON.stringify({ title: 'ünïcödé "quotes" \'; DROP TABLE tasks; --', description: 'x'.repeat(200_000) }))
  const withLength = await fetch(`${base}/api/${subOf(jwt)}/tasks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' },
    body,
  })
  t.equal(withLength.status, 201)
  t.same(await withLength.json(), { sha: sha(body), length: body.length, te: null })

  // A chunked upload of unknown length.
  const chunked = await new Promise<{ status: number; json: { sha: string; length: number } }>((resolve, reject) => {
    const req = http.request(`${base}/api/${subOf(jwt)}/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
    })
    req.on('response', (res) => {
      let text = ''
      res.on('data', (c) => (text += c))
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text) }))
    })
    req.on('error', reject)
    for (let i = 0; i < body.length; i += 10_000) req.write(body.subarray(i, i + 10_000))
    req.end()
  })
  t.equal(chunked.status, 201)
  t.equal(chunked.json.sha, sha(body), 'chunked body intact')
  t.equal(chunked.json.length, body.length)
})

t.test('hop-by-hop headers stop at the gateway, both ways; repeated answer fields are kept', async (t) => {
  let seen: http.IncomingHttpHeaders = {}
  const up = await plainUpstream(t, (req, res) => {
    seen = req.headers
    res.setHeader('set-cookie', ['a=1; HttpOnly', 'b=2; HttpOnly'])
    res.setHeader('x-upstream-secret-hop', 'no')
    res.setHeader('connection', 'keep-alive, x-upstream-secret-hop')
    res.setHeader('content-type', 'application/json')
    res.setHeader('x-powered-by', 'Express')
    res.setHeader('x-request-id', 'upstream-made-this-up')
    res.setHeader('x-frame-options', 'ALLOWALL')
    res.setHeader('x-repeated', ['one', 'two'])
    res.end('{}')
  })
  const { base } = await listeningGateway(t, { TASK_SERVICE_URL: up.url })
  const jwt = await token()
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request(`${base}/api/${subOf(jwt)}/tasks`, {
      headers: {
        authorization: `Bearer ${jwt}`,
        connection: 'keep-alive, x-drop-me',
        'x-drop-me': 'hop',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        'proxy-authorization': 'Basic eDp5',
        forwarded: 'for=6.6.6.6',
        'x-forwarded-for': '6.6.6.6',
        'x-real-ip': '6.6.6.6',
        'x-request-id': 'client-id-1',
        'accept-language': 'fr',
      },
    })
    req.on('response', (r) => {
      r.resume()
      r.on('end', () => resolve(r))
    })
    req.on('error', reject)
    req.end()
  })
  t.equal(res.statusCode, 200)
  for (const name of ['x-drop-me', 'keep-alive', 'te', 'proxy-authorization', 'forwarded', 'x-real-ip', 'authorization']) {
    t.notOk(seen[name], `${name} not forwarded`)
  }
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'the gateway writes X-Forwarded-For from the socket, not the client')
  t.equal(seen['x-request-id'], 'client-id-1')
  t.equal(seen['accept-language'], 'fr', 'end-to-end headers pass')
  t.same(res.headers['set-cookie'], ['a=1; HttpOnly', 'b=2; HttpOnly'], 'both cookies')
  t.notOk(res.headers['x-upstream-secret-hop'], 'upstream hop-by-hop header dropped')
  t.notOk(res.headers['x-powered-by'], 'upstream banner dropped')
  t.equal(res.headers['x-request-id'], 'client-id-1', "the gateway's request id, not the upstream's")
  t.equal(res.headers['x-frame-options'], 'DENY', "the gateway's security headers win over the upstream's")
  t.equal(res.headers['x-repeated'], 'one, two', 'a repeated field keeps both values')
})

t.test('an upstream that never answers is a 504 at the deadline; the gateway lets go of it', async (t) => {
  const up = await plainUpstream(t, () => {
    // never answers
  })
  const { gw } = await listeningGateway(t, { TASK_SERVICE_URL: up.url, UPSTREAM_TIMEOUT_MS: 300 })
  const jwt = await token()
  const started = performance.now()
  const res = await gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } })
  const took = performance.now() - started
  t.equal(res.statusCode, 504)
  t.same(res.json(), { detail: 'Upstream service timed out', error_code: 'GATEWAY_TIMEOUT', status_code: 504 })
  // Our own timer, not undici's ~0.5 s tick (which answered a 500 ms deadline at up to 1,040 ms).
  t.ok(took >= 290 && took < 800, `answered at the deadline (${Math.round(took)} ms)`)
  await waitUntil(async () => up.closed.length > 0, { intervalMs: 10, what: 'the upstream request to close' })
  t.same(up.closed.length, 1, 'the upstream request was cancelled, not left open')
})

t.test('a client that leaves before the answer cancels the upstream request; the gateway carries on', async (t) => {
  const up = await plainUpstream(t, (req, res) => {
    if (req.url!.includes('slow')) return // answered never; the client gives up first
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"ok":true}')
  })
  const { base } = await listeningGateway(t, { TASK_SERVICE_URL: up.url, UPSTREAM_TIMEOUT_MS: 10_000 })
  const jwt = await token()
  const url = `${base}/api/${subOf(jwt)}/tasks`
  for (let i = 0; i < 20; i++) {
    const aborted = await fetch(`${url}?slow=${i}`, { headers: { authorization: `Bearer ${jwt}` }, signal: AbortSignal.timeout(50) }).catch(
      (err: Error) => err,
    )
    t.ok(aborted instanceof Error, `client ${i} gave up`)
  }
  await waitUntil(async () => up.closed.length >= 20, { intervalMs: 10, what: 'the abandoned upstream requests to close' })
  t.equal(up.closed.length, 20, 'every abandoned upstream request was cancelled')
  const after = await fetch(url, { headers: { authorization: `Bearer ${jwt}` } })
  t.equal(after.status, 200, 'still serving')
})

t.test('a pooled connection that broke before any answer: GET is retried once, POST never', async (t) => {
  // Raw TCP upstream: answers the first request on each connection, then drops the
  // connection on the second without a word (an idle keep-alive socket closed under us).
  let requests = 0
  const server = net.createServer((socket) => {
    let served = 0
    socket.on('data', (d) => {
      if (!d.toString('latin1').includes('\r\n\r\n')) return
      requests++
      if (served++ === 0) {
        socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n{}')
      } else {
        socket.destroy()
      }
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const upstream = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  const { gw } = await listeningGateway(t, { TASK_SERVICE_URL: upstream, UPSTREAM_CONNECTIONS: 1 })
  const jwt = await token()
  const url = `/api/${subOf(jwt)}/tasks`
  const headers = { authorization: `Bearer ${jwt}` }
  t.equal((await gw.inject({ url, headers })).statusCode, 200, 'first GET on a fresh connection')
  const before = requests
  const retried = await gw.inject({ url, headers })
  t.equal(retried.statusCode, 200, 'second GET: the reused connection broke, the retry on a new one succeeded')
  t.equal(requests - before, 2, 'exactly one retry')
  const postBefore = requests
  const post = await gw.inject({ method: 'POST', url, headers: { ...headers, 'content-type': 'application/json' }, payload: '{"title":"x"}' })
  t.equal(post.statusCode, 502, 'a POST on a broken connection is not retried')
  t.same(post.json(), { detail: 'Upstream service error', error_code: 'BAD_GATEWAY', status_code: 502 })
  t.equal(requests - postBefore, 1, 'sent once')
})

t.test('an answer that breaks before it is complete is a 502 without any of its headers', async (t) => {
  // Raw TCP upstream: promises 1,000 bytes with a cookie, sends 10, then drops the connection.
  const server = net.createServer((socket) => {
    socket.once('data', () => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nset-cookie: sid=upstream\r\nlocation: /elsewhere\r\ncontent-length: 1000\r\n\r\n{"partial"')
      setTimeout(() => socket.destroy(), 20)
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const { gw } = await listeningGateway(t, { TASK_SERVICE_URL: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}` })
  const jwt = await token()
  const res = await gw.inject({ method: 'POST', url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' }, payload: '{}' })
  t.equal(res.statusCode, 502)
  t.same(res.json(), { detail: 'Upstream service error', error_code: 'BAD_GATEWAY', status_code: 502 })
  t.notOk(res.headers['set-cookie'], "the broken answer's cookie is not passed on")
  t.notOk(res.headers.location, 'nor its location')
  t.equal(res.headers['x-content-type-options'], 'nosniff', "the gateway's own headers stay")
})

/** A raw HTTP/1.1 exchange on its own socket: everything the gateway wrote, until it closed the connection (or `waitMs`). */
function rawExchange(port: number, request: string, waitMs: number): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let text = ''
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ text, closed: false })
    }, waitMs)
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({ text, closed: true })
    })
    socket.write(request)
  })
}

t.test('no phantom writes: a request answered 504 while queued for a connection never reaches the upstream', async (t) => {
  // One connection, 150 ms per request, ten at once, a 1 s deadline: the later ones time out in undici's queue.
  const finished = new Set<string>()
  const cancelled = new Set<string>()
  const server = http.createServer((req, res) => {
    const id = String(req.headers['x-test-id'])
    req.resume()
    req.on('end', () => {
      const timer = setTimeout(() => {
        res.writeHead(201, { 'content-type': 'application/json' })
        res.end(`{"id":"${id}"}`)
      }, req.method === 'POST' ? 150 : 0)
      res.on('close', () => {
        clearTimeout(timer)
        if (res.writableFinished) finished.add(id)
        else cancelled.add(id)
      })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const upstream = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  const { gw } = await listeningGateway(t, { TASK_SERVICE_URL: upstream, UPSTREAM_CONNECTIONS: 1, UPSTREAM_TIMEOUT_MS: 1000 })
  const jwt = await token()
  const url = `/api/${subOf(jwt)}/tasks`
  const answers = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      gw.inject({ method: 'POST', url, headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json', 'x-test-id': `p${i}` }, payload: '{"title":"t"}' }),
    ),
  )
  const timedOut = answers.flatMap((a, i) => (a.statusCode === 504 ? [`p${i}`] : []))
  const served = answers.flatMap((a, i) => (a.statusCode === 201 ? [`p${i}`] : []))
  t.ok(timedOut.length > 0, `some requests timed out in the queue (${timedOut.length})`)
  t.equal(served.length + timedOut.length, 10, 'every answer is a 201 or a 504')
  // The pool is first in, first out: once this one is answered, anything still queued has been written or dropped.
  const probe = await gw.inject({ url, headers: { authorization: `Bearer ${jwt}`, 'x-test-id': 'probe' } })
  t.equal(probe.statusCode, 201, 'the connection still serves')
  const phantoms = timedOut.filter((id) => finished.has(id))
  t.same(phantoms, [], 'no request answered 504 was executed to the end by the upstream')
  t.same(served.filter((id) => !finished.has(id)), [], 'every 201 was executed')
  // A request on the connection when its deadline passed is cut short upstream: that one was sent, and got its 504.
  t.same([...cancelled].filter((id) => !timedOut.includes(id)), [], 'only requests answered 504 were cut short')
})

t.test('a client that disconnects while its request waits for a connection is never sent upstream', async (t) => {
  const arrived: string[] = []
  let release: () => void = () => {}
  const server = http.createServer((req, res) => {
    const id = String(req.headers['x-test-id'])
    if (req.headers['x-test-id'] !== undefined) arrived.push(id) // not the gateway's own reads (/openapi.json)
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{}')
    }
    if (id === 'holder') release = answer
    else answer()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const upstream = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  const { gw, base } = await listeningGateway(t, { TASK_SERVICE_URL: upstream, UPSTREAM_CONNECTIONS: 1, UPSTREAM_TIMEOUT_MS: 10_000 })
  const jwt = await token()
  const path = `/api/${subOf(jwt)}/tasks`
  const headers = { authorization: `Bearer ${jwt}` }
  const holder = gw.inject({ url: path, headers: { ...headers, 'x-test-id': 'holder' } })
  while (!arrived.includes('holder')) await new Promise((r) => setTimeout(r, 5))
  // This one queues behind the holder on the only connection; its client then leaves.
  const leaver = http.request(`${base}${path}`, { headers: { ...headers, 'x-test-id': 'leaver' } })
  leaver.on('error', () => {})
  leaver.end()
  await new Promise((r) => setTimeout(r, 100))
  leaver.destroy()
  await new Promise((r) => setTimeout(r, 20))
  release()
  t.equal((await holder).statusCode, 200)
  const probe = await gw.inject({ url: path, headers: { ...headers, 'x-test-id': 'probe' } })
  t.equal(probe.statusCode, 200)
  t.same(arrived, ['holder', 'probe'], 'the abandoned request never reached the upstream')
})

t.test('an upstream status outside 100-599 is a 502 in the envelope, and logged', async (t) => {
  const up = await plainUpstream(t, (_req, res) => {
    res.statusCode = 888
    res.end('non-standard status code')
  })
  const lines: string[] = []
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk))
      cb()
    },
  })
  const auth = await startUpstream(t)
  const gw = await buildApp(gatewayConfig({ TASK_SERVICE_URL: up.url, AUTH_SERVICE_URL: auth.url, LOG_LEVEL: 'warn', UPSTREAM_TIMEOUT_MS: 2000 }), { logStream })
  t.teardown(() => gw.close())
  await gw.ready()
  const jwt = await token()
  const res = await gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } })
  t.equal(res.statusCode, 502)
  t.same(res.json(), { detail: 'Upstream service error', error_code: 'BAD_GATEWAY', status_code: 502 })
  const logged = () => lines.some((l) => l.includes('invalid status') && l.includes('888'))
  for (let waited = 0; !logged() && waited < 3000; waited += 20) await new Promise((r) => setTimeout(r, 20)) // lines are flushed within a second
  t.ok(logged(), 'a log line names the bad status')
})

t.test('a GET whose body was streamed is not retried on a broken connection', async (t) => {
  let requests = 0
  const server = net.createServer((socket) => {
    let served = 0
    socket.on('data', (d) => {
      if (!d.toString('latin1').includes('\r\n\r\n')) return
      requests++
      if (served++ === 0) socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n{}')
      else socket.destroy()
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const { gw } = await listeningGateway(t, { TASK_SERVICE_URL: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, UPSTREAM_CONNECTIONS: 1 })
  const jwt = await token()
  const url = `/api/${subOf(jwt)}/tasks`
  const headers = { authorization: `Bearer ${jwt}` }
  t.equal((await gw.inject({ url, headers })).statusCode, 200, 'first GET on a fresh connection')
  const before = requests
  const res = await gw.inject({ url, headers: { ...headers, 'content-type': 'text/plain' }, payload: 'a body on a GET' })
  t.equal(res.statusCode, 502, 'a streamed body cannot be sent twice')
  t.equal(requests - before, 1, 'sent once')
})

t.test('an upstream that answers before reading the request body: the client connection is closed after the answer', async (t) => {
  // Answers at once, without reading the body (plainUpstream reads first, so a server of its own).
  const server = http.createServer((_req, res) => res.end('early'))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const { gw } = await listeningGateway(t, { TASK_SERVICE_URL: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}` })
  const jwt = await token()
  const port = (gw.server.address() as net.AddressInfo).port
  const { text, closed } = await rawExchange(
    port,
    [
      `POST /api/${subOf(jwt)}/tasks HTTP/1.1`,
      'Host: localhost',
      `Authorization: Bearer ${jwt}`,
      'Content-Type: application/octet-stream',
      'Content-Length: 500000',
      'Connection: keep-alive',
      '',
      'a',
    ].join('\r\n'),
    3000,
  )
  t.match(text, /^HTTP\/1\.1 200 OK\r\n/, 'the early answer is delivered')
  t.match(text, /\r\nconnection: close\r\n/i, 'with Connection: close')
  t.match(text, /\r\n\r\nearly$/)
  t.ok(closed, 'and the connection is closed (its unread body cannot be skipped)')
})

t.test("a public route keeps the upstream's cache headers; answers about one user stay no-store", async (t) => {
  const server = http.createServer((req, res) => {
    if (req.url!.startsWith('/internal/revocations')) {
      res.writeHead(200, { 'content-type': 'application/json' })
      return res.end('{"cursor":0,"reset":false,"more":false,"revoked":[]}')
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=60', etag: '"v1"' })
    res.end(req.url!.startsWith('/.well-known') ? '{"keys":[]}' : '{"id":"me"}')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}` })
  const jwks = await gw.inject({ url: '/.well-known/jwks.json' })
  t.equal(jwks.statusCode, 200)
  t.equal(jwks.headers['cache-control'], 'public, max-age=60', "the JWKS keeps the auth-service's max-age")
  t.equal(jwks.headers.etag, '"v1"')
  const jwt = await token()
  const me = await gw.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${jwt}` } })
  t.equal(me.statusCode, 200)
  t.equal(me.headers['cache-control'], 'no-store', "a user's own answer is never cacheable, whatever the upstream says")
})

t.test('a request whose client left before the forwarder was called is not sent', async (t) => {
  // A slow step before the handler (a rate-limit counter in Redis, say) can outlast the client.
  const arrived: string[] = []
  const server = http.createServer((req, res) => {
    arrived.push(req.url!)
    res.end('{}')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const pool = createUpstreamPool(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, { connectTimeoutMs: 1000, timeoutMs: 1000, connections: 1 })
  t.teardown(() => pool.close())
  const forward = createForwarder({ name: 'tasks', pool, timeoutMs: 1000, countError: () => {} })
  const app = Fastify()
  let handled: () => void = () => {}
  const handledOnce = new Promise<void>((r) => (handled = r))
  app.get('/late', async (request, reply) => {
    await once(reply.raw, 'close') // the client is gone by now
    forward(reply, { method: 'GET', path: request.url, headers: {}, body: null, publicCache: false })
    handled()
    return reply
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const req = http.request({ host: '127.0.0.1', port: (app.server.address() as net.AddressInfo).port, path: '/late', agent: false })
  req.on('error', () => {})
  req.end()
  await new Promise((r) => setTimeout(r, 50))
  req.destroy()
  await handledOnce
  // Anything the forwarder dispatched would be on the pool's only connection ahead of this one.
  const probe = await pool.request({ method: 'GET', path: '/probe' })
  await probe.body.dump()
  t.same(arrived, ['/probe'], 'only the probe reached the upstream')
})

t.test("an upstream failure is answered by the app's one error handler, which logs it once", async (t) => {
  // An upstream that accepts the connection and drops it at once: a 502.
  const server = net.createServer((socket) => socket.destroy())
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const log = logCapture()
  const gw = await buildGateway(
    t,
    { TASK_SERVICE_URL: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, LOG_LEVEL: 'warn' },
    { logStream: log.stream },
  )
  const jwt = await token()
  const res = await gw.inject({
    method: 'POST',
    url: `/api/${subOf(jwt)}/tasks`,
    headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json', 'x-request-id': 'upstream-down' },
    payload: '{}',
  })
  t.equal(res.statusCode, 502)
  t.same(res.json(), { detail: 'Upstream service error', error_code: 'BAD_GATEWAY', status_code: 502 })
  t.equal(res.headers['x-request-id'], 'upstream-down')
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  // The error handler's line (installErrorEnvelope: 'request failed' with the envelope's code), with the forwarder's fields; nothing else.
  const mine = log.lines.filter((l) => l.reqId === 'upstream-down')
  t.equal(mine.length, 1, 'one line for the failure')
  t.match(mine[0], { level: 40, msg: 'request failed', code: 'BAD_GATEWAY', status: 502, upstream: 'tasks', upstreamError: String })
})
