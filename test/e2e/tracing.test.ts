/**
 * OpenTelemetry end to end: the real processes (launcher, gateway,
 * auth-service, task-service, PostgreSQL) export their spans over OTLP/HTTP
 * to a receiver this test runs, which decodes what they send. One task
 * creation through the gateway is one trace: the client's traceparent is its
 * root's parent, gateway -> task-service -> database in parent/child order,
 * and the trace id is on the log lines of the request. An account deletion's
 * purge, delivered later through the outbox and the internal listener, is
 * in the deletion's trace.
 */
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage } from 'node:http'
import { gunzipSync } from 'node:zlib'
import { randomBytes, randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { call, startCluster } from './cluster.js'

const databaseUrl = process.env.TEST_DATABASE_URL!

interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  startTimeUnixNano: string
  endTimeUnixNano: string
  attributes?: { key: string; value: Record<string, unknown> }[]
  links?: { traceId: string; spanId: string }[]
}
interface Received extends OtlpSpan {
  service: string
}

/** A minimal OTLP/HTTP traces receiver: JSON (the exporter's default), gzip or not. */
async function otlpReceiver(t: Pick<Test, 'teardown'>) {
  const spans: Received[] = []
  const contentTypes = new Set<string>()
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      let body = Buffer.concat(chunks)
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body)
      contentTypes.add(String(req.headers['content-type']))
      if (req.url !== '/v1/traces' || req.method !== 'POST') {
        res.writeHead(404).end()
        return
      }
      const data = JSON.parse(body.toString('utf8')) as {
        resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[]
      }
      for (const rs of data.resourceSpans) {
        const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '?'
        for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, service })
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, contentTypes }
}

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes?.find((a) => a.key === key)?.value
  return v === undefined ? undefined : (v.stringValue ?? v.intValue ?? v.doubleValue ?? v.boolValue)
}

