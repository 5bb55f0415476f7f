/**
 * The proxy conformance suite: one table of cases, run against the gateway's
 * forwarder (forwarder.test.ts) and against a plain @fastify/http-proxy app
 * (http-proxy.test.ts), both in front of the same node:http upstream.
 *
 * The cases port what @fastify/reply-from's and @fastify/http-proxy's own
 * test folders pin down (HEAD, GET with a body, hop-by-hop fields, cookies,
 * 1xx, 204/304, bodies byte for byte, backpressure, resets, timeouts, client
 * aborts, bad status, path normalisation). Where the two legitimately differ,
 * a case gives each one's expectation and why; gateway/src/proxy/README.md
 * lists those differences.
 *
 * Every subject uses one upstream connection (so that "queued" is a state a
 * test can reach) and an 800 ms upstream deadline.
 */
import http from 'node:http'
import { createHash, randomBytes } from 'node:crypto'
import {
  answer,
  answerText,
  rawExchange,
  readAll,
  send,
  sha,
  sleep,
  until,
  type Answer,
  type Case,
  type Check,
} from './harness.js'

const SMALL = randomBytes(1000)
const MEDIUM = randomBytes(200 * 1024)
const UPLOAD = randomBytes(300 * 1024)
/** The backpressure answer: this block, many times over (far more than loopback sockets and streams can hold). */
const BLOCK = randomBytes(64 * 1024)
const BLOCKS = 1024
const BIG_SHA = (() => {
  const h = createHash('sha256')
  for (let i = 0; i < BLOCKS; i++) h.update(BLOCK)
  return h.digest('hex')
})()

const notReached = (kase: string): Check => (t, _a, up) => t.equal(up.seen(kase).length, 0, 'never reached the upstream')

