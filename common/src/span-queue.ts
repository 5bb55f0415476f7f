/**
 * Ended spans on their way out: each written as its OTLP JSON the moment it
 * ends, straight into one preallocated buffer, and sent in batches with the
 * BatchSpanProcessor's rules (a batch at 512 spans or after the schedule
 * delay, at most 2,048 spans waiting and the rest dropped with its warning,
 * one export in flight, flush and shutdown waiting for all). A batch is
 * then the buffer's bytes between the request's fixed head and tail: the
 * export reads no span object back (see tracer.ts for why that matters).
 *
 * The text is the one JsonTraceSerializer writes: each span is the object
 * its transform makes (same keys, same order, the same value encodings),
 * passed to JSON.stringify; the head and tail are the request's around an
 * empty list of spans.
 */
import { diag, type AttributeValue, type Attributes, type HrTime, type SpanContext } from '@opentelemetry/api'
import { globalErrorHandler, type ExportResult } from '@opentelemetry/core'
import type { RecordedSpan, SpanEvent, SpanLink, EndedSpans } from './tracer.js'

/** Where batches go (WorkerSpanExporter.send). */
export interface BatchSender {
  send(body: Uint8Array, spans: number, done: (result: ExportResult) => void): void
  /** Resolves when every batch sent so far has its answer (and holds the process open until then). */
  forceFlush(): Promise<void>
  shutdown(): Promise<void>
}

export interface SpanQueueOptions {
  serviceName: string
  scopeName: string
  /** OTEL_BSP_SCHEDULE_DELAY: milliseconds from a batch's first span to its export when it does not fill first. */
  scheduledDelayMillis: number
  maxExportBatchSize?: number
  maxQueueSize?: number
  exportTimeoutMillis?: number
  /** Bytes of the buffer spans are written into; a batch is sent early when the next span would not fit. */
  bufferBytes?: number
  /** The timers (tests pass a controlled clock). */
  timers?: Timers
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
}

interface Batch {
  body: Uint8Array
  spans: number
}

export class SpanQueue implements EndedSpans {
  private readonly maxBatch: number
  private readonly maxQueue: number
  private readonly delay: number
  private readonly exportTimeout: number
  private readonly head: Buffer
  private readonly tail: Buffer
  private readonly buffer: Buffer
  private readonly encoder = new TextEncoder()
  /** The spans written into the buffer so far, and its bytes used (commas between spans included). */
  private count = 0
  private used = 0
  /** Batches made, waiting for their turn to be sent. */
  private readonly ready: Batch[] = []
  private queued = 0
  private dropped = 0
  private exporting = false
  private readonly timers: Timers
  private timer: unknown = null
  private shutdownPromise: Promise<void> | null = null

