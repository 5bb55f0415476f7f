/**
 * lingerOnRefusal when the request's body stream is already destroyed by the
 * time the refusal is answered: what undici does to a body it was sending when
 * the upstream fails mid-upload, in the order where the body goes before the
 * error reaches the error handler. undici (lib/core/util.js destroy) unsets an
 * IncomingMessage's `socket` before destroying it, so Node keeps the
 * connection; the request itself then no longer names its socket, and Node's
 * parser has stopped reading it. The gateway's streamed-upload tests cover the
 * other order (the refusal answered first, the body destroyed after).
 */
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { BadGateway, createService, LINGER_MAX_MS } from '../src/index.js'
import { answerCount as answers, rawConnection, waitUntil } from '../src/testing/index.js'

/** undici's util.destroy for an IncomingMessage: the connection is left alone, the body stream ends. */
function destroyAsUndiciDoes(raw: IncomingMessage): void {
  ;(raw as { socket: unknown }).socket = null
  raw.destroy(new Error('upstream went away mid-upload'))
}

async function service(t: { teardown(fn: () => unknown): void }) {
  const app = createService({ name: 'linger-test', logLevel: 'silent', openapi: false })
  app.post('/upload', {
    onRequest: (request, _reply, done) => {
      destroyAsUndiciDoes(request.raw)
      done(new BadGateway('Upstream service error'))
    },
    handler: async () => ({ never: true }),
  })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return (app.server.address() as { port: number }).port
}

const UPLOAD_HEAD = 'POST /upload HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 100000\r\n\r\n'

/** A connection that sent the head and 20 of 100 KB of an upload, once its answer has arrived. */
async function refusedMidUpload(t: { teardown(fn: () => unknown): void }) {
  const c = rawConnection(await service(t))
  t.teardown(() => c.socket.destroy())
  c.socket.write(UPLOAD_HEAD)
  c.socket.write(Buffer.alloc(20_000, 'a'))
  await waitUntil(async () => c.state.received.includes('\r\n\r\n'), { what: 'the answer', intervalMs: 10 })
  return c
}

t.test('body destroyed before the refusal, the client stops sending: answered, then cut at the linger bound', async (t) => {
  const c = await refusedMidUpload(t)
  t.match(c.state.received, /^HTTP\/1\.1 502 /, 'the refusal is answered')
  // What it sends next is still body to the server: no answer can come, and the connection must not sit open
  // until the keep-alive timeout (72 s).
  c.socket.write('GET /health HTTP/1.1\r\nhost: x\r\n\r\n')
  await c.closed
  t.ok(c.state.closedAfterMs >= LINGER_MAX_MS - 100, `not cut before the bound (${c.state.closedAfterMs} ms)`)
  t.ok(c.state.closedAfterMs < LINGER_MAX_MS + 3000, `cut after ${c.state.closedAfterMs} ms (bound ${LINGER_MAX_MS} ms)`)
  t.equal(answers(c.state.received), 1, 'one answer: the refusal')
})

t.test('body destroyed before the refusal, the client finishes its body: the connection stays usable', async (t) => {
  const c = await refusedMidUpload(t)
  t.match(c.state.received, /^HTTP\/1\.1 502 /)
  c.socket.write(Buffer.alloc(80_000, 'a'))
  c.socket.write('GET /health HTTP/1.1\r\nhost: x\r\n\r\n')
  await waitUntil(async () => answers(c.state.received) === 2, { what: 'the second answer', intervalMs: 10 })
  t.match(c.state.received, /HTTP\/1\.1 200 /, 'the next request on the connection is answered')
  t.equal(c.state.closedAfterMs, -1, 'the connection is still open')
})
