/**
 * The edge every process shares (createService): the depth-bounded JSON
 * parser with Fastify's poisoning checks kept, router errors in the envelope,
 * and refused uploads that an ordinary Node client reads (issue 12, items 8-10).
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { Type } from 'typebox'
import { createService, exceedsJsonDepth, MAX_JSON_DEPTH } from '../src/index.js'
import { writeThenRead } from '../src/testing/write-then-read.js'

function service(t: { teardown(fn: () => unknown): void }) {
  const app = createService({ name: 'edge-test', logLevel: 'silent', openapi: false, responseHeaders: { 'x-content-type-options': 'nosniff' } })
  app.post('/items/:id', { schema: { body: Type.Object({ title: Type.String() }) } }, async (request) => ({ ok: true, id: (request.params as { id: string }).id }))
  app.post('/any', async (request) => ({ body: request.body }))
  t.teardown(() => app.close())
  return app
}

const nest = (depth: number) => '['.repeat(depth) + ']'.repeat(depth)

t.test('depth scan: brackets in strings and escaped quotes do not count', async (t) => {
  t.equal(exceedsJsonDepth(nest(MAX_JSON_DEPTH), MAX_JSON_DEPTH), false)
  t.equal(exceedsJsonDepth(nest(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH), true)
  t.equal(exceedsJsonDepth(JSON.stringify({ a: '['.repeat(1000) }), MAX_JSON_DEPTH), false)
  t.equal(exceedsJsonDepth(JSON.stringify({ a: '\\"[[[' + '['.repeat(1000) }), MAX_JSON_DEPTH), false)
  t.equal(exceedsJsonDepth(`{"a":"\\"",${'"b":['.repeat(70)}`, MAX_JSON_DEPTH), true, 'an escaped quote does not end the string early')
})

t.test('nested bodies: 400 VALIDATION_ERROR before JSON.parse sees them; the limit itself parses', async (t) => {
  const app = service(t)
  const { parse } = JSON
  let bigParses = 0
  JSON.parse = ((text: string, reviver?: never) => {
    if (typeof text === 'string' && text.length > 100_000) bigParses++
    return parse(text, reviver)
  }) as typeof JSON.parse
  t.teardown(() => {
    JSON.parse = parse
  })
  for (const url of ['/items/1', '/any']) {
    const res = await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: nest(520_000) })
    t.equal(res.statusCode, 400, url)
    t.same(res.json(), { detail: `JSON body is nested more than ${MAX_JSON_DEPTH} levels deep`, error_code: 'VALIDATION_ERROR', status_code: 400 })
    t.ok(res.headers['x-request-id'])
  }
  t.equal(bigParses, 0, 'never parsed')
  const deepest = await app.inject({ method: 'POST', url: '/any', headers: { 'content-type': 'application/json' }, payload: nest(MAX_JSON_DEPTH) })
  t.equal(deepest.statusCode, 200)
})

t.test("Fastify's prototype-poisoning protection is kept", async (t) => {
  const app = service(t)
  for (const payload of ['{"title":"x","__proto__":{"admin":true}}', '{"title":"x","constructor":{"prototype":{"admin":true}}}']) {
    const res = await app.inject({ method: 'POST', url: '/any', headers: { 'content-type': 'application/json' }, payload })
    t.equal(res.statusCode, 400, payload)
    t.equal(res.json().error_code, 'VALIDATION_ERROR')
  }
  const ok = await app.inject({ method: 'POST', url: '/items/7', payload: { title: 'x' } })
  t.same(ok.json(), { ok: true, id: '7' })
})

t.test('router errors: envelope, request id, response headers, no echo', async (t) => {
  const app = service(t)
  const cases: Array<[string, number, string]> = [
    [`/items/${'z'.repeat(201)}`, 414, 'URI_TOO_LONG'],
    ['/items/%zz-marker', 400, 'VALIDATION_ERROR'],
  ]
  for (const [url, status, code] of cases) {
    const res = await app.inject({ method: 'POST', url, payload: { title: 'x' }, headers: { 'x-request-id': 'rid-1' } })
    t.equal(res.statusCode, status, url.slice(0, 30))
    t.same(Object.keys(res.json()).sort(), ['detail', 'error_code', 'status_code'])
    t.equal(res.json().error_code, code)
    t.equal(res.json().status_code, status)
    t.notMatch(res.body, /zzz|marker/, 'input not echoed')
    t.equal(res.headers['x-request-id'], 'rid-1')
    t.equal(res.headers['x-content-type-options'], 'nosniff')
  }
})

/** http.request writing `size` bytes, with or without Content-Length: the status it read, or the error it failed with. */
function upload(port: number, size: number, chunked: boolean): Promise<string> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (!chunked) headers['content-length'] = String(size)
    const req = http.request({ port, host: '127.0.0.1', method: 'POST', path: '/items/1', headers, agent: false })
    let answer: string | undefined
    req.on('response', (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve((answer = `${res.statusCode} ${JSON.parse(body).error_code}`)))
    })
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (answer === undefined) resolve(`error ${e.code}`)
    })
    const chunk = Buffer.alloc(64 * 1024, 'a')
    let sent = 0
    const write = () => {
      while (sent < size) {
        sent += chunk.length
        if (!req.write(chunk)) return void req.once('drain', write)
      }
      req.end()
    }
    write()
  })
}