  constructor(
    private readonly sender: BatchSender,
    options: SpanQueueOptions,
  ) {
    this.maxBatch = options.maxExportBatchSize ?? 512
    this.maxQueue = options.maxQueueSize ?? 2048
    this.delay = options.scheduledDelayMillis
    this.exportTimeout = options.exportTimeoutMillis ?? 30000
    this.timers = options.timers ?? realTimers
    if (this.maxBatch > this.maxQueue) this.maxBatch = this.maxQueue
    this.buffer = Buffer.allocUnsafeSlow(options.bufferBytes ?? 1 << 20)
    const request = JSON.stringify({
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: options.serviceName } }], droppedAttributesCount: 0 },
          scopeSpans: [{ scope: { name: options.scopeName }, spans: [] }],
        },
      ],
    })
    const at = request.indexOf('"spans":[]') + '"spans":['.length
    this.head = Buffer.from(request.slice(0, at))
    this.tail = Buffer.from(request.slice(at))
  }

  ended(span: RecordedSpan): void {
    if (this.shutdownPromise !== null) return
    if (this.queued >= this.maxQueue) {
      if (this.dropped++ === 0) diag.debug('maxQueueSize reached, dropping spans')
      return
    }
    if (this.dropped > 0) {
      diag.warn(`Dropped ${this.dropped} spans because maxQueueSize reached`)
      this.dropped = 0
    }
    this.write(JSON.stringify(otlpSpan(span)))
    this.queued++
    if (this.count >= this.maxBatch) this.seal()
    this.schedule()
  }

  /** Every span ended so far sent, and answered (or failed). */
  forceFlush(): Promise<void> {
    if (this.shutdownPromise !== null) return this.shutdownPromise
    return this.flushAll()
  }

  shutdown(): Promise<void> {
    this.shutdownPromise ??= this.flushAll().then(() => this.sender.shutdown())
    return this.shutdownPromise
  }

  private async flushAll(): Promise<void> {
    this.seal()
    this.next()
    // Each answer sends the next batch; the sender's flush waits for it (and keeps the process up meanwhile).
    while (this.exporting || this.ready.length > 0) await this.sender.forceFlush()
  }

  private write(json: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit; a span that might not fit goes after the spans already written.
    const room = this.buffer.length - this.used - 1
    if (json.length * 3 > room && this.count > 0) this.seal()
    if (json.length * 3 > this.buffer.length - 1) {
      // Larger than the whole buffer (a huge attribute): a batch of its own.
      this.ready.push({ body: this.body(this.encoder.encode(json)), spans: 1 })
      return
    }
    if (this.count > 0) this.buffer[this.used++] = 0x2c // ','
    this.used += this.encoder.encodeInto(json, this.buffer.subarray(this.used)).written
    this.count++
  }

  /** The spans written so far become a batch; the buffer is free again. */
  private seal(): void {
    if (this.count === 0) return
    this.ready.push({ body: this.body(this.buffer.subarray(0, this.used)), spans: this.count })
    this.count = 0
    this.used = 0
  }

  /** A request: head, spans, tail, in a buffer of its own (it moves to the export worker). */
  private body(spans: Uint8Array): Uint8Array {
    const body = new Uint8Array(this.head.length + spans.length + this.tail.length)
    body.set(this.head, 0)
    body.set(spans, this.head.length)
    body.set(this.tail, this.head.length + spans.length)
    return body
  }

  /** After a span: send a full batch now (when none is in flight), else make sure the schedule will. */
  private schedule(): void {
    if (this.exporting) return
    if (this.ready.length > 0) return this.next()
    if (this.timer === null && this.count > 0) {
      // Unreferenced (the batch processor's timer is too): spans waiting never hold the process open.
      this.timer = this.timers.setTimeout(() => {
        this.timer = null
        this.seal()
        this.next()
      }, this.delay)
    }
  }

  /** Send the next batch when none is in flight. */
  private next(): void {
    if (this.exporting) return
    const batch = this.ready.shift()
    if (batch === undefined) return
    if (this.timer !== null) {
      this.timers.clearTimeout(this.timer)
      this.timer = null
    }
    this.exporting = true
    // Out of the queue once taken for export, as the batch processor counts its queue.
    this.queued -= batch.spans
    let settled = false
    const done = (result: ExportResult) => {
      if (settled) return
      settled = true
      this.timers.clearTimeout(timeout)
      this.exporting = false
      if (result.code !== 0) globalErrorHandler(result.error ?? new Error('BatchSpanProcessor: span export failed'))
      // The next batch now if one is made, else the schedule for the spans written since.
      if (this.ready.length > 0) this.next()
      else this.schedule()
    }
    // An export the exporter never answers fails here (the batch processor's export timeout) rather than stop every later one.
    const timeout = this.timers.setTimeout(() => done({ code: 1, error: new Error('Timeout') }), this.exportTimeout)
    this.sender.send(batch.body, batch.spans, done)
  }
}

