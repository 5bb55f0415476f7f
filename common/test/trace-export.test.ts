/**
 * The span exporter that sends from a worker thread (trace-export.ts): spans
 * reach a real OTLP/HTTP receiver while the main thread makes no HTTP client
 * request at all (the point of it); the library's retries still apply; a
 * flush and the shutdown wait for what is in flight; a batch after the
 * shutdown, or in flight when the worker dies, fails instead of hanging.
 */
import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import diagnostics from 'node:diagnostics_channel'
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer'
import { TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace'
import { WorkerSpanExporter } from '../src/trace-export.js'

/** A receiver whose answer to each export the test decides (`answer`), recording the span names it was sent. */
async function receiver(t: { teardown(fn: () => unknown): void }, answer: (n: number, res: ServerResponse) => void = (_n, res) => ok(res)) {
  const names: string[][] = []
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { resourceSpans: { scopeSpans: { spans: { name: string }[] }[] }[] }
      names.push(body.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((s) => s.spans.map((x) => x.name))))
      answer(names.length, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, names }
}

const ok = (res: ServerResponse) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}')

/** Finished spans to export, made by the SDK itself. */
function spans(...names: string[]): ReadableSpan[] {
  const tracer = new TracerProvider().getTracer('test')
  return names.map((name) => {
    const span = tracer.startSpan(name)
    span.end()
    return span as unknown as ReadableSpan
  })
}

/** A batch as SpanQueue hands it over: the OTLP JSON request (the library's, for these SDK spans) and its span count. */
const exported = (exporter: WorkerSpanExporter, batch: ReadableSpan[]) =>
  new Promise<ExportResult>((resolve) => exporter.send(JsonTraceSerializer.serializeRequest(batch)!, batch.length, resolve))

t.test('spans reach the receiver, and the main thread makes no HTTP client request for them', async (t) => {
  const otlp = await receiver(t)
  const requests: unknown[] = []
  const onRequest = (message: unknown) => requests.push(message)
  diagnostics.subscribe('http.client.request.start', onRequest)
  t.teardown(() => diagnostics.unsubscribe('http.client.request.start', onRequest))
  const exporter = new WorkerSpanExporter(otlp.url)
  t.teardown(() => exporter.shutdown())
  const results = await Promise.all([exported(exporter, spans('a', 'b')), exported(exporter, spans('c'))])
  t.same(results.map((r) => r.code), [ExportResultCode.SUCCESS, ExportResultCode.SUCCESS])
  t.same(otlp.names.flat().sort(), ['a', 'b', 'c'])
  t.equal(requests.length, 0, 'no node:http client request on the main thread')
})

t.test("the library's retries apply: a 503 is tried again, and the batch succeeds", async (t) => {
  const otlp = await receiver(t, (n, res) => (n === 1 ? res.writeHead(503, { 'retry-after': '0' }).end() : ok(res)))
  const exporter = new WorkerSpanExporter(otlp.url)
  t.teardown(() => exporter.shutdown())
  const result = await exported(exporter, spans('again'))
  t.equal(result.code, ExportResultCode.SUCCESS)
  t.same(otlp.names, [['again'], ['again']], 'sent twice')
})

t.test("a refused batch fails, with the receiver's reason", async (t) => {
  const otlp = await receiver(t, (_n, res) => res.writeHead(400, { 'content-type': 'application/json' }).end('{"message":"bad"}'))
  const exporter = new WorkerSpanExporter(otlp.url)
  t.teardown(() => exporter.shutdown())
  const result = await exported(exporter, spans('refused'))
  t.equal(result.code, ExportResultCode.FAILED)
  t.match(result.error?.message, /Bad Request/)
})

t.test('a flush and the shutdown wait for the batches in flight; after the shutdown a batch fails at once', async (t) => {
  let release: () => void = () => undefined
  const held = new Promise<void>((resolve) => (release = resolve))
  const otlp = await receiver(t, (_n, res) => void held.then(() => ok(res)))
  const exporter = new WorkerSpanExporter(otlp.url)
  const result = exported(exporter, spans('slow'))
  let flushed = false
  const flush = exporter.forceFlush().then(() => (flushed = true))
  await new Promise((r) => setTimeout(r, 200))
  t.notOk(flushed, 'the flush waits for the answer')
  release()
  await flush
  t.equal((await result).code, ExportResultCode.SUCCESS)
  await exporter.forceFlush() // nothing in flight: at once
  await exporter.shutdown()
  await exporter.shutdown() // twice is fine
  const late = await exported(exporter, spans('late'))
  t.equal(late.code, ExportResultCode.FAILED)
  t.match(late.error?.message, /shut down/)
  t.same(otlp.names, [['slow']])
})

t.test('a worker that dies fails the batches it held, and every later one', async (t) => {
  const otlp = await receiver(t, () => undefined) // never answers
  const exporter = new WorkerSpanExporter(otlp.url)
  const pending = exported(exporter, spans('held'))
  while (otlp.names.length === 0) await new Promise((r) => setTimeout(r, 20))
  await (exporter as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate()
  const result = await pending
  t.equal(result.code, ExportResultCode.FAILED)
  t.match(result.error?.message, /exited/)
  const after = await exported(exporter, spans('after'))
  t.equal(after.code, ExportResultCode.FAILED)
  t.match(after.error?.message, /exited/, 'the reason: the worker is gone')
  await exporter.shutdown()
})

t.test("a batch's bytes move to the worker and come back with its answer, so the main thread's collector frees them", async (t) => {
  // Left in the worker, sent bytes wait for its collector, which V8 runs for external memory only every 64 MB: a
  // gateway at 1 % sampling grew by that much over minutes (lab). Copied, they would be made twice.
  const otlp = await receiver(t)
  const exporter = new WorkerSpanExporter(otlp.url)
  t.teardown(() => exporter.shutdown())
  const worker = (exporter as unknown as { worker: import('node:worker_threads').Worker }).worker
  const sent: { body: Uint8Array; length: number }[] = []
  const post = worker.postMessage.bind(worker)
  worker.postMessage = (batch: { body: Uint8Array }, transfer?: readonly import('node:worker_threads').Transferable[]) => {
    sent.push({ body: batch.body, length: batch.body.byteLength })
    post(batch, transfer)
  }
  const back: number[] = []
  worker.on('message', (outcome: { body?: Uint8Array }) => back.push(outcome.body?.byteLength ?? 0))
  t.equal((await exported(exporter, spans('a', 'b', 'c'))).code, ExportResultCode.SUCCESS)
  t.equal(sent.length, 1)
  t.ok(sent[0]!.length > 100, 'a batch was sent')
  t.equal(sent[0]!.body.byteLength, 0, 'moved to the worker, not copied (detached here)')
  t.same(back, [sent[0]!.length], 'the same bytes back with the answer')
})

t.test("a refused batch's bytes stay in the worker: a write of them may still be pending after an early answer", async (t) => {
  const otlp = await receiver(t, (_n, res) => res.writeHead(400, { 'content-type': 'application/json' }).end('{}'))
  const exporter = new WorkerSpanExporter(otlp.url)
  t.teardown(() => exporter.shutdown())
  const worker = (exporter as unknown as { worker: import('node:worker_threads').Worker }).worker
  const back: (Uint8Array | undefined)[] = []
  worker.on('message', (outcome: { body?: Uint8Array }) => back.push(outcome.body))
  t.equal((await exported(exporter, spans('refused'))).code, ExportResultCode.FAILED)
  t.same(back, [undefined], 'the answer carries no bytes')
})
