/**
 * What startTracing (tracing.ts) loads only when tracing is on: the
 * AsyncLocalStorage context manager and the W3C trace-context propagator
 * (registered once per process), the sampling decision, and the tracer
 * (tracer.ts) whose spans go out through SpanQueue and the export worker
 * (span-queue.ts, trace-export.ts) as OTLP/HTTP JSON.
 */
import { context, isValidTraceId, propagation, ROOT_CONTEXT, SpanKind, TraceFlags } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { parseTraceParent, W3CTraceContextPropagator } from '@opentelemetry/core'
import { extractContext, type Tracing, type TracingSettings } from './tracing.js'
import { RecordingTracer, type SpanSampling } from './tracer.js'
import { SpanQueue } from './span-queue.js'
import { WorkerSpanExporter } from './trace-export.js'

let registered = false

export function createTracing(config: TracingSettings, url: string, serviceName: string): Tracing {
  // One per process, shared by every app built in it (tests build several).
  if (!registered) {
    registered = true
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
    propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  }
  const head = headDecision(config.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on', config.OTEL_TRACES_SAMPLER_ARG ?? 1)
  const fresh = new NewTraces()
  const queue = new SpanQueue(new WorkerSpanExporter(url), { serviceName, scopeName: 'tollgate', scheduledDelayMillis: config.OTEL_BSP_SCHEDULE_DELAY ?? 5000 })
  const tracer = new RecordingTracer(samplingOf(head, fresh), queue)
  // The last request id minted (requestId) and its new trace's slot, until the request with that id takes it.
  let mintedId = ''
  let mintedSlot = -1
  return {
    tracer,
    serviceName,
    requestId(given) {
      if (given !== undefined) {
        // The client's id: never one of ours, even when it repeats one (it must not take a minted trace).
        mintedSlot = -1
        return given
      }
      mintedSlot = fresh.take()
      mintedId = fresh.traceId(mintedSlot)
      return mintedId
    },
    requestSpan(headers, name, requestId) {
      const minted = mintedSlot !== -1 && requestId === mintedId ? mintedSlot : -1
      mintedSlot = -1
      const parent = parseTraceparent(headers.traceparent)
      if (parent !== null) {
        // Not sampled: the client's context goes on as it came (an intermediary may leave it unchanged, W3C trace-context).
        if (!head.withParent(parent.traceId, parent.sampled)) return `00-${parent.traceId}-${parent.spanId}-00`
        return tracer.startSpan(name(), SERVER, extractContext(headers))
      }
      // A new trace: its ids drawn ahead, with the decision's input, before any text or span is made for it; the
      // request's own id when this process minted it (requestId), so that the request id and the trace id are one.
      const i = minted !== -1 ? minted : fresh.take()
      if (!head.root(fresh.accumulated[i]!)) return fresh.traceparents[i]!
      tracer.nextTraceId = fresh.traceId(i)
      try {
        return tracer.startSpan(name(), SERVER, ROOT_CONTEXT)
      } finally {
        tracer.nextTraceId = null // used, or (the name threw) for no other trace
      }
    },
    flush: () => queue.forceFlush(),
    shutdown: () => queue.shutdown(),
  }
}

const SERVER = { kind: SpanKind.SERVER }

/** The tracer's sampling: the head decision, new traces' ids from the same batches as requests' (NewTraces). */
function samplingOf(head: HeadDecision, fresh: NewTraces): SpanSampling {
  const ids = Buffer.alloc(16)
  return {
    withParent: (traceId, parentSampled) => head.withParent(traceId, parentSampled),
    newTrace() {
      const i = fresh.take()
      return { traceId: fresh.traceId(i), sampled: head.root(fresh.accumulated[i]!) }
    },
    spanId() {
      writeRandomSpanId(ids, 0)
      return ids.toString('latin1')
    },
  }
}

/** A request's sampling, decided before any span exists (see headDecision). */
export interface HeadDecision {
  /** For a trace the client started: from its trace id and its sampled flag. */
  withParent(traceId: string, parentSampled: boolean): boolean
  /**
   * For a new trace: from its id's four 32-bit words XORed (what TraceIdRatioBasedSampler computes from the
   * id's text, each 8 hex digits a word), so the id need not be parsed back.
   */
  root(accumulated: number): boolean
}

/**
 * The configured sampler's decision for a request, taken before any span
 * exists, from the trace id and the client's sampled flag: exactly what the
 * OpenTelemetry SDK's samplers of these names decide (tested against them),
 * whose decisions depend on nothing else. A request not sampled then costs
 * no tracer call at all (most of them at a low ratio): no context, no span
 * object.
 */
export function headDecision(name: string, ratio: number): HeadDecision {
  const bound = ratioBound(ratio)
  const ratioSays = (traceId: string) => isValidTraceId(traceId) && accumulate(traceId) < bound
  const ratioRoot = (accumulated: number) => accumulated < bound
  switch (name) {
    case 'always_on':
      return { withParent: () => true, root: () => true }
    case 'always_off':
      return { withParent: () => false, root: () => false }
    case 'traceidratio':
      return { withParent: ratioSays, root: ratioRoot }
    case 'parentbased_always_off':
      return { withParent: (_, parentSampled) => parentSampled, root: () => false }
    case 'parentbased_traceidratio':
      return { withParent: (_, parentSampled) => parentSampled, root: ratioRoot }
    default:
      return { withParent: (_, parentSampled) => parentSampled, root: () => true }
  }
}

/** A trace id's four 8-digit words XORed, as TraceIdRatioBasedSampler reads them from its text. */
function accumulate(traceId: string): number {
  let acc = 0
  for (let i = 0; i < 32; i += 8) acc = (acc ^ Number.parseInt(traceId.slice(i, i + 8), 16)) >>> 0
  return acc
}

/** TraceIdRatioBasedSampler's threshold for a ratio (its constructor's, @opentelemetry/sdk-trace 2.x). */
function ratioBound(ratio: number): number {
  const r = typeof ratio !== 'number' || Number.isNaN(ratio) || ratio <= 0 ? 0 : ratio >= 1 ? 1 : ratio
  return r === 1 ? 2 ** 32 : Math.floor(r * 0xffffffff)
}

/**
 * New traces' ids, drawn BATCH at a time as RandomIdGenerator draws them (Math.random, 32 bits at a
 * time), each kept as the traceparent a request sends on when its trace is not sampled
 * (`00-<trace>-<span>-00`, one flat string written from a buffer) and as its trace id's four words
 * XORed (what the ratio sampler decides on). Drawn when each request came, the ids, their text and the
 * traceparent cost 1.7 % of an unsampled gateway request (lab: two gateways loaded at once, 14 rounds of
 * 4 s, against a constant traceparent); drawn in a batch, the loop runs warm and a request only reads
 * its slot.
 */
export class NewTraces {
  static readonly BATCH = 64
  readonly traceparents: string[] = new Array<string>(NewTraces.BATCH).fill('')
  readonly accumulated = new Uint32Array(NewTraces.BATCH)
  /** The batch's traceparents as written, one after another (read again by traceId until the next batch is drawn). */
  private readonly text = Buffer.from(('00-' + '0'.repeat(32) + '-' + '0'.repeat(16) + '-00').repeat(NewTraces.BATCH), 'latin1')
  private next = NewTraces.BATCH

  /** The slot of the next new trace. */
  take(): number {
    if (this.next === NewTraces.BATCH) this.draw()
    return this.next++
  }

  /**
   * The trace id of the slot just taken, as a string of its own (a request id): written from the batch's bytes,
   * not sliced from its traceparent, since a sliced string is copied again each time it is written out (a header,
   * a log line: 1,754 instructions a request in V8's WriteNonConsToFlat2, callgrind).
   */
  traceId(slot: number): string {
    const at = slot * TRACEPARENT_LENGTH
    return this.text.toString('latin1', at + 3, at + 35)
  }

  private draw(): void {
    const text = this.text
    for (let i = 0, at = 0; i < NewTraces.BATCH; i++, at += TRACEPARENT_LENGTH) {
      const w0 = randomWord()
      const w1 = randomWord()
      const w2 = randomWord()
      let w3 = randomWord()
      if ((w0 | w1 | w2 | w3) === 0) w3 = 1 // never the invalid all-zero id (RandomIdGenerator's rule)
      writeRandomSpanId(text, at + 36)
      writeHex32(text, at + 3, w0)
      writeHex32(text, at + 11, w1)
      writeHex32(text, at + 19, w2)
      writeHex32(text, at + 27, w3)
      this.traceparents[i] = text.toString('latin1', at, at + TRACEPARENT_LENGTH)
      this.accumulated[i] = w0 ^ w1 ^ w2 ^ w3
    }
    this.next = 0
  }
}

const TRACEPARENT_LENGTH = 55
const randomWord = () => (Math.random() * 2 ** 32) >>> 0
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1')

/** A new span id (two random words, never both zero) as 16 hex digits at `at`. */
function writeRandomSpanId(into: Buffer, at: number): void {
  const s0 = randomWord()
  let s1 = randomWord()
  if ((s0 | s1) === 0) s1 = 1
  writeHex32(into, at, s0)
  writeHex32(into, at + 8, s1)
}

/** A 32-bit word as 8 lower-case hex digits at `at`, as Buffer's hex encoding writes its bytes. */
export function writeHex32(into: Buffer, at: number, w: number): void {
  for (let shift = 28; shift >= 0; shift -= 4) into[at++] = HEX_DIGITS[(w >>> shift) & 15]!
}

/** The client's traceparent as the W3C propagator reads it (the first, when repeated), or null where it finds none. */
function parseTraceparent(header: unknown): { traceId: string; spanId: string; sampled: boolean } | null {
  const value = Array.isArray(header) ? header[0] : header
  const parsed = typeof value === 'string' ? parseTraceParent(value) : null
  return parsed === null ? null : { traceId: parsed.traceId, spanId: parsed.spanId, sampled: (parsed.traceFlags & TraceFlags.SAMPLED) !== 0 }
}
