/**
 * Tracing's configuration, by the OpenTelemetry SDK's own variable names:
 * off unless an endpoint is set (or when OTEL_SDK_DISABLED), the traces URL
 * as given, the service name, the sampler; a wrong sampler is one line
 * naming the choices. Spans are read from a real OTLP/HTTP receiver.
 */
import t from 'tap'
import { Agent, createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Type } from 'typebox'
import type { FastifyRequest } from 'fastify'
import { ConfigError, createService, loadConfig, startTracing, tracingConfig } from '../src/index.js'

const schema = Type.Object(tracingConfig)

async function receiver(t: { teardown(fn: () => unknown): void }) {
  const got: { path: string; service: string; names: string[] }[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: { name: string }[] }[] }[]
      }
      for (const rs of body.resourceSpans) {
        const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '?'
        got.push({ path: req.url ?? '', service, names: rs.scopeSpans.flatMap((s) => s.spans.map((x) => x.name)) })
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got }
}

t.test('off unless an endpoint is set, and off when OTEL_SDK_DISABLED', async (t) => {
  t.equal(await startTracing(loadConfig(schema, {}), 'x'), null, 'no endpoint: off')
  t.equal(await startTracing(loadConfig(schema, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_SDK_DISABLED: 'true' }), 'x'), null, 'disabled: off')
  const defaults = loadConfig(schema, {})
  t.equal(defaults.OTEL_TRACES_SAMPLER, 'parentbased_always_on')
  t.equal(defaults.OTEL_TRACES_SAMPLER_ARG, 1)
})