t.test('an oversized upload is read as 413 by a plain Node client, with and without Content-Length', async (t) => {
  const app = service(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  for (const chunked of [false, true]) {
    for (let i = 0; i < 5; i++) t.equal(await upload(port, 3 * 1024 * 1024, chunked), '413 PAYLOAD_TOO_LARGE', `${chunked ? 'chunked' : 'Content-Length'} #${i + 1}`)
  }
})

t.test('a client that sends its whole body before reading gets the 413, and its connection stays usable', async (t) => {
  const app = service(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  for (const chunked of [false, true]) {
    t.same(await writeThenRead(port, { path: '/items/1', size: 3 * 1024 * 1024, chunked }), ['HTTP/1.1 413 Payload Too Large', 'HTTP/1.1 200 OK'], chunked ? 'chunked' : 'Content-Length')
  }
})

t.test('a bodiless request that says application/json is read as having no body (many clients send the header anyway)', async (t) => {
  const app = createService({ name: 'edge-test', logLevel: 'silent', openapi: false })
  app.post('/signout', async (request) => ({ body: request.body ?? null }))
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'POST', url: '/signout', headers: { 'content-type': 'application/json' } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { body: null })
  const bad = await app.inject({ method: 'POST', url: '/signout', headers: { 'content-type': 'application/json' }, payload: '{' })
  t.equal(bad.statusCode, 400, 'malformed JSON is still refused')
})

t.test('errors are never cached, and those Node answers itself carry a request id too', async (t) => {
  const app = service(t)
  const notFound = await app.inject({ url: '/nowhere' })
  t.equal(notFound.headers['cache-control'], 'no-store', '404')
  const invalid = await app.inject({ method: 'POST', url: '/items/1', payload: { title: 1 } })
  t.equal(invalid.statusCode, 400)
  t.equal(invalid.headers['cache-control'], 'no-store', '400')

  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as net.AddressInfo).port
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write('FOO /health HTTP/1.1\r\nHost: x\r\n\r\n'))
    let data = ''
    socket.on('data', (d) => (data += d))
    socket.on('end', () => resolve(data))
    socket.on('error', reject)
  })
  t.match(raw, /^HTTP\/1\.1 400 /, 'a malformed request is a 400')
  t.match(raw, /\r\nx-request-id: [A-Za-z0-9._:-]+\r\n/i, 'with a request id')
  t.match(raw, /"error_code":"VALIDATION_ERROR"/)
})
