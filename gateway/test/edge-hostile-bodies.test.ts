/**
 * Hostile bodies and framework errors at the gateway (issue 12, items 8-10):
 * deep nesting refused before any full parse, sign-in and sign-up shapes
 * checked at the edge, oversized uploads (chunked or not) answered 413 so a
 * plain Node client reads it, and router errors in the envelope.
 */
import t from 'tap'
import http from 'node:http'
import { writeThenRead } from '@tollgate/common/testing'
import { buildGateway, startUpstream, subOf, token } from './helper.js'

const NESTED = '['.repeat(520_000) + ']'.repeat(520_000)
const NESTED_OBJECT = '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000)
const TWO_MIB = 2 * 1024 * 1024

async function listening(t: Parameters<typeof buildGateway>[0]) {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url, AUTH_SERVICE_URL: up.url })
  await gw.listen({ port: 0, host: '127.0.0.1' })
  const port = (gw.server.address() as { port: number }).port
  return { gw, up, port }
}

/** Calls of JSON.parse and JSON.stringify on anything as big as the hostile body, while `fn` runs. */
async function bigJsonCalls(fn: () => Promise<unknown>): Promise<number> {
  const { parse, stringify } = JSON
  let calls = 0
  JSON.parse = ((text: string, reviver?: never) => {
    if (typeof text === 'string' && text.length > 100_000) calls++
    return parse(text, reviver)
  }) as typeof JSON.parse
  JSON.stringify = ((value: unknown, ...rest: never[]) => {
    if (Array.isArray(value) || (value && typeof value === 'object' && 'a' in value)) calls++
    return stringify(value, ...rest)
  }) as typeof JSON.stringify
  try {
    await fn()
  } finally {
    JSON.parse = parse
    JSON.stringify = stringify
  }
  return calls
}

interface Answer {
  status?: number
  body: string
  headers: http.IncomingHttpHeaders
  error?: string
  sent: number
}

/**
 * An ordinary Node client: http.request writing `size` bytes in 64 KiB chunks
 * (with Content-Length, or chunked without it), or without end when size is
 * Infinity. Resolves with the answer it read, or the error it failed with.
 */
function upload(port: number, path: string, size: number, opts: { chunked: boolean; headers?: Record<string, string> }): Promise<Answer> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { 'content-type': 'application/json', ...opts.headers }
    if (!opts.chunked) headers['content-length'] = String(size)
    const req = http.request({ port, host: '127.0.0.1', method: 'POST', path, headers, agent: false })
    const out: Answer = { body: '', headers: {}, sent: 0 }
    let settled = false
    const settle = () => {
      if (settled) return
      settled = true
      resolve(out)
    }
    req.on('response', (res) => {
      out.status = res.statusCode
      out.headers = res.headers
      res.setEncoding('utf8')
      res.on('data', (d: string) => (out.body += d))
      res.on('end', settle)
      res.on('error', (e: NodeJS.ErrnoException) => {
        out.error = e.code ?? e.message
        settle()
      })
    })
    req.on('error', (e: NodeJS.ErrnoException) => {
      out.error ??= e.code ?? e.message
      // An error after the whole answer was read changes nothing for the client.
      if (out.status === undefined) settle()
    })
    req.on('close', () => setTimeout(settle, 50))
    const chunk = Buffer.alloc(64 * 1024, 'a')
    const write = () => {
      while (out.sent < size && !req.destroyed) {
        out.sent += chunk.length
        if (!req.write(chunk)) {
          req.once('drain', write)
          return
        }
      }
      if (out.sent >= size) req.end()
    }
    write()
  })
}

const envelopeOf = (body: string) => JSON.parse(body) as { detail: string; error_code: string; status_code: number }

t.test('item 8: deeply nested JSON on sign-in and sign-up is 400 VALIDATION_ERROR, never parsed, never proxied', async (t) => {
  const { gw, up } = await listening(t)
  for (const url of ['/api/auth/signin', '/api/auth/signup']) {
    for (const payload of [NESTED, NESTED_OBJECT]) {
      let res: Awaited<ReturnType<typeof gw.inject>> | undefined
      const calls = await bigJsonCalls(async () => {
        res = await gw.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload })
      })
      t.equal(res!.statusCode, 400, `${url}: 400`)
      t.equal(res!.json().error_code, 'VALIDATION_ERROR')
      t.equal(res!.json().status_code, 400)
      t.equal(calls, 0, `${url}: no full JSON.parse or JSON.stringify of the nested body`)
    }
  }
  t.equal(up.seen.length, 0, 'nothing reached the service')
})

t.test('item 8: sign-in and sign-up bodies are checked against their schema at the gateway', async (t) => {
  const { gw, up } = await listening(t)
  const bad: Array<[string, unknown]> = [
    ['/api/auth/signin', [{ email: 'a@example.com', password: 'x' }]],
    ['/api/auth/signin', { email: 'a@example.com', password: { $ne: '' } }],
    ['/api/auth/signin', { email: 'a@example.com' }],
    ['/api/auth/signin', { email: `${'a'.repeat(250)}@example.com`, password: 'secret-password' }],
    ['/api/auth/signin', { email: 'a@example.com', password: 'p'.repeat(1025) }],
    ['/api/auth/signin', '"just a string"'],
    ['/api/auth/signin', 'null'],
    ['/api/auth/signup', { email: 'a@example.com', password: 'short' }],
    ['/api/auth/signup', { email: 'a@example.com', password: 'long-enough-password', name: 'n'.repeat(101) }],
    ['/api/auth/signup', { email: 'not-an-email', password: 'long-enough-password' }],
    ['/api/auth/signup', { email: 'a@example.com', password: 'long-enough-password', name: ['n'] }],
  ]
  for (const [url, body] of bad) {
    const payload = typeof body === 'string' ? body : JSON.stringify(body)
    const res = await gw.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload })
    t.equal(res.statusCode, 400, `${url} ${JSON.stringify(body).slice(0, 60)}`)
    t.equal(res.json().error_code, 'VALIDATION_ERROR')
  }
  t.equal(up.seen.length, 0, 'none reached the service')

  // What the service accepts passes: email trimmed and lower-cased as the service would.
  const ok = await gw.inject({ method: 'POST', url: '/api/auth/signup', payload: { email: ' New@Example.com ', password: 'long-enough-password', name: null } })
  t.equal(ok.statusCode, 200)
  t.same(JSON.parse(String(up.seen[0]!.body)), { email: 'new@example.com', password: 'long-enough-password', name: null })
  const signin = await gw.inject({ method: 'POST', url: '/api/auth/signin', payload: { email: 'new@example.com', password: 'x' } })
  t.equal(signin.statusCode, 200)
})