t.test('a wrong value is one line naming the variable', async (t) => {
  t.throws(() => loadConfig(schema, { OTEL_TRACES_SAMPLER: 'sometimes' }), new ConfigError('OTEL_TRACES_SAMPLER must be one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio'))
  t.throws(() => loadConfig(schema, { OTEL_TRACES_SAMPLER_ARG: '2' }), /OTEL_TRACES_SAMPLER_ARG must be <= 1/)
  t.throws(() => loadConfig(schema, { OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4318' }), /OTEL_EXPORTER_OTLP_ENDPOINT must match pattern/)
})

t.test('spans go to <endpoint>/v1/traces under the default service name, or to the traces URL as given', async (t) => {
  const otlp = await receiver(t)
  const a = (await startTracing(loadConfig(schema, { OTEL_EXPORTER_OTLP_ENDPOINT: `${otlp.url}/` }), 'task-service'))!
  a.tracer.startSpan('one').end()
  await a.shutdown()
  const b = (await startTracing(loadConfig(schema, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${otlp.url}/custom/traces`, OTEL_SERVICE_NAME: 'named' }), 'task-service'))!
  b.tracer.startSpan('two').end()
  await b.shutdown()
  t.same(otlp.got, [
    { path: '/v1/traces', service: 'task-service', names: ['one'] },
    { path: '/custom/traces', service: 'named', names: ['two'] },
  ])
})

t.test('the ratio sampler: 0 records nothing, 1 everything', async (t) => {
  const otlp = await receiver(t)
  const none = (await startTracing(loadConfig(schema, { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }), 's'))!
  for (let i = 0; i < 20; i++) none.tracer.startSpan('dropped').end()
  await none.shutdown()
  const all = (await startTracing(loadConfig(schema, { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '1' }), 's'))!
  for (let i = 0; i < 20; i++) all.tracer.startSpan('kept').end()
  await all.shutdown()
  const names = otlp.got.flatMap((g) => g.names)
  t.equal(names.filter((n) => n === 'dropped').length, 0)
  t.equal(names.filter((n) => n === 'kept').length, 20)
})

t.test('an export that fails is a warning in the log, not silence', async (t) => {
  const { createService } = await import('../src/index.js')
  const { Writable } = await import('node:stream')
  const lines: string[] = []
  const logStream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean))
      done()
    },
  })
  // A port nothing listens on.
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const port = (closed.address() as AddressInfo).port
  await new Promise<void>((resolve) => closed.close(() => resolve()))
  const tracing = (await startTracing(loadConfig(schema, { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_BSP_SCHEDULE_DELAY: '50' }), 'svc'))!
  const app = createService({ name: 'svc', logLevel: 'warn', logStream, openapi: false, tracing })
  t.teardown(() => app.close())
  await app.ready()
  tracing.tracer.startSpan('lost').end()
  const deadline = Date.now() + 20_000
  while (!lines.some((l) => /"msg":"tracing: /.test(l)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  const line = lines.find((l) => /"msg":"tracing: /.test(l))
  t.ok(line, `logged: ${line}`)
  t.equal(line && JSON.parse(line).level, 40, 'at warn')
  t.match(line && JSON.parse(line).msg, /^tracing: .*ECONNREFUSED/, 'the reason, in one line')
})

t.test('a client that leaves before the answer: its sampled span ends as 499, once', async (t) => {
  const spans: { name: string; status?: { code?: number }; attributes?: { key: string; value: { intValue?: string | number } }[] }[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { resourceSpans: { scopeSpans: { spans: typeof spans }[] }[] }
      for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans)
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const tracing = (await startTracing(loadConfig(schema, { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }), 's'))!
  const app = createService({ name: 's', logLevel: 'silent', openapi: false, tracing })
  let entered!: () => void
  const inHandler = new Promise<void>((resolve) => (entered = resolve))
  let answer!: () => void
  app.get('/slow', (_request, reply) => {
    entered()
    answer = () => void reply.send({ late: true })
  })
  app.get('/fast', async () => ({ ok: true }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as AddressInfo).port
  const req = request({ port, host: '127.0.0.1', path: '/slow' })
  req.on('error', () => undefined)
  req.end()
  await inHandler
  const closed = new Promise((resolve) => app.server.once('connection', resolve))
  req.destroy()
  await new Promise((resolve) => setTimeout(resolve, 50))
  answer() // the late answer must not end the span a second time
  const ok = await fetch(`http://127.0.0.1:${port}/fast`)
  t.equal(ok.status, 200)
  await closed
  await tracing.flush()
  const slow = spans.filter((s) => s.name === 'GET /slow')
  t.equal(slow.length, 1, 'one span for the abandoned request')
  t.equal(Number(slow[0]?.attributes?.find((a) => a.key === 'http.response.status_code')?.value.intValue), 499)
  t.equal(slow[0]?.status?.code, 2, 'status ERROR')
  const fast = spans.filter((s) => s.name === 'GET /fast')
  t.equal(Number(fast[0]?.attributes?.find((a) => a.key === 'http.response.status_code')?.value.intValue), 200, 'a finished request ends as its status')
})

t.test('tracing adds no listener to a response, and one close listener to a connection at its first sampled request', async (t) => {
  const { url } = await receiver(t)
  const tracing = (await startTracing(loadConfig(schema, { OTEL_EXPORTER_OTLP_ENDPOINT: url }), 's'))!
  // The same routes with tracing off, for the listeners Node and Fastify add on their own.
  const apps = { on: createService({ name: 's', logLevel: 'silent', openapi: false, tracing }), off: createService({ name: 's', logLevel: 'silent', openapi: false }) }
  const seen: { app: string; sampled: boolean; response: number; connection: number }[] = []
  for (const [name, app] of Object.entries(apps)) {
    app.get('/x', async (request, reply) => {
      seen.push({ app: name, sampled: request.traceSpan !== null, response: reply.raw.listenerCount('close'), connection: request.raw.socket.listenerCount('close') })
      return { ok: true }
    })
    // Over a real socket: app.inject's requests have no connection to close.
    await app.listen({ port: 0, host: '127.0.0.1' })
    t.teardown(() => app.close())
  }
  const parent = (flags: string) => ({ traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-${flags}` })
  /** GETs /x on one keep-alive connection, one after the other, with these traceparent flags. */
  const oneConnection = async (app: (typeof apps)['on'], flags: string[]) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    t.teardown(() => agent.destroy())
    const port = (app.server.address() as AddressInfo).port
    const sockets = new Set<unknown>()
    for (const f of flags) {
      const status = await new Promise<number>((resolve, reject) => {
        const req = request({ port, host: '127.0.0.1', path: '/x', agent, headers: parent(f) }, (res) => {
          res.resume()
          res.on('end', () => resolve(res.statusCode ?? 0))
        })
        req.on('socket', (s) => sockets.add(s))
        req.on('error', reject)
        req.end()
      })
      t.equal(status, 200)
    }
    t.equal(sockets.size, 1, 'one connection')
  }
  await oneConnection(apps.off, ['01'])
  await oneConnection(apps.on, ['00', '01', '01', '00', '01'])
  const [off, ...on] = seen
  t.same(
    on.map((s) => s.sampled),
    [false, true, true, false, true],
    'the parent-based default follows the flags',
  )
  t.same(
    on.map((s) => s.response),
    on.map(() => off!.response),
    "every response, sampled or not, has tracing off's close listeners: the event emitter sees one kind of response",
  )
  t.same(
    on.map((s) => s.connection),
    [off!.connection, off!.connection + 1, off!.connection + 1, off!.connection + 1, off!.connection + 1],
    'the connection gets one listener at its first sampled request (a client leaving ends their spans), not one per request',
  )
})

t.test("a sampled request's logger: a child of the app's logger like every request's, with the trace ids, its request id once and its route's level", async (t) => {
  const { url } = await receiver(t)
  const tracing = (await startTracing(loadConfig(schema, { OTEL_EXPORTER_OTLP_ENDPOINT: url }), 's'))!
  const lines: string[] = []
  const logStream = { write: (line: string) => void lines.push(line) }
  const app = createService({ name: 's', logLevel: 'info', openapi: false, tracing, logStream })
  const parents: { sampled: boolean; parent: object }[] = []
  const seen = (request: FastifyRequest) => {
    parents.push({ sampled: request.traceSpan !== null, parent: Object.getPrototypeOf(request.log) as object })
  }
  app.get('/a', async (request) => {
    seen(request)
    request.log.info('inside a')
    return { ok: true }
  })
  app.get('/quiet', { logLevel: 'warn' }, async (request) => {
    seen(request)
    request.log.info('quiet info')
    request.log.warn('quiet warn')
    return { ok: true }
  })
  t.teardown(() => app.close())
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
  const sampled = { traceparent: `00-${traceId}-00f067aa0ba902b7-01` }
  const unsampled = { traceparent: `00-${traceId}-00f067aa0ba902b7-00` }
  for (const headers of [sampled, unsampled]) t.equal((await app.inject({ url: '/a', headers })).statusCode, 200)
  t.equal((await app.inject({ url: '/quiet', headers: sampled })).statusCode, 200)
  t.same(parents.map((p) => p.sampled), [true, false, true])
  // One shape for every request's logger: a logger one level deeper on some requests made logging call sites polymorphic.
  t.equal(parents[0]!.parent, parents[1]!.parent, 'sampled and unsampled loggers have the same parent')
  t.equal(parents[0]!.parent, app.log, "that parent is the app's logger")
  const inside = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => typeof l.msg === 'string' && (l.msg as string).startsWith('inside'))
  t.equal(inside.length, 2)
  t.equal(inside[0]!.trace_id, traceId, 'the sampled line carries the trace id')
  t.match(inside[0]!.span_id, /^[0-9a-f]{16}$/)
  t.type(inside[0]!.reqId, 'string')
  t.equal((lines.find((l) => l.includes('"inside a"')) ?? '').split('"reqId"').length - 1, 1, 'the request id once')
  t.notOk('trace_id' in inside[1]!, 'an unsampled line has no trace ids')
  t.notOk(lines.some((l) => l.includes('quiet info')), "the route's level (warn) still applies")
  t.ok(lines.some((l) => l.includes('quiet warn') && l.includes(traceId)))
})