/** The span as the OTLP JSON transform makes it (@opentelemetry/otlp-transformer, sdkSpanToOtlpSpan with the JSON encoder). */
export function otlpSpan(span: RecordedSpan) {
  const ctx = span.spanContext()
  const parent = span.parentSpanContext
  return {
    traceId: ctx.traceId,
    spanId: ctx.spanId,
    parentSpanId: parent?.spanId ? parent.spanId : undefined,
    traceState: ctx.traceState?.serialize(),
    name: span.name,
    kind: span.kind + 1,
    startTimeUnixNano: nanos(span.startTime),
    endTimeUnixNano: nanos(span.endTime),
    attributes: keyValues(span.attributes),
    droppedAttributesCount: span.droppedAttributesCount,
    events: span.events.map(otlpEvent),
    droppedEventsCount: span.droppedEventsCount,
    status: { code: span.status.code, message: span.status.message },
    links: span.links.map(otlpLink),
    droppedLinksCount: span.droppedLinksCount,
    flags: flags(ctx, parent?.isRemote),
  }
}

function otlpEvent(event: SpanEvent) {
  return {
    attributes: event.attributes ? keyValues(event.attributes) : [],
    name: event.name,
    timeUnixNano: nanos(event.time),
    droppedAttributesCount: event.droppedAttributesCount || 0,
  }
}

function otlpLink(link: SpanLink) {
  return {
    attributes: link.attributes ? keyValues(link.attributes) : [],
    spanId: link.context.spanId,
    traceId: link.context.traceId,
    traceState: link.context.traceState?.serialize(),
    droppedAttributesCount: link.droppedAttributesCount || 0,
    flags: flags(link.context, link.context.isRemote),
  }
}

/** W3C trace flags with OTLP's "has is-remote" bit, and "is remote" when it is. */
function flags(ctx: SpanContext, remote: boolean | undefined): number {
  return (ctx.traceFlags & 0xff) | 0x100 | (remote ? 0x200 : 0)
}

/**
 * An HrTime as OTLP's decimal nanoseconds (the transform's BigInt sum): the
 * two numbers' digits joined when that is the same text (a positive time,
 * nanoseconds in range), else the BigInt sum. With the attribute fast paths
 * (tracer.ts), this took tracing at 1 % from 1.045 to 1.000 of tracing off
 * (docs/benchmark-history.md, "Session 31"; which of the two carries it is not split).
 */
function nanos(time: HrTime): string {
  const s = time[0]
  const ns = time[1]
  if (Number.isSafeInteger(s) && s > 0 && Number.isInteger(ns) && ns >= 0 && ns < 1e9) {
    const digits = String(ns)
    return String(s) + NINE_ZEROS.slice(digits.length) + digits
  }
  return (BigInt(Math.trunc(s)) * 1_000_000_000n + BigInt(Math.trunc(ns))).toString()
}

const NINE_ZEROS = '000000000'

function keyValues(attributes: Attributes) {
  return Object.keys(attributes).map((key) => ({ key, value: anyValue(attributes[key]) }))
}

type OtlpAnyValue =
  | { stringValue: string }
  | { intValue: number }
  | { doubleValue: number }
  | { boolValue: boolean }
  | { bytesValue: string }
  | { arrayValue: { values: OtlpAnyValue[] } }
  | { kvlistValue: { values: { key: string; value: OtlpAnyValue }[] } }
  | Record<string, never>

function anyValue(value: AttributeValue | unknown): OtlpAnyValue {
  switch (typeof value) {
    case 'string':
      return { stringValue: value }
    case 'number':
      return Number.isInteger(value) ? { intValue: value } : { doubleValue: value }
    case 'boolean':
      return { boolValue: value }
  }
  if (value instanceof Uint8Array) return { bytesValue: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') }
  if (Array.isArray(value)) return { arrayValue: { values: value.map(anyValue) } }
  if (typeof value === 'object' && value !== null) {
    const object = value as Record<string, unknown>
    return { kvlistValue: { values: Object.keys(object).map((key) => ({ key, value: anyValue(object[key]) })) } }
  }
  return {}
}