t.test('item 8: a /health probe is answered while 20 nested bodies are refused', async (t) => {
  const { port } = await listening(t)
  const order: string[] = []
  const hostile = Array.from({ length: 20 }, () =>
    fetch(`http://127.0.0.1:${port}/api/auth/signin`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: NESTED }).then(async (r) => {
      order.push(`hostile ${r.status}`)
      return { status: r.status, body: (await r.json()) as { error_code: string } }
    }),
  )
  const probe = fetch(`http://127.0.0.1:${port}/health`).then((r) => {
    order.push(`health ${r.status}`)
    return r.status
  })
  const answers = await Promise.all(hostile)
  t.equal(await probe, 200)
  for (const a of answers) {
    t.equal(a.status, 400)
    t.equal(a.body.error_code, 'VALIDATION_ERROR')
  }
  t.equal(order.length, 21)
  t.notOk(order.some((o) => o.includes('500')), 'no 500')
})

t.test('item 9: oversized uploads, with and without Content-Length, read as 413 by a plain Node client', async (t) => {
  const { port, up } = await listening(t)
  const jwt = await token()
  const routes: Array<[string, string, Record<string, string>]> = [
    ['sign-in (parsed at the gateway)', '/api/auth/signin', {}],
    ['tasks (streamed to the service)', `/api/${subOf(jwt)}/tasks`, { authorization: `Bearer ${jwt}` }],
  ]
  for (const [name, path, headers] of routes) {
    for (const chunked of [false, true]) {
      const a = await upload(port, path, TWO_MIB, { chunked, headers })
      const label = `${name}, ${chunked ? 'chunked' : 'Content-Length'}`
      t.equal(a.status, 413, `${label}: 413 (client error: ${a.error ?? 'none'})`)
      if (a.status === 413) {
        t.same(envelopeOf(a.body), { detail: 'Request body is too large', error_code: 'PAYLOAD_TOO_LARGE', status_code: 413 }, label)
        t.ok(a.headers['x-request-id'], `${label}: request id`)
        t.equal(a.headers['x-content-type-options'], 'nosniff', `${label}: security headers`)
      }
    }
  }
  t.equal(up.seen.length, 0, 'no oversized body reached a service')
})

t.test('item 9: an upload that never ends gets its 413, then the connection is closed after a bound', async (t) => {
  const { port } = await listening(t)
  const jwt = await token()
  for (const path of ['/api/auth/signin', `/api/${subOf(jwt)}/tasks`]) {
    const a = await upload(port, path, Infinity, { chunked: true, headers: { authorization: `Bearer ${jwt}` } })
    t.equal(a.status, 413, `${path}: the 413 was read`)
    t.ok(a.sent < 64 * 1024 * 1024, `${path}: connection closed after ${a.sent} bytes`)
  }
})

t.test('item 9: a chunked upload to a streamed route, written whole before reading, gets 413 and a usable connection', async (t) => {
  const { port, up } = await listening(t)
  const jwt = await token()
  const lines = await writeThenRead(port, { path: `/api/${subOf(jwt)}/tasks`, headers: `Authorization: Bearer ${jwt}\r\n`, size: 3 * 1024 * 1024, chunked: true })
  t.same(lines, ['HTTP/1.1 413 Payload Too Large', 'HTTP/1.1 200 OK'])
  t.equal(up.seen.length, 0, 'the service never took the truncated body')
})

t.test('item 10: router errors are in the envelope with request id and security headers, never echoing the input', async (t) => {
  const { gw } = await listening(t)
  const jwt = await token()
  const auth = { authorization: `Bearer ${jwt}` }
  const cases: Array<[string, number, string, string]> = [
    [`/api/${'q'.repeat(300)}/tasks`, 414, 'URI_TOO_LONG', 'qqqq'],
    ['/api/%zz-marker/tasks', 400, 'VALIDATION_ERROR', 'marker'],
    ['/api/auth/%E0%A4%A-marker', 400, 'VALIDATION_ERROR', 'marker'],
  ]
  for (const [url, status, code, echo] of cases) {
    const res = await gw.inject({ url, headers: { ...auth, 'x-request-id': 'edge-test-1' } })
    t.equal(res.statusCode, status, url.slice(0, 40))
    t.same(Object.keys(res.json()).sort(), ['detail', 'error_code', 'status_code'])
    t.equal(res.json().error_code, code)
    t.equal(res.json().status_code, status)
    t.notMatch(res.body, echo, 'input not echoed')
    t.equal(res.headers['x-request-id'], 'edge-test-1', 'request id')
    t.equal(res.headers['x-content-type-options'], 'nosniff', 'security headers')
    t.match(String(res.headers['content-security-policy']), /default-src 'none'/)
    t.match(String(res.headers['content-type']), /^application\/json/)
  }
})
