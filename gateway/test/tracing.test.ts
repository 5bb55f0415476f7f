/**
 * The gateway's side of tracing: off (no endpoint) it installs nothing and
 * the client's traceparent reaches the service untouched; on, the service
 * gets the gateway's own span as parent in the client's trace (tracestate
 * kept), the client's sampling decision is honoured, the token check says
 * cache miss then hit, and the request's log lines carry the trace id; the
 * internal listener's token check and limits are spans too.
 * Spans are read from a real OTLP/HTTP receiver.
 */
import t, { type Test } from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { serviceTokenKey, signServiceToken } from '@tollgate/common'
import { buildGateway, logCapture, SECRET, startUpstream, subOf, token } from './helper.js'

interface Span {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  attributes?: { key: string; value: { stringValue?: string; intValue?: string | number } }[]
}

async function receiver(t: Pick<Test, 'teardown'>) {
  const spans: Span[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { resourceSpans: { scopeSpans: { spans: Span[] }[] }[] }
      for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans)
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans }
}
const traceparent = (traceId: string, flags = '01') => `00-${traceId}-${randomBytes(8).toString('hex')}-${flags}`
const attr = (s: Span, key: string) => s.attributes?.find((a) => a.key === key)?.value.stringValue

t.test('tracing off: nothing installed, the client trace headers pass through untouched', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url })
  t.equal(gw.tracing, null, 'no tracing')
  t.notOk(gw.hasRequestDecorator('traceSpan'), 'no request span slot')
  const jwt = await token()
  const tp = traceparent(randomBytes(16).toString('hex'))
  const res = await gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}`, traceparent: tp, tracestate: 'vendor=1' } })
  t.equal(res.statusCode, 200)
  t.equal(up.seen[0]!.headers.traceparent, tp, 'traceparent as the client sent it')
  t.equal(up.seen[0]!.headers.tracestate, 'vendor=1')
})

t.test('tracing on: the service gets the gateway span as parent, in the client trace', async (t) => {
  const otlp = await receiver(t)
  const up = await startUpstream(t)
  const logs = logCapture()
  const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url, LOG_LEVEL: 'info', OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url }, { logStream: logs.stream })
  t.ok(gw.tracing, 'tracing on')
  const jwt = await token()
  const traceId = randomBytes(16).toString('hex')
  const tp = traceparent(traceId)
  const call = (headers: Record<string, string>) => gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}`, ...headers } })
  t.equal((await call({ traceparent: tp, tracestate: 'vendor=1' })).statusCode, 200)
  t.equal((await call({ traceparent: traceparent(traceId) })).statusCode, 200)

  const sent = up.seen[0]!.headers.traceparent as string
  const [, sentTrace, sentParent, sentFlags] = sent.split('-')
  t.equal(sentTrace, traceId, "upstream: the client's trace")
  t.not(sentParent, tp.split('-')[2], "upstream: the gateway's span as parent, not the client's")
  t.equal(sentFlags, '01', 'sampled')
  t.equal(up.seen[0]!.headers.tracestate, 'vendor=1', 'tracestate kept')

  await gw.tracing!.flush()
  const upstreamCall = otlp.spans.find((s) => s.spanId === sentParent)
  t.ok(upstreamCall, 'the span named upstream was exported')
  t.equal(upstreamCall?.name, 'GET tasks')
  const checks = otlp.spans.filter((s) => s.name === 'token check').map((s) => attr(s, 'tollgate.token.cache'))
  t.same(checks, ['miss', 'hit'], 'token check: a miss, then a hit from the cache')
  const done = logs.lines.filter((l) => l.msg === 'request completed')
  t.equal(done.length, 2)
  t.ok(done.every((l) => l.trace_id === traceId && typeof l.span_id === 'string'), 'the access lines carry the trace id')

  // A client that did not sample its trace: nothing recorded, and the decision goes on upstream.
  const before = otlp.spans.length
  const unsampled = randomBytes(16).toString('hex')
  t.equal((await call({ traceparent: traceparent(unsampled, '00') })).statusCode, 200)
  await gw.tracing!.flush()
  t.equal(otlp.spans.length, before, 'no span exported for an unsampled trace')
  const last = (up.seen.at(-1)!.headers.traceparent as string).split('-')
  t.same([last[1], last[3]], [unsampled, '00'], 'upstream: same trace, not sampled')
})

t.test('tracing on: an id the gateway mints is the trace id, sampled or not, on every log line and upstream', async (t) => {
  for (const ratio of ['0', '1']) {
    const otlp = await receiver(t)
    const up = await startUpstream(t)
    const logs = logCapture()
    const gw = await buildGateway(
      t,
      { TASK_SERVICE_URL: up.url, LOG_LEVEL: 'info', OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: ratio },
      { logStream: logs.stream },
    )
    const jwt = await token()
    const ids = new Set<string>()
    for (let i = 0; i < 3; i++) {
      const res = await gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}` } })
      t.equal(res.statusCode, 200)
      const id = res.headers['x-request-id'] as string
      t.match(id, /^[0-9a-f]{32}$/, `ratio ${ratio}: a minted request id is a trace id`)
      ids.add(id)
      const seen = up.seen.at(-1)!.headers
      const [, traceId, , flags] = (seen.traceparent as string).split('-')
      t.equal(traceId, id, `ratio ${ratio}: the trace the upstream continues is the request id`)
      t.equal(flags, ratio === '1' ? '01' : '00')
      t.equal(seen['x-request-id'], id, 'the same id upstream')
      const line = logs.lines.filter((l) => l.msg === 'request completed').at(-1)!
      t.equal(line.reqId, id, 'the access line carries it')
    }
    t.equal(ids.size, 3, 'each request its own')
    await gw.tracing!.flush()
    if (ratio === '1') {
      const roots = otlp.spans.filter((s) => s.parentSpanId === undefined || s.parentSpanId === '')
      t.same(new Set(roots.map((s) => s.traceId)), ids, 'the recorded traces are the request ids')
    } else {
      t.equal(otlp.spans.length, 0, 'nothing recorded at 0')
    }
    // A client's own request id is kept, and is no trace id; a client's own trace goes on under a fresh request id.
    const given = await gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}`, 'x-request-id': 'client-req-1' } })
    t.equal(given.headers['x-request-id'], 'client-req-1')
    t.match((up.seen.at(-1)!.headers.traceparent as string).split('-')[1], /^[0-9a-f]{32}$/, 'a new trace of its own')
    const clientTrace = randomBytes(16).toString('hex')
    const continued = await gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { authorization: `Bearer ${jwt}`, traceparent: traceparent(clientTrace, '00') } })
    t.equal((up.seen.at(-1)!.headers.traceparent as string).split('-')[1], clientTrace, "the client's trace")
    t.not(continued.headers['x-request-id'], clientTrace, 'a request id of its own, not the trace id')
  }
})

