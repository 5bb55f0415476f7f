/**
 * The worker thread of WorkerSpanExporter (trace-export.ts): posts the OTLP
 * JSON it is handed with the OpenTelemetry library's own node:http delegate
 * (the one OTLPTraceExporter uses: retries with backoff, the export timeout,
 * OTEL_EXPORTER_OTLP_* headers and compression), one answer per batch.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http'
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer'
import { ownBuffer, type ExportBatch, type ExportOutcome } from './trace-export.js'

const { url } = workerData as { url: string }

// The batch arrives serialised: the delegate sends its bytes as they are and counts its spans.
const passThrough = {
  serializeRequest: (batch: ExportBatch) => batch.body,
  deserializeResponse: (data: Uint8Array) => JsonTraceSerializer.deserializeResponse(data),
}
const delegate = createOtlpHttpExportDelegate(
  convertLegacyHttpOptions({ url }, 'TRACES', 'v1/traces', { 'Content-Type': 'application/json' }),
  passThrough,
  'otlp_http_span_exporter',
  { name: 'span', countItems: (batch: ExportBatch) => batch.spans },
  undefined, // no meter provider: the exporter's own metrics are off, as with OTLPTraceExporter's default
)

parentPort!.on('message', (batch: ExportBatch) => {
  delegate.export(batch, (result) => {
    const e = result.error as (Error & { code?: unknown }) | undefined
    const outcome: ExportOutcome = {
      id: batch.id,
      ok: result.code === 0,
      ...(e === undefined ? {} : { error: e.message, ...(typeof e.code === 'string' ? { code: e.code } : {}) }),
    }
    // After a 2xx the collector has read every byte, so no write of ours still reads them: they go back to be freed
    // by the main thread's frequent collections (see WorkerSpanExporter.send). After a failure (an early refusal,
    // a timeout) a write may still hold them; they stay here, for this thread's collector.
    if (outcome.ok) {
      outcome.body = batch.body
      parentPort!.postMessage(outcome, ownBuffer(batch.body))
    } else {
      parentPort!.postMessage(outcome)
    }
  })
})