export const cases: Case[] = [
  {
    name: 'HEAD answers the GET head with no body, and goes upstream as HEAD',
    key: 'head',
    upstream: (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 11, etag: '"h1"' })
      res.end(req.method === 'HEAD' ? undefined : 'hello world')
    },
    exchange: (s) => send(s, { kase: 'head', method: 'HEAD', path: s.item('head') }),
    expect: (t, a, up) => {
      t.equal(a.status, 200)
      t.equal(a.body.length, 0, 'no body')
      t.equal(a.headers['content-length'], '11', "the GET's length")
      t.equal(a.headers.etag, '"h1"')
      t.equal(up.seen('head')[0]?.method, 'HEAD', 'forwarded as HEAD')
    },
  },
  {
    name: 'HEAD of a large answer: its declared length, no body',
    key: 'head-large',
    exchange: (s) => send(s, { kase: 'answer-length', method: 'HEAD', path: s.item('medium') }),
    expect: (t, a) => {
      t.equal(a.status, 200)
      t.equal(a.body.length, 0, 'no body')
      t.equal(a.headers['content-length'], String(MEDIUM.length), "the GET's length")
    },
  },
  {
    name: 'HEAD with a request body',
    key: 'head-request-body',
    upstream: async (req, res, seen) => {
      seen.body = await readAll(req)
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 11 })
      res.end()
    },
    exchange: (s) => send(s, { kase: 'head-request-body', method: 'HEAD', headers: { 'content-type': 'text/plain', 'content-length': 3 }, body: 'abc' }),
    expect: {
      why: 'as for GET: Fastify never reads a HEAD body and reply-from forwards only what Fastify read; the forwarder passes on what the client framed',
      forwarder: (t, a, up) => {
        t.equal(a.status, 200)
        t.equal(a.body.length, 0, 'no body in the answer')
        t.equal(a.headers['content-length'], '11')
        t.equal(up.seen('head-request-body')[0]?.method, 'HEAD')
        t.equal(up.seen('head-request-body')[0]?.body?.toString(), 'abc', 'the request body went upstream')
      },
      'http-proxy': (t, a, up) => {
        t.equal(a.status, 200)
        t.equal(a.body.length, 0, 'no body in the answer')
        t.equal(a.headers['content-length'], '11')
        t.equal(up.seen('head-request-body')[0]?.method, 'HEAD')
        t.equal(up.seen('head-request-body')[0]?.body?.length, 0, 'the request body was dropped')
      },
    },
  },
  {
    name: 'HEAD to an upstream that wrongly sends a body: the head only, and the next request is clean',
    key: 'head-with-body',
    upstream: (req, res) => {
      if (req.method !== 'HEAD') return answerText(res, 'next')
      // Bypass Node's HEAD handling: a body after the head, as a broken server would send it.
      req.socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello')
    },
    exchange: async (s) => {
      const head = await send(s, { kase: 'head-with-body', method: 'HEAD' })
      const next = await send(s, { kase: 'head-with-body' })
      return { ...head, extra: { next } }
    },
    expect: (t, a) => {
      t.equal(a.status, 200)
      t.equal(a.body.length, 0, 'no body on HEAD')
      const next = a.extra.next as Answer
      t.equal(next.status, 200, 'the next request is answered')
      t.equal(next.body.toString(), 'next', 'with its own body, not the stray bytes')
    },
  },
  {
    name: 'GET with a body',
    key: 'get-with-body',
    upstream: async (req, res, seen) => {
      seen.body = await readAll(req)
      answerText(res)
    },
    exchange: (s) => send(s, { kase: 'get-with-body', headers: { 'content-type': 'text/plain', 'content-length': 8 }, body: 'get-body' }),
    expect: {
      why: 'Fastify never reads a GET body and reply-from forwards only what Fastify read; the forwarder passes on what the client framed, as nginx and Envoy do',
      forwarder: (t, a, up) => {
        t.equal(a.status, 200)
        t.equal(up.seen('get-with-body')[0]?.body?.toString(), 'get-body', 'the body went upstream')
      },
      'http-proxy': (t, a, up) => {
        t.equal(a.status, 200)
        t.equal(up.seen('get-with-body')[0]?.body?.length, 0, 'the body was dropped')
      },
    },
  },
  {
    name: 'a request body with a Content-Length arrives byte for byte',
    key: 'post-length',
    upstream: async (req, res, seen) => {
      seen.body = await readAll(req)
      res.writeHead(201, { 'content-type': 'application/json' })
      res.end('{}')
    },
    exchange: (s) => send(s, { kase: 'post-length', method: 'POST', path: s.collection, headers: { 'content-type': 'application/octet-stream' }, body: UPLOAD }),
    expect: (t, a, up) => {
      t.equal(a.status, 201)
      const seen = up.seen('post-length')[0]!
      t.equal(sha(seen.body!), sha(UPLOAD), 'same bytes')
      t.equal(seen.headers['content-length'], String(UPLOAD.length), 'length kept')
    },
  },
  {
    name: 'a chunked request body arrives byte for byte',
    key: 'post-chunked',
    upstream: async (req, res, seen) => {
      seen.body = await readAll(req)
      res.writeHead(201, { 'content-type': 'application/json' })
      res.end('{}')
    },
    exchange: (s) => {
      const chunks: Buffer[] = []
      for (let i = 0; i < UPLOAD.length; i += 30_000) chunks.push(UPLOAD.subarray(i, i + 30_000))
      return send(s, { kase: 'post-chunked', method: 'POST', path: s.collection, headers: { 'content-type': 'application/octet-stream' }, chunks })
    },
    expect: (t, a, up) => {
      t.equal(a.status, 201)
      const seen = up.seen('post-chunked')[0]!
      t.equal(sha(seen.body!), sha(UPLOAD), 'same bytes')
      t.equal(seen.headers['transfer-encoding'], 'chunked', 'still of unknown length')
    },
  },
  {
    name: 'a slow upload streams through: the upstream reads its start before the client has sent the rest',
    key: 'slow-upload',
    upstream: (req, res, seen, up) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => {
        chunks.push(c)
        up.notes['slow-upload-first'] = 1
      })
      req.on('end', () => {
        seen.body = Buffer.concat(chunks)
        res.writeHead(201, { 'content-type': 'application/json' })
        res.end('{}')
      })
    },
    exchange: (s, up) =>
      new Promise((resolve) => {
        up.notes['slow-upload-first'] = 0
        const req = http.request({
          host: '127.0.0.1',
          port: s.port,
          method: 'POST',
          path: s.collection,
          agent: false,
          headers: { ...s.headers, 'x-case': 'slow-upload', 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' },
        })
        req.on('response', (res) => {
          res.resume()
          res.on('end', () => resolve(answer({ status: res.statusCode!, extra: { streamed } })))
        })
        req.on('error', (err) => resolve(answer({ error: err.message })))
        let streamed = false
        req.write(UPLOAD.subarray(0, 1000))
        void until(() => up.notes['slow-upload-first'] === 1).then((seenFirst) => {
          streamed = seenFirst
          req.end(UPLOAD.subarray(1000))
        })
      }),
    expect: (t, a, up) => {
      t.equal(a.status, 201)
      t.ok(a.extra.streamed, 'the first bytes reached the upstream while the client was still sending')
      t.equal(sha(up.seen('slow-upload')[0]!.body!), sha(UPLOAD), 'same bytes')
    },
  },
  {
    name: 'answers with a Content-Length arrive byte for byte',
    key: 'answer-length',
    upstream: (req, res) => {
      const body = req.url!.endsWith('small') ? SMALL : MEDIUM
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length })
      res.end(body)
    },
    exchange: async (s) => {
      const small = await send(s, { kase: 'answer-length', path: s.item('small') })
      const medium = await send(s, { kase: 'answer-length', path: s.item('medium') })
      return { ...medium, extra: { small } }
    },
    expect: (t, a) => {
      const small = a.extra.small as Answer
      t.equal(small.status, 200)
      t.equal(sha(small.body), sha(SMALL), 'small: same bytes')
      t.equal(small.headers['content-length'], String(SMALL.length), 'small: length kept')
      t.equal(a.status, 200)
      t.equal(sha(a.body), sha(MEDIUM), 'large: same bytes')
      t.equal(a.headers['content-length'], String(MEDIUM.length), 'large: length kept')
    },
  },
  {
    name: 'chunked answers arrive byte for byte',
    key: 'answer-chunked',
    upstream: (req, res) => {
      const body = req.url!.endsWith('small') ? SMALL : MEDIUM
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      let at = 0
      const next = () => {
        if (at >= body.length) return res.end()
        res.write(body.subarray(at, at + 16_384))
        at += 16_384
        setImmediate(next)
      }
      next()
    },
    exchange: async (s) => {
      const small = await send(s, { kase: 'answer-chunked', path: s.item('small') })
      const medium = await send(s, { kase: 'answer-chunked', path: s.item('medium') })
      return { ...medium, extra: { small } }
    },
    expect: (t, a) => {
      const small = a.extra.small as Answer
      t.equal(small.status, 200)
      t.equal(sha(small.body), sha(SMALL), 'small: same bytes')
      t.equal(a.status, 200)
      t.equal(sha(a.body), sha(MEDIUM), 'large: same bytes')
    },
  },
  {
    name: 'a large answer to a slow reader: backpressure reaches the upstream, and every byte arrives',
    key: 'backpressure',
    upstream: (_req, res, _seen, up) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BLOCK.length * BLOCKS })
      let sent = 0
      const pump = () => {
        while (sent < BLOCKS) {
          sent++
          up.notes.backpressureWritten = sent
          if (!res.write(BLOCK)) return res.once('drain', pump)
        }
        res.end()
      }
      pump()
    },
    exchange: (s, up) =>
      new Promise((resolve) => {
        up.notes.backpressureWritten = 0
        const req = http.request({ host: '127.0.0.1', port: s.port, path: s.item('backpressure'), agent: false, headers: { ...s.headers, 'x-case': 'backpressure' } })
        req.on('error', (err) => resolve(answer({ error: err.message })))
        req.on('response', async (res) => {
          res.pause()
          // Wait until the upstream cannot write any more (no progress for 300 ms), then read everything.
          let last = -1
          let still = 0
          while (still < 3) {
            await sleep(100)
            const now = up.notes.backpressureWritten!
            still = now === last ? still + 1 : 0
            last = now
          }
          const hash = createHash('sha256')
          let length = 0
          res.on('data', (c: Buffer) => {
            hash.update(c)
            length += c.length
          })
          res.on('end', () => resolve(answer({ status: res.statusCode!, extra: { stalledAt: last, length, sha: hash.digest('hex') } })))
          res.on('error', (err) => resolve(answer({ status: res.statusCode!, error: err.message })))
          res.resume()
        })
        req.end()
      }),
    expect: (t, a) => {
      t.equal(a.status, 200)
      t.ok((a.extra.stalledAt as number) < BLOCKS, `the upstream was held back (${a.extra.stalledAt} of ${BLOCKS} blocks written while the client read nothing)`)
      t.equal(a.extra.length, BLOCK.length * BLOCKS, 'every byte arrived')
      t.equal(a.extra.sha, BIG_SHA, 'same bytes')
    },
  },
  {
    name: 'Connection and the fields it names stop at the proxy (request)',
    key: 'hop-request',
    exchange: (s) => send(s, { kase: 'hop-request', headers: { connection: 'keep-alive, x-hop', 'x-hop': 'secret', 'x-end': 'kept' } }),
    expect: (t, a, up) => {
      t.equal(a.status, 200)
      const seen = up.seen('hop-request')[0]!
      t.equal(seen.headers['x-hop'], undefined, 'a field Connection names is dropped')
      t.equal(seen.headers['x-end'], 'kept', 'an end-to-end field passes')
    },
  },
  {
    name: 'the other hop-by-hop request fields (Keep-Alive, TE, Proxy-Authorization) stop at the proxy',
    key: 'hop-request-fixed',
    exchange: (s) => send(s, { kase: 'hop-request-fixed', headers: { 'keep-alive': 'timeout=5', te: 'trailers', 'proxy-authorization': 'Basic eDp5' } }),
    expect: {
      why: 'reply-from drops only Connection, Transfer-Encoding and the fields Connection names; undici then refuses the Keep-Alive field it was handed (500)',
      forwarder: (t, a, up) => {
        t.equal(a.status, 200)
        const seen = up.seen('hop-request-fixed')[0]!
        for (const name of ['keep-alive', 'te', 'proxy-authorization']) t.equal(seen.headers[name], undefined, `${name} dropped`)
      },
      'http-proxy': (t, a, up) => {
        t.equal(a.status, 500, 'undici refuses a Keep-Alive field')
        t.equal(up.seen('hop-request-fixed').length, 0)
      },
    },
  },
  {
    name: 'Connection and the fields it names stop at the proxy (answer)',
    key: 'hop-answer',
    upstream: (_req, res) => {
      res.setHeader('connection', 'x-up-hop')
      res.setHeader('x-up-hop', 'secret')
      res.setHeader('x-end', 'kept')
      res.end('ok')
    },
    exchange: (s) => send(s, { kase: 'hop-answer' }),
    expect: {
      why: 'reply-from strips hop-by-hop answer fields only for HTTP/2 clients; the forwarder strips them for every client (RFC 9110 7.6.1)',
      forwarder: (t, a) => {
        t.equal(a.status, 200)
        t.equal(a.headers['x-up-hop'], undefined, 'a field the upstream Connection names is dropped')
        t.equal(a.headers['x-end'], 'kept')
      },
      'http-proxy': (t, a) => {
        t.equal(a.status, 200)
        t.equal(a.headers['x-up-hop'], 'secret', 'passed on')
        t.equal(a.headers['x-end'], 'kept')
      },
    },
  },
  {
    name: 'several Set-Cookie fields stay separate',
    key: 'cookies',
    upstream: (_req, res) => {
      res.setHeader('set-cookie', ['a=1; HttpOnly', 'b=2; Path=/', 'c=3, with a comma'])
      res.end('ok')
    },
    exchange: (s) => send(s, { kase: 'cookies' }),
    expect: (t, a) => {
      t.equal(a.status, 200)
      t.same(a.headers['set-cookie'], ['a=1; HttpOnly', 'b=2; Path=/', 'c=3, with a comma'])
    },
  },
  {
    name: 'a 1xx interim answer is not relayed; the final answer is',
    key: 'interim',
    upstream: (_req, res) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' })
      setTimeout(() => res.end('final'), 10)
    },
    exchange: (s) => send(s, { kase: 'interim' }),
    expect: (t, a) => {
      t.equal(a.status, 200)
      t.equal(a.body.toString(), 'final')
      t.same(a.informational, [], 'no interim answer reaches the client')
    },
  },
  {
    name: '204 carries no body',
    key: 'no-content',
    upstream: (_req, res) => {
      res.writeHead(204, { 'x-end': 'kept' })
      res.end()
    },
    exchange: (s) => send(s, { kase: 'no-content', method: 'DELETE' }),
    expect: (t, a) => {
      t.equal(a.status, 204)
      t.equal(a.body.length, 0)
      t.equal(a.headers['transfer-encoding'], undefined)
      t.equal(a.headers['x-end'], 'kept')
    },
  },
  {
    name: '304 carries no body and keeps its validators',
    key: 'not-modified',
    upstream: (req, res) => {
      res.writeHead(req.headers['if-none-match'] === '"v1"' ? 304 : 200, { etag: '"v1"' })
      res.end()
    },
    exchange: (s) => send(s, { kase: 'not-modified', headers: { 'if-none-match': '"v1"' } }),
    expect: (t, a) => {
      t.equal(a.status, 304)
      t.equal(a.body.length, 0)
      t.equal(a.headers.etag, '"v1"')
    },
  },
  {
    name: 'an upstream reset in the middle of a small answer',
    key: 'reset-small',
    upstream: (req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1000, 'set-cookie': 'sid=broken' })
      res.write('0123456789')
      setTimeout(() => req.socket.destroy(), 20)
    },
    exchange: (s) => send(s, { kase: 'reset-small' }),
    expect: {
      why: 'the forwarder holds answers up to 64 KiB until they are complete, so a broken small answer is still an honest 502; reply-from streams every answer, so its client gets a 200 cut short',
      forwarder: (t, a) => {
        t.equal(a.status, 502)
        t.same(JSON.parse(a.body.toString()), { detail: 'Upstream service error', error_code: 'BAD_GATEWAY', status_code: 502 })
        t.equal(a.headers['set-cookie'], undefined, "the broken answer's cookie is not passed on")
      },
      'http-proxy': (t, a) => {
        t.equal(a.status, 200)
        t.ok(a.error !== null && a.body.length < 1000, 'the answer is cut short')
      },
    },
  },
  {
    name: 'an upstream reset in the middle of a large answer cuts the answer short',
    key: 'reset-large',
    upstream: (req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': MEDIUM.length * 5 })
      res.write(MEDIUM)
      setTimeout(() => req.socket.destroy(), 20)
    },
    exchange: (s) => send(s, { kase: 'reset-large' }),
    expect: (t, a) => {
      t.equal(a.status, 200, 'the head was already on its way')
      t.ok(a.error !== null, 'the client sees the break')
      t.ok(a.body.length < MEDIUM.length * 5, 'fewer bytes than declared')
    },
  },
  {
    name: 'an upstream that does not answer in time is a 504, and the upstream request is cancelled',
    key: 'timeout',
    upstream: () => {
      // never answers
    },
    exchange: async (s, up) => {
      const a = await send(s, { kase: 'timeout' })
      await until(() => up.seen('timeout')[0]?.outcome !== 'open')
      return a
    },
    expect: {
      why: 'same status; the error bodies differ (the forwarder answers in the API envelope)',
      forwarder: (t, a, up) => {
        t.equal(a.status, 504)
        t.same(JSON.parse(a.body.toString()), { detail: 'Upstream service timed out', error_code: 'GATEWAY_TIMEOUT', status_code: 504 })
        t.equal(up.seen('timeout')[0]?.outcome, 'cancelled')
      },
      'http-proxy': (t, a, up) => {
        t.equal(a.status, 504)
        t.equal(JSON.parse(a.body.toString()).code, 'FST_REPLY_FROM_GATEWAY_TIMEOUT')
        t.equal(up.seen('timeout')[0]?.outcome, 'cancelled')
      },
    },
  },
  {
    name: 'an upstream that stalls in the middle of a small answer',
    key: 'stall',
    upstream: (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 100, 'set-cookie': 'sid=stalled' })
      res.write('0123456789')
      const timer = setTimeout(() => res.end('x'.repeat(90)), 5000)
      res.on('close', () => clearTimeout(timer))
    },
    exchange: (s) => send(s, { kase: 'stall' }),
    expect: {
      why: 'the forwarder holds answers up to 64 KiB until they are complete, so a stalled small answer is still an honest 504; reply-from streams every answer, so its client gets a 200 cut short',
      forwarder: (t, a) => {
        t.equal(a.status, 504)
        t.same(JSON.parse(a.body.toString()), { detail: 'Upstream service timed out', error_code: 'GATEWAY_TIMEOUT', status_code: 504 })
        t.equal(a.headers['set-cookie'], undefined, "the stalled answer's cookie is not passed on")
      },
      'http-proxy': (t, a) => {
        t.equal(a.status, 200)
        t.ok(a.error !== null && a.body.length < 100, 'the answer is cut short')
      },
    },
  },
  {
    name: 'an upstream status outside 100-599 is a 502',
    key: 'bad-status',
    upstream: (_req, res) => {
      res.statusCode = 888
      res.end('non-standard status code')
    },
    exchange: (s) => send(s, { kase: 'bad-status' }),
    expect: {
      why: 'same status; the error bodies differ (the forwarder answers in the API envelope)',
      forwarder: (t, a) => {
        t.equal(a.status, 502)
        t.same(JSON.parse(a.body.toString()), { detail: 'Upstream service error', error_code: 'BAD_GATEWAY', status_code: 502 })
      },
      'http-proxy': (t, a) => {
        t.equal(a.status, 502)
        t.equal(JSON.parse(a.body.toString()).code, 'FST_REPLY_FROM_BAD_GATEWAY')
      },
    },
  },
  {
    name: 'a client that leaves while its request waits for a connection',
    key: 'queued',
    exchange: async (s, up) => {
      const holder = send(s, { kase: 'hold' })
      await until(() => up.seen('hold').length > 0)
      // The only upstream connection is busy: this request waits in the pool, and its client leaves.
      const leaver = http.request({ host: '127.0.0.1', port: s.port, path: s.item('queued'), agent: false, headers: { ...s.headers, 'x-case': 'queued' } })
      leaver.on('error', () => {})
      leaver.end()
      await sleep(100)
      leaver.destroy()
      await sleep(20)
      up.release()
      await holder
      // The pool is first in, first out: once this is answered, the abandoned request was sent or dropped.
      const probe = await send(s, { kase: 'probe' })
      return { ...probe, extra: { reached: up.seen('queued').length } }
    },
    expect: {
      why: 'reply-from hands undici no abort signal, so a request whose client left is still sent when a connection frees up; the forwarder drops it before a byte is written',
      forwarder: (t, a) => {
        t.equal(a.status, 200, 'the connection still serves')
        t.equal(a.extra.reached, 0, 'the abandoned request never reached the upstream')
      },
      'http-proxy': (t, a) => {
        t.equal(a.status, 200)
        t.equal(a.extra.reached, 1, 'the abandoned request was still sent')
      },
    },
  },
  {
    name: 'a client that leaves while the upstream works on its request',
    key: 'working',
    upstream: (_req, res) => {
      const timer = setTimeout(() => res.end('late'), 250)
      res.on('close', () => clearTimeout(timer))
    },
    exchange: async (s, up) => {
      const req = http.request({ host: '127.0.0.1', port: s.port, path: s.item('working'), agent: false, headers: { ...s.headers, 'x-case': 'working' } })
      req.on('error', () => {})
      req.end()
      await until(() => up.seen('working').length > 0)
      req.destroy()
      await until(() => up.seen('working')[0]!.outcome !== 'open')
      return answer({ extra: { outcome: up.seen('working')[0]!.outcome } })
    },
    expect: {
      why: 'reply-from lets the upstream exchange run to its end and then drops the answer (its http1-aborted-request test); the forwarder cancels the upstream request at once',
      forwarder: (t, a) => t.equal(a.extra.outcome, 'cancelled'),
      'http-proxy': (t, a) => t.equal(a.extra.outcome, 'finished'),
    },
  },
  {
    name: "a client that leaves after the answer's head arrived, before its body did",
    key: 'head-only',
    upstream: (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 100 })
      res.write('0123456789')
      const timer = setTimeout(() => res.end('x'.repeat(90)), 2000)
      res.on('close', () => clearTimeout(timer))
    },
    exchange: async (s, up) => {
      const req = http.request({ host: '127.0.0.1', port: s.port, path: s.item('head-only'), agent: false, headers: { ...s.headers, 'x-case': 'head-only' } })
      req.on('error', () => {})
      req.end()
      await until(() => up.seen('head-only').length > 0)
      await sleep(100) // the head and the first bytes reach the proxy
      req.destroy()
      await until(() => up.seen('head-only')[0]!.outcome !== 'open')
      return answer({ extra: { outcome: up.seen('head-only')[0]!.outcome } })
    },
    expect: (t, a) => t.equal(a.extra.outcome, 'cancelled', 'the upstream answer was cut off before its end'),
  },
  {
    name: 'a client that leaves while the answer streams cancels the upstream answer',
    key: 'streaming',
    upstream: (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      let n = 0
      const timer = setInterval(() => {
        res.write(BLOCK.subarray(0, 16_384))
        if (++n === 250) {
          clearInterval(timer)
          res.end()
        }
      }, 10)
      res.on('close', () => clearInterval(timer))
    },
    exchange: (s, up) =>
      new Promise((resolve) => {
        const req = http.request({ host: '127.0.0.1', port: s.port, path: s.item('streaming'), agent: false, headers: { ...s.headers, 'x-case': 'streaming' } })
        req.on('error', () => {})
        req.on('response', (res) => {
          res.once('data', async () => {
            req.destroy()
            await until(() => up.seen('streaming')[0]!.outcome !== 'open')
            resolve(answer({ status: res.statusCode!, extra: { outcome: up.seen('streaming')[0]!.outcome } }))
          })
        })
        req.end()
      }),
    expect: (t, a) => {
      t.equal(a.status, 200)
      t.equal(a.extra.outcome, 'cancelled', 'the upstream answer was cut off before its end')
    },
  },
  {
    name: 'an upstream that answers before reading the request body: Connection: close, then the connection closes',
    key: 'early',
    upstream: (_req, res) => res.end('early'),
    exchange: async (s) => {
      const head = [`POST ${s.collection} HTTP/1.1`, 'Host: localhost', 'x-case: early', 'Content-Type: application/octet-stream', 'Content-Length: 500000', 'Connection: keep-alive']
      for (const [k, v] of Object.entries(s.headers)) head.push(`${k}: ${v}`)
      const { text, closed } = await rawExchange(s.port, `${head.join('\r\n')}\r\n\r\na`, 3000)
      return answer({ extra: { text, closed } })
    },
    expect: (t, a) => {
      t.match(a.extra.text, /^HTTP\/1\.1 200 OK\r\n/)
      t.match(a.extra.text, /\r\nconnection: close\r\n/i)
      t.match(a.extra.text, /\r\n\r\nearly$/)
      t.ok(a.extra.closed, 'the connection is closed')
    },
  },
  {
    name: 'an upstream that reads the whole request body first: the client connection stays reusable',
    key: 'consumed',
    upstream: async (req, res, seen) => {
      seen.body = await readAll(req)
      res.end('complete')
    },
    exchange: async (s) => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      const post = () =>
        new Promise<{ connection: string | undefined; reused: boolean; body: string }>((resolve, reject) => {
          const req = http.request({
            host: '127.0.0.1',
            port: s.port,
            method: 'POST',
            path: s.collection,
            agent,
            headers: { ...s.headers, 'x-case': 'consumed', 'content-type': 'application/octet-stream', 'content-length': 5 },
          })
          req.on('error', reject)
          req.on('response', (res) => {
            let body = ''
            res.on('data', (c) => (body += c))
            res.on('end', () => resolve({ connection: res.headers.connection, reused: req.reusedSocket, body }))
          })
          req.end('hello')
        })
      const first = await post()
      const second = await post()
      agent.destroy()
      return answer({ extra: { first, second } })
    },
    expect: (t, a) => {
      const first = a.extra.first as { connection: string | undefined }
      const second = a.extra.second as { reused: boolean; body: string }
      t.not(first.connection, 'close', 'no Connection: close')
      t.equal(second.reused, true, 'the second request rode the same connection')
      t.equal(second.body, 'complete')
    },
  },
  {
    name: 'path: a raw `..` segment is refused before the upstream',
    key: 'dot-raw',
    exchange: (s) => send(s, { kase: 'dot-raw', path: s.item('..') }),
    expect: (t, a, up) => {
      t.equal(a.status, 400)
      notReached('dot-raw')(t, a, up)
    },
  },
  {
    name: 'path: percent-encoded `..` segments are refused before the upstream',
    key: 'dot-encoded',
    exchange: async (s) => {
      const statuses: number[] = []
      for (const id of ['%2e%2e', '%2E%2E', '.%2e', '..%2fx', '%2e%2e%2Fx']) statuses.push((await send(s, { kase: 'dot-encoded', path: s.item(id) })).status)
      return answer({ extra: { statuses } })
    },
    expect: (t, a, up) => {
      t.same(a.extra.statuses, [400, 400, 400, 400, 400])
      notReached('dot-encoded')(t, a, up)
    },
  },
  {
    name: 'path: encoded slashes and the query reach the upstream byte for byte',
    key: 'encoded-slash',
    exchange: (s) => send(s, { kase: 'encoded-slash', path: `${s.item('a%2Fb')}?q=1%2F2&r=%2e%2e` }),
    expect: (t, a, up) => {
      t.equal(a.status, 200)
      t.match(up.seen('encoded-slash')[0]?.url, /\/a%2Fb\?q=1%2F2&r=%2e%2e$/)
    },
  },
]