async function until<T>(what: string, fn: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = fn()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** The trace as an indented tree with durations: printed for the README's example. */
function render(spans: Received[]): string {
  const byParent = new Map<string | undefined, Received[]>()
  const ids = new Set(spans.map((s) => s.spanId))
  for (const s of spans) {
    const p = s.parentSpanId && ids.has(s.parentSpanId) ? s.parentSpanId : undefined
    byParent.set(p, [...(byParent.get(p) ?? []), s])
  }
  const lines: string[] = []
  const walk = (parent: string | undefined, depth: number) => {
    const children = (byParent.get(parent) ?? []).sort((a, b) => Number(BigInt(a.startTimeUnixNano) - BigInt(b.startTimeUnixNano)))
    for (const s of children) {
      const ms = Number(BigInt(s.endTimeUnixNano) - BigInt(s.startTimeUnixNano)) / 1e6
      const extra = ['tollgate.token.cache', 'tollgate.rate_limit.policy', 'tollgate.upstream.ttfb_ms', 'http.response.status_code', 'server.address']
        .map((k) => (attr(s, k) !== undefined ? `${k.split('.').pop()}=${attr(s, k)}` : ''))
        .filter(Boolean)
        .join(' ')
      lines.push(`${'  '.repeat(depth)}${s.service}: ${s.name}  ${ms.toFixed(2)} ms${extra ? `  (${extra})` : ''}`)
      walk(s.spanId, depth + 1)
    }
  }
  walk(undefined, 0)
  return lines.join('\n')
}

t.test('one task creation through the gateway is one trace: gateway -> task-service -> database', async (t) => {
  const receiver = await otlpReceiver(t)
  const cluster = await startCluster(t, {
    DATABASE_URL: databaseUrl,
    LOG_LEVEL: 'info',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '100',
    OUTBOX_POLL_MS: '200',
  })
  const { url } = cluster
  const email = `trace-${randomUUID()}@example.com`
  const user = (await call(url, 'POST', '/api/auth/signup', { email, password: 'SecurePass123!' })).json
  const token = (await call(url, 'POST', '/api/auth/signin', { email, password: 'SecurePass123!' })).json.token
  // Once so that the token is in the gateway's cache; the traced request then shows a hit.
  t.equal((await call(url, 'GET', `/api/${user.id}/tasks`, undefined, token)).status, 200)

  const traceId = randomBytes(16).toString('hex')
  const clientSpan = randomBytes(8).toString('hex')
  const res = await fetch(`${url}/api/${user.id}/tasks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', traceparent: `00-${traceId}-${clientSpan}-01`, tracestate: 'client=1' },
    body: JSON.stringify({ title: 'traced' }),
  })
  t.equal(res.status, 201)

  const inTrace = () => receiver.spans.filter((s) => s.traceId === traceId)
  // Every span of the request has been exported once the database spans and the gateway's server span are in.
  await until('the whole trace', () => {
    const spans = inTrace()
    return spans.some((s) => s.service === 'gateway' && s.kind === 2) && spans.some((s) => s.service === 'task-service' && s.kind === 2) &&
      spans.some((s) => attr(s, 'db.system.name') === 'postgresql')
      ? true
      : undefined
  })
  // And every span the assertions below look at (spans of one request may come in different export batches);
  // past the deadline the assertions say what is missing.
  await until('the spans of the request', () => {
    const spans = inTrace()
    const has = (p: (s: Received) => boolean) => spans.some(p)
    return has((s) => s.service === 'gateway' && s.name === 'token check') &&
      has((s) => s.service === 'gateway' && s.name === 'rate limit') &&
      has((s) => s.service === 'gateway' && s.kind === 3) &&
      has((s) => s.service === 'task-service' && /^INSERT tasks/.test(s.name))
      ? true
      : undefined
  }).catch(() => {})
  const spans = inTrace()
  t.ok(receiver.contentTypes.has('application/json'), 'OTLP/HTTP with the JSON encoding')
  t.comment(`trace ${traceId}:\n${render(spans)}`)

  const byId = new Map(spans.map((s) => [s.spanId, s]))
  const parentOf = (s: OtlpSpan) => (s.parentSpanId ? byId.get(s.parentSpanId) : undefined)
  const gatewayServer = spans.find((s) => s.service === 'gateway' && s.kind === 2)!
  t.equal(gatewayServer.parentSpanId, clientSpan, "the gateway's request span is the child of the client's traceparent")
  t.equal(gatewayServer.name, 'POST /api/:user_id/tasks', 'named by its route')
  t.equal(attr(gatewayServer, 'http.route'), '/api/:user_id/tasks')
  t.equal(Number(attr(gatewayServer, 'http.response.status_code')), 201, 'with its status')

  const tokenCheck = spans.find((s) => s.service === 'gateway' && s.name === 'token check')
  t.ok(tokenCheck, 'a token check span')
  t.equal(tokenCheck && parentOf(tokenCheck), gatewayServer, 'child of the request')
  t.equal(tokenCheck && attr(tokenCheck, 'tollgate.token.cache'), 'hit', 'answered from the cache')
  const limits = spans.filter((s) => s.service === 'gateway' && s.name === 'rate limit')
  t.ok(limits.length >= 1, `rate limit spans (${limits.map((s) => attr(s, 'tollgate.rate_limit.policy')).join(', ')})`)
  t.ok(limits.every((s) => parentOf(s) === gatewayServer), 'children of the request')

  const upstreamCall = spans.find((s) => s.service === 'gateway' && s.kind === 3)!
  t.ok(upstreamCall, 'an upstream call span')
  t.equal(parentOf(upstreamCall), gatewayServer, 'child of the request')
  t.equal(attr(upstreamCall, 'tollgate.upstream'), 'tasks')
  t.match(String(attr(upstreamCall, 'server.address')), /^127\.0\.0\.1:\d+$/, 'the target it went to')
  t.ok(Number(attr(upstreamCall, 'tollgate.upstream.ttfb_ms')) > 0, 'time to first byte')

  const taskServer = spans.find((s) => s.service === 'task-service' && s.kind === 2)!
  t.equal(parentOf(taskServer), upstreamCall, "the task-service's request span is the child of the gateway's upstream call")
  t.equal(taskServer.name, 'POST /api/:user_id/tasks')
  const queries = spans.filter((s) => s.service === 'task-service' && attr(s, 'db.system.name') === 'postgresql')
  t.ok(queries.length >= 1, `${queries.length} database span(s): ${queries.map((q) => q.name).join(', ')}`)
  t.ok(queries.every((q) => parentOf(q) === taskServer), 'children of the task-service request')
  t.ok(queries.some((q) => /^INSERT tasks/.test(q.name)), 'the INSERT among them')
  t.equal(new Set(spans.map((s) => s.traceId)).size, 1, 'one trace id throughout')

  // The trace id is on the log lines of the request, in both processes (stdout is flushed every second).
  await until('log lines with the trace id', () => {
    const lines = cluster.output().split('\n').filter((l) => l.includes(`"trace_id":"${traceId}"`))
    const services = new Set(lines.map((l) => (JSON.parse(l) as { service?: string }).service))
    return services.has('gateway') && services.has('task-service') ? true : undefined
  })
  t.pass('the gateway and the task-service logged the request with its trace id')

  // An account deletion: its purge, delivered through the outbox and the internal listener, joins its trace.
  const delTrace = randomBytes(16).toString('hex')
  const del = await fetch(`${url}/api/auth/me`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${token}`, traceparent: `00-${delTrace}-${randomBytes(8).toString('hex')}-01` },
  })
  t.equal(del.status, 204)
  const purge = await until('the purge in the deletion trace', () =>
    receiver.spans.find((s) => s.traceId === delTrace && s.service === 'task-service' && attr(s, 'db.system.name') === 'postgresql' && /purge_user_tasks/.test(String(attr(s, 'db.query.text')))),
  )
  const chainOf = () => {
    const byId = new Map(receiver.spans.filter((s) => s.traceId === delTrace).map((s) => [s.spanId, s]))
    const chain: string[] = []
    for (let s: Received | undefined = purge; s; s = s.parentSpanId ? byId.get(s.parentSpanId) : undefined) chain.push(`${s.service}: ${s.name}`)
    return chain
  }
  // Until the purge's ancestry reaches the deletion request and the outbox write is in (they may come in later
  // export batches than the purge); past the deadline the assertions say what is missing.
  await until('the deletion trace', () =>
    chainOf().length >= 6 && receiver.spans.some((s) => s.traceId === delTrace && s.service === 'auth-service' && s.name === 'INSERT outbox') ? true : undefined,
  ).catch(() => {})
  const delSpans = receiver.spans.filter((s) => s.traceId === delTrace)
  t.comment(`deletion trace ${delTrace}:\n${render(delSpans)}`)
  const chain = chainOf()
  t.same(
    chain.slice(0, 6),
    [
      'task-service: SELECT',
      'task-service: DELETE /internal/users/:user_id/tasks',
      'gateway: DELETE tasks',
      'gateway: DELETE /internal/users/:user_id/tasks',
      'auth-service: outbox deliver purge-tasks',
      'auth-service: DELETE /api/auth/me',
    ],
    'purge query <- task-service <- internal listener <- outbox delivery <- the deletion request',
  )
  const outboxInsert = delSpans.find((s) => s.service === 'auth-service' && s.name === 'INSERT outbox')
  t.ok(outboxInsert, 'the outbox row was written in the deletion trace')
})
