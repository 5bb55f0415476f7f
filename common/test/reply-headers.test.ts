/**
 * The fields every answer carries, set by copying one prepared object over the
 * reply's empty header object (src/reply-headers.ts): with the installed
 * Fastify the copy is what runs, and every answer (a route's, an error's, a
 * 404, a HEAD, one whose route set fields of its own) carries exactly what
 * reply.headers() would have given it; a reply that already holds a field
 * keeps it (the setter falls back to reply.headers()).
 */
import t from 'tap'
import http from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import { replyHeaderSetter, type ReplyHeaderSetter } from '../src/reply-headers.js'

const FIELDS = {
  'X-Content-Type-Options': 'nosniff',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  vary: 'Origin',
  'Access-Control-Expose-Headers': 'X-Request-Id, RateLimit',
}

/** An app whose onRequest sets the fields either way, with routes that add, replace and fail. */
function app(set: (reply: import('fastify').FastifyReply, id: string) => void, before?: (reply: import('fastify').FastifyReply) => void): FastifyInstance {
  const app = Fastify({ genReqId: () => 'req-1' })
  if (before) app.addHook('onRequest', (_request, reply, done) => (before(reply), done()))
  app.addHook('onRequest', (request, reply, done) => {
    set(reply, request.id)
    done()
  })
  app.get('/plain', async () => ({ ok: true }))
  app.get('/own', async (_request, reply) => {
    reply.header('Vary', 'Accept').header('x-extra', '1').header('set-cookie', 'a=1').header('set-cookie', 'b=2')
    return 'text'
  })
  app.get('/fails', async () => {
    throw Object.assign(new Error('nope'), { statusCode: 418 })
  })
  return app
}

const requests = [
  { method: 'GET' as const, url: '/plain' },
  { method: 'HEAD' as const, url: '/plain' },
  { method: 'GET' as const, url: '/own' },
  { method: 'GET' as const, url: '/fails' },
  { method: 'GET' as const, url: '/missing' },
]

/** The answer's head as sent on the wire, its fields in order (the date made equal), and its body. */
async function exchange(app: FastifyInstance, request: { method: string; url: string }) {
  if (!app.server.listening) await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as { port: number }
  return new Promise<{ status: number; fields: string[]; body: string }>((resolve, reject) => {
    http
      .request({ host: '127.0.0.1', port, method: request.method, path: request.url, agent: false }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (body += chunk))
        res.on('end', () =>
          resolve({ status: res.statusCode!, fields: res.rawHeaders.map((v, i) => (i % 2 === 1 && res.rawHeaders[i - 1]!.toLowerCase() === 'date' ? 'DATE' : v)), body }),
        )
      })
      .on('error', reject)
      .end()
  })
}

t.test('with the installed Fastify the prepared object is copied, and every answer is the one reply.headers() gives', async (t) => {
  const setter: ReplyHeaderSetter = replyHeaderSetter(FIELDS, 'X-Request-Id')
  const fast = app(setter)
  const reference = app((reply, id) => {
    reply.headers(FIELDS)
    reply.header('X-Request-Id', id)
  })
  t.teardown(() => Promise.all([fast.close(), reference.close()]))
  for (const request of requests) {
    const a = await exchange(fast, request)
    t.ok(setter.copied, `${request.method} ${request.url}: copied`)
    const b = await exchange(reference, request)
    t.same(a, b, `${request.method} ${request.url}: same head, fields in the same order, same body`)
  }
  const a = await fast.inject({ url: '/own' })
  t.equal(a.headers['x-request-id'], 'req-1')
  t.equal(a.headers.vary, 'Accept', "a route's own value replaces the prepared one, as with reply.headers()")
  t.same(a.headers['set-cookie'], ['a=1', 'b=2'])
})

t.test('each answer gets its own copy: what a route adds never reaches the next answer', async (t) => {
  const setter = replyHeaderSetter(FIELDS, 'x-request-id')
  const fast = app(setter)
  t.teardown(() => fast.close())
  await fast.inject({ url: '/own' })
  const next = await fast.inject({ url: '/plain' })
  t.equal(next.headers['x-extra'], undefined)
  t.equal(next.headers.vary, 'Origin')
  t.equal(next.headers['set-cookie'], undefined)
})

t.test('a reply that already holds a field keeps it: the fields are set one by one', async (t) => {
  const setter = replyHeaderSetter(FIELDS, 'x-request-id')
  const fast = app(setter, (reply) => reply.header('x-early', 'kept'))
  t.teardown(() => fast.close())
  const res = await fast.inject({ url: '/plain' })
  t.notOk(setter.copied)
  t.equal(res.headers['x-early'], 'kept')
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.equal(res.headers['x-request-id'], 'req-1')
})

t.test('no fields: only the request id', async (t) => {
  const setter = replyHeaderSetter({}, 'x-request-id')
  const fast = app(setter)
  t.teardown(() => fast.close())
  const res = await fast.inject({ url: '/plain' })
  t.ok(setter.copied)
  t.equal(res.headers['x-request-id'], 'req-1')
  t.equal(res.headers['x-content-type-options'], undefined)
})
