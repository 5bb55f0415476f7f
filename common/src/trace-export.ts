/**
 * Where SpanQueue's batches go (span-queue.ts): OTLP/HTTP JSON, as
 * OTLPTraceExporter sends it, but sent from a worker thread
 * (trace-export-worker.ts).
 *
 * Why not OTLPTraceExporter itself: it posts with node:http on the main
 * thread, and its client responses and body streams run through the same
 * functions as every request the process serves (the HTTP parser's
 * callbacks, IncomingMessage, Readable). At a low sampling ratio those
 * functions then see two kinds of object and turn polymorphic, and every
 * request pays: at 1 % sampling, a gateway request took 399,000
 * instructions with OTLPTraceExporter and 346,000 with exports switched off
 * (callgrind, whole process, 10,000 requests after 30,000, side by side).
 * Here the main thread only hands a batch's bytes over (written as its
 * spans ended); the worker's HTTP client lives in its own V8 isolate (368,000 against 367,000
 * with tracing off).
 */
import { Worker } from 'node:worker_threads'
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import type { BatchSender } from './span-queue.js'

/** A serialised batch, main thread -> worker. */
export interface ExportBatch {
  id: number
  body: Uint8Array
  spans: number
}

/** The worker's answer for one batch, with the batch's bytes handed back when it was sent (see WorkerSpanExporter.send). */
export interface ExportOutcome {
  id: number
  ok: boolean
  error?: string
  code?: string
  body?: Uint8Array
}

// Built: the worker's .js beside this file; under the test runner's TypeScript loader, its .ts source.
const WORKER = new URL(import.meta.url.endsWith('.ts') ? './trace-export-worker.ts' : './trace-export-worker.js', import.meta.url)

export class WorkerSpanExporter implements BatchSender {
  private readonly worker: Worker
  private readonly pending = new Map<number, (result: ExportResult) => void>()
  private nextId = 1
  /** Why batches are refused now: the shutdown, or the worker's death. */
  private stopped: Error | null = null
  private idle: (() => void)[] = []

  constructor(url: string) {
    this.worker = new Worker(WORKER, { workerData: { url } })
    this.worker.on('message', (outcome: ExportOutcome) => this.settle(outcome.id, outcome.ok ? { code: ExportResultCode.SUCCESS } : { code: ExportResultCode.FAILED, error: failure(outcome) }))
    // The worker died (it should not): every batch it held fails, and later ones fail at once.
    const lost = (err: Error) => {
      this.stopped ??= err
      for (const id of [...this.pending.keys()]) this.settle(id, { code: ExportResultCode.FAILED, error: err })
    }
    this.worker.on('error', lost)
    this.worker.on('exit', (code) => lost(new Error(`the trace export worker exited (${code})`)))
    // Exports in flight never hold the process open (the batch processor's own timer does not either). After the
    // listeners: listening for messages refs the worker's port again.
    this.worker.unref()
  }

  /** A batch already serialised (SpanQueue's): an OTLP JSON request of `spans` spans. */
  send(body: Uint8Array, spans: number, resultCallback: (result: ExportResult) => void): void {
    if (this.stopped !== null) return resultCallback({ code: ExportResultCode.FAILED, error: this.stopped })
    const id = this.nextId++
    this.pending.set(id, resultCallback)
    const batch: ExportBatch = { id, body, spans }
    // The bytes move to the worker and come back with its answer when sent, to be freed here. Left in the worker, they
    // would wait for its garbage collector, which its little JavaScript rarely wakes: V8 collects for external
    // memory only every 64 MB, and a gateway at 1 % sampling grew by that much over minutes (lab, smaps).
    this.worker.postMessage(batch, ownBuffer(body))
  }

  /** Resolves when every batch handed over so far has its answer. */
  forceFlush(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve()
    // Waited for (a flush, the shutdown): the worker holds the process open until it answers.
    this.worker.ref()
    return new Promise<void>((resolve) => this.idle.push(resolve)).then(() => {
      if (this.stopped === null) this.worker.unref()
    })
  }

  async shutdown(): Promise<void> {
    if (this.stopped !== null) return
    await this.forceFlush()
    this.stopped = new Error('the trace exporter is shut down')
    await this.worker.terminate()
  }

  private settle(id: number, result: ExportResult): void {
    const callback = this.pending.get(id)
    if (callback === undefined) return
    this.pending.delete(id)
    callback(result)
    if (this.pending.size === 0) for (const resolve of this.idle.splice(0)) resolve()
  }
}

/** The buffer under `bytes` when they are all of it (TextEncoder's), to move rather than copy; else none (a pooled Buffer). */
export function ownBuffer(bytes: Uint8Array): ArrayBuffer[] {
  const buffer = bytes.buffer
  return buffer instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === buffer.byteLength ? [buffer] : []
}

function failure(outcome: ExportOutcome): Error {
  const err = new Error(outcome.error ?? 'export failed') as Error & { code?: string }
  if (outcome.code !== undefined) err.code = outcome.code
  return err
}