t.test('tracing on: a refusal and a failed upstream call are recorded as what they were', async (t) => {
  const otlp = await receiver(t)
  // Nothing listens on port 1: the upstream call fails to connect.
  const gw = await buildGateway(t, { TASK_SERVICE_URL: 'http://127.0.0.1:1', OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url })
  const jwt = await token()
  const traced = (headers: Record<string, string>) => {
    const traceId = randomBytes(16).toString('hex')
    return { traceId, call: gw.inject({ url: `/api/${subOf(jwt)}/tasks`, headers: { traceparent: traceparent(traceId), ...headers } }) }
  }

  const refused = traced({ authorization: 'Bearer not-a-token' })
  t.equal((await refused.call).statusCode, 401)
  const failed = traced({ authorization: `Bearer ${jwt}` })
  t.equal((await failed.call).statusCode, 502)
  await gw.tracing!.flush()

  type Exported = Span & { status?: { code?: number } }
  const inTrace = (id: string) => (otlp.spans as Exported[]).filter((s) => s.traceId === id)
  const check = inTrace(refused.traceId).find((s) => s.name === 'token check')
  t.ok(check, 'the token check span of the refused request')
  t.equal(attr(check!, 'tollgate.outcome'), 'INVALID_TOKEN', "its outcome: the refusal's error code")
  t.equal(Number(check!.attributes!.find((a) => a.key === 'http.response.status_code')?.value.intValue), 401)
  t.not(check!.status?.code, 2, "a client's mistake is no span error")
  t.notOk(inTrace(refused.traceId).some((s) => s.name === 'GET tasks'), 'no upstream call for it')

  const call = inTrace(failed.traceId).find((s) => s.name === 'GET tasks')
  t.ok(call, 'the upstream call span of the failed request')
  t.equal(call!.status?.code, 2, 'marked as an error')
  t.equal(attr(call!, 'server.address'), '127.0.0.1:1', 'naming the target it tried')
  t.equal(attr(inTrace(failed.traceId).find((s) => s.name === 'token check')!, 'tollgate.outcome'), 'ok', 'its token check passed')
})

t.test('tracing on: the internal listener records its token check and limit, children of its request span', async (t) => {
  const otlp = await receiver(t)
  const tasks = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: tasks.url, OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url })
  const service = (name: string) => signServiceToken(serviceTokenKey(SECRET), { service: name, scope: ['tasks:purge'], issuer: 'tollgate', ttlSeconds: 300 }).then((r) => r.token)
  const purge = async (name: string) => {
    const traceId = randomBytes(16).toString('hex')
    const res = await gw.internal.inject({ method: 'DELETE', url: '/internal/users/u-1/tasks', headers: { authorization: `Bearer ${await service(name)}`, traceparent: traceparent(traceId) } })
    return { traceId, status: res.statusCode }
  }
  const allowed = await purge('auth-service')
  t.equal(allowed.status, 200)
  const denied = await purge('task-service') // signed, but not on the allowlist for this route
  t.equal(denied.status, 403)
  await gw.tracing!.flush()

  type Exported = Span & { status?: { code?: number } }
  const inTrace = (id: string) => (otlp.spans as Exported[]).filter((s) => s.traceId === id)
  const spans = inTrace(allowed.traceId)
  const root = spans.find((s) => s.name === 'DELETE /internal/users/:user_id/tasks')
  t.ok(root, "the internal request's span")
  const check = spans.find((s) => s.name === 'token check')
  const limit = spans.find((s) => s.name === 'rate limit')
  const call = spans.find((s) => s.name === 'DELETE tasks')
  t.ok(check && limit && call, 'token check, rate limit and upstream call spans')
  for (const child of [check, limit, call]) t.equal(child?.parentSpanId, root?.spanId, `${child?.name}: child of the request span`)
  t.equal(attr(check!, 'tollgate.access'), 'service')
  t.equal(attr(check!, 'tollgate.outcome'), 'ok')
  t.equal(attr(limit!, 'tollgate.rate_limit.policy'), 'service')
  t.equal(attr(limit!, 'tollgate.outcome'), 'ok')

  const refused = inTrace(denied.traceId).find((s) => s.name === 'token check')
  t.equal(refused && attr(refused, 'tollgate.outcome'), 'FORBIDDEN', "a service outside the allowlist: the refusal's code")
  t.notOk(inTrace(denied.traceId).some((s) => s.name === 'rate limit' || s.name === 'DELETE tasks'), 'no limit counted and no upstream call after the refusal')
})
