/**
 * The conformance suite's harness: the shared upstream (dispatching on
 * `x-case`, recording what reached it), a client that reads an answer to its
 * end or its break, and the runner that plays every case against a subject.
 * The cases themselves are in cases.ts.
 */
import http from 'node:http'
import net from 'node:net'
import { createHash } from 'node:crypto'

export type Tap = {
  test(name: string, fn: (t: Tap) => Promise<void>): Promise<unknown>
  teardown(fn: () => unknown): void
  equal(found: unknown, wanted: unknown, message?: string): void
  not(found: unknown, wanted: unknown, message?: string): void
  same(found: unknown, wanted: unknown, message?: string): void
  match(found: unknown, pattern: unknown, message?: string): void
  ok(value: unknown, message?: string): void
}

export const UPSTREAM_TIMEOUT_MS = 800

export interface Subject {
  name: 'forwarder' | 'http-proxy'
  port: number
  /** A path the subject proxies unchanged for GET, HEAD, PUT, DELETE (`/api/<user>/tasks/<id>`). */
  item(id: string): string
  /** A path the subject proxies unchanged for GET and POST (`/api/<user>/tasks`). */
  collection: string
  /** What the subject needs to let a request through (a bearer token for the gateway). */
  headers: Record<string, string>
}

export interface Seen {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  /** The request body, for handlers that read it. */
  body: Buffer | null
  /** How the upstream's answer ended: sent whole, cut short by the proxy, or still open. */
  outcome: 'open' | 'finished' | 'cancelled'
}

export interface ConformanceUpstream {
  url: string
  /** Requests that reached the upstream, by case. */
  seen(kase: string): Seen[]
  /** Answer the requests held by the `hold` case. */
  release(): void
  /** Per-case scratch values the upstream handlers share with the exchange. */
  notes: Record<string, number>
}

export type UpstreamHandler = (req: http.IncomingMessage, res: http.ServerResponse, seen: Seen, up: ConformanceUpstream) => void

export interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
  /** Set when the answer did not arrive whole (reset, premature close). */
  error: string | null
  /** Interim (1xx) statuses the client saw. */
  informational: number[]
  /** Anything else an exchange observed. */
  extra: Record<string, unknown>
}

export type Check = (t: Tap, answer: Answer, up: ConformanceUpstream) => void

export interface Case {
  name: string
  /** The `x-case` its requests carry: the upstream answers them with `upstream`. */
  key: string
  /** How the upstream answers this case's requests (they carry `x-case: <name>`); default: read the body, answer 200. */
  upstream?: UpstreamHandler
  exchange: (s: Subject, up: ConformanceUpstream) => Promise<Answer>
  /** One expectation for both, or each one's with the reason they differ. */
  expect: Check | { forwarder: Check; 'http-proxy': Check; why: string }
}

export const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export async function until(condition: () => boolean, maxMs = 3000): Promise<boolean> {
  const end = Date.now() + maxMs
  while (!condition()) {
    if (Date.now() > end) return false
    await sleep(5)
  }
  return true
}

export function readAll(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', () => resolve(Buffer.concat(chunks)))
  })
}

interface SendOptions {
  kase: string
  method?: string
  path?: string
  headers?: http.OutgoingHttpHeaders
  body?: Buffer | string
  /** Sent chunked, one write each. */
  chunks?: Buffer[]
}

/** One request on its own connection, read to the end (or to the break). */
export function send(s: Subject, o: SendOptions): Promise<Answer> {
  return new Promise((resolve) => {
    const informational: number[] = []
    const headers: http.OutgoingHttpHeaders = { ...s.headers, 'x-case': o.kase, ...o.headers }
    if (o.chunks) headers['transfer-encoding'] = 'chunked'
    const req = http.request({ host: '127.0.0.1', port: s.port, method: o.method ?? 'GET', path: o.path ?? s.item(o.kase), headers, agent: false })
    let settled = false
    const done = (a: Partial<Answer>) => {
      if (settled) return
      settled = true
      resolve({ status: 0, headers: {}, body: Buffer.alloc(0), error: null, informational, extra: {}, ...a })
    }
    req.on('information', (info) => informational.push(info.statusCode))
    req.on('error', (err) => done({ error: err.message }))
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => done({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', (err) => done({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), error: err.message }))
      res.on('close', () => done({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), error: 'closed before the end' }))
    })
    if (o.chunks) for (const c of o.chunks) req.write(c)
    req.end(o.body)
  })
}

/** Bytes written on a raw socket, and everything that comes back until the subject closes it (or `waitMs`). */
export function rawExchange(port: number, request: string, waitMs: number): Promise<{ text: string; closed: boolean }> {
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

export const answer = (a: Partial<Answer>): Answer => ({ status: 0, headers: {}, body: Buffer.alloc(0), error: null, informational: [], extra: {}, ...a })

export function answerText(res: http.ServerResponse, body = 'ok'): void {
  res.writeHead(200, { 'content-type': 'text/plain' })
  res.end(body)
}

/** The shared upstream: dispatches on `x-case`, records what reached it. */
export async function startConformanceUpstream(t: Tap, cases: Case[]): Promise<ConformanceUpstream> {
  const byCase = new Map<string, Seen[]>()
  const held: Array<() => void> = []
  const handlers = new Map<string, UpstreamHandler>()
  for (const c of cases) if (c.upstream) handlers.set(c.key, c.upstream)
  const up: ConformanceUpstream = {
    url: '',
    seen: (kase) => byCase.get(kase) ?? [],
    release: () => held.splice(0).forEach((answer) => answer()),
    notes: {},
  }
  const server = http.createServer((req, res) => {
    const kase = req.headers['x-case']
    if (typeof kase !== 'string') {
      res.statusCode = 404 // the gateway's own reads (/openapi.json)
      return res.end()
    }
    const seen: Seen = { method: req.method!, url: req.url!, headers: req.headers, body: null, outcome: 'open' }
    if (!byCase.has(kase)) byCase.set(kase, [])
    byCase.get(kase)!.push(seen)
    res.on('close', () => (seen.outcome = res.writableFinished ? 'finished' : 'cancelled'))
    if (kase === 'hold') return held.push(() => res.end('held'))
    const handler = handlers.get(kase)
    if (handler) handler(req, res, seen, up)
    else answerText(res)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  up.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  return up
}

/** Run every case against one subject. */
export async function runConformance(
  t: Tap,
  cases: Case[],
  subject: (t: Tap, upstream: ConformanceUpstream) => Promise<Subject>,
): Promise<void> {
  const up = await startConformanceUpstream(t, cases)
  const s = await subject(t, up)
  for (const c of cases) {
    const differs = 'why' in c.expect ? ' [differs: see why in cases.ts]' : ''
    await t.test(`${c.name}${differs}`, async (t) => {
      const a = await c.exchange(s, up)
      const check = 'why' in c.expect ? c.expect[s.name] : c.expect
      check(t, a, up)
    })
  }
}
