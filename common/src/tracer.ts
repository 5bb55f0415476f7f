/**
 * The tracer behind the OpenTelemetry API when tracing is on (tracing-runtime.ts):
 * the SDK's Tracer and Span contract, but each span written as its OTLP JSON
 * the moment it ends (span-queue.ts) instead of kept as an object until its
 * batch is exported.
 *
 * Why not the SDK's TracerProvider, Span and BatchSpanProcessor: the SDK
 * keeps every span object until its batch is exported (up to 5 s, into the
 * old generation) and then reads them all back to serialise them; written
 * when they end, spans die young. At 100 % sampling a gateway request cost
 * 1.679 of tracing off with this tracer against 1.939 with the SDK's (lab,
 * the same batches; minor page faults 12 against 788 per 1,000 requests);
 * at 1 % the two cost the same as first built (docs/benchmark-history.md, "Session
 * 30"), and about 3 % less with the fast paths for simple attributes below
 * and span-queue.ts's nanoseconds ("Session 31"). What is
 * recorded, and the bytes sent, are the SDK's: the same attribute rules and
 * limits (@opentelemetry/core's functions), the same sampling decision
 * (headDecision), the same OTLP JSON (tested against JsonTraceSerializer for
 * the same calls on an SDK span).
 */
import {
  context,
  diag,
  INVALID_SPAN_CONTEXT,
  isSpanContextValid,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type AttributeValue,
  type Context,
  type Exception,
  type HrTime,
  type Link,
  type Span,
  type SpanContext,
  type SpanOptions,
  type SpanStatus,
  type TimeInput,
  type Tracer,
} from '@opentelemetry/api'
import {
  addHrTimes,
  AddAttributeDecision,
  cleanAttributes,
  cleanSimpleAttributes,
  hrTime,
  isTimeInput,
  isTimeInputHrTime,
  isTracingSuppressed,
  maybeAddAttribute,
  millisToHrTime,
} from '@opentelemetry/core'

/** The SDK's default span limits (OTEL_SPAN_*_LIMIT unset): 128 of each, values of any length. */
export const SPAN_LIMITS = {
  attributeCountLimit: 128,
  attributeValueLengthLimit: Infinity,
  eventCountLimit: 128,
  linkCountLimit: 128,
  attributePerEventCountLimit: 128,
  attributePerLinkCountLimit: 128,
} as const

const NO_LIMITS = { attributeCountLimit: Infinity, attributeValueLengthLimit: Infinity }
const EVENT_LIMITS = { attributeCountLimit: SPAN_LIMITS.attributePerEventCountLimit, attributeValueLengthLimit: SPAN_LIMITS.attributeValueLengthLimit }
const LINK_LIMITS = { attributeCountLimit: SPAN_LIMITS.attributePerLinkCountLimit, attributeValueLengthLimit: SPAN_LIMITS.attributeValueLengthLimit }

/** A recorded event, as ReadableSpan's. */
export interface SpanEvent {
  name: string
  time: HrTime
  attributes?: Attributes
  droppedAttributesCount?: number
}

/** A recorded link, as ReadableSpan's. */
export interface SpanLink {
  context: SpanContext
  attributes?: Attributes
  droppedAttributesCount?: number
}

/** Where an ended span goes (SpanQueue): called once per span, at its end. */
export interface EndedSpans {
  ended(span: RecordedSpan): void
}

/** The sampling of a span about to start (headDecision's, with ids drawn for a new trace). */
export interface SpanSampling {
  /** Child of a valid parent: sampled or not. */
  withParent(traceId: string, parentSampled: boolean): boolean
  /** A new trace: its id, and whether it is sampled. */
  newTrace(): { traceId: string; sampled: boolean }
  /** A new span id (16 hex digits, never all zero). */
  spanId(): string
}

export class RecordingTracer implements Tracer {
  /** The trace id of the next new trace, decided by the caller (a request's head decision); used once. */
  nextTraceId: string | null = null

  constructor(
    private readonly sampling: SpanSampling,
    private readonly sink: EndedSpans,
  ) {}

  startSpan(name: string, options: SpanOptions = {}, ctx: Context = context.active()): Span {
    if (options.root) ctx = trace.deleteSpan(ctx)
    if (isTracingSuppressed(ctx)) return trace.wrapSpanContext(INVALID_SPAN_CONTEXT)
    const parentContext = trace.getSpan(ctx)?.spanContext()
    const spanId = this.sampling.spanId()
    let parent: SpanContext | undefined
    let traceId: string
    let sampled: boolean
    if (parentContext !== undefined && isSpanContextValid(parentContext)) {
      parent = parentContext
      traceId = parentContext.traceId
      sampled = this.sampling.withParent(traceId, (parentContext.traceFlags & TraceFlags.SAMPLED) !== 0)
    } else if (this.nextTraceId !== null) {
      // Already decided (tracing-runtime.ts requestSpan): sampled.
      traceId = this.nextTraceId
      this.nextTraceId = null
      sampled = true
    } else {
      ;({ traceId, sampled } = this.sampling.newTrace())
    }
    const spanContext: SpanContext = { traceId, spanId, traceFlags: sampled ? TraceFlags.SAMPLED : TraceFlags.NONE, traceState: parent?.traceState }
    if (!sampled) return trace.wrapSpanContext(spanContext)
    return new RecordedSpan(this.sink, spanContext, name, options, parent)
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, fn: F): ReturnType<F>
  startActiveSpan<F extends (span: Span) => unknown>(name: string, options: SpanOptions, fn: F): ReturnType<F>
  startActiveSpan<F extends (span: Span) => unknown>(name: string, options: SpanOptions, ctx: Context, fn: F): ReturnType<F>
  startActiveSpan<F extends (span: Span) => unknown>(name: string, a?: SpanOptions | F, b?: Context | F, c?: F): ReturnType<F> {
    const fn = (c ?? (typeof b === 'function' ? b : a)) as F
    const options = typeof a === 'object' ? a : undefined
    const parent = typeof b === 'object' ? b : context.active()
    const span = this.startSpan(name, options, parent)
    return context.with(trace.setSpan(parent, span), fn as (span: Span) => ReturnType<F>, undefined, span)
  }
}

/**
 * A sampled span: what the SDK's SpanImpl records, with its rules (the
 * attribute, event and link limits; status precedence; nothing after end).
 */
export class RecordedSpan implements Span {
  readonly kind: SpanKind
  readonly startTime: HrTime
  endTime: HrTime = [0, 0]
  readonly attributes: Attributes
  readonly links: SpanLink[]
  readonly events: SpanEvent[] = []
  status: SpanStatus = { code: SpanStatusCode.UNSET }
  droppedAttributesCount: number
  droppedEventsCount = 0
  droppedLinksCount = 0
  private attributesCount: number
  private ended = false
  /** performance.now() at the start, and its distance from the wall clock then (the SDK's way to time a span). */
  private readonly startedAt: number
  private readonly offset: number
  private readonly startGiven: boolean

  constructor(
    private readonly sink: EndedSpans,
    private readonly context: SpanContext,
    public name: string,
    options: SpanOptions,
    readonly parentSpanContext: SpanContext | undefined,
  ) {
    const now = Date.now()
    this.startedAt = performance.now()
    this.offset = now - (this.startedAt + performance.timeOrigin)
    this.startGiven = options.startTime != null
    this.kind = options.kind ?? SpanKind.INTERNAL
    this.startTime = this.time(options.startTime ?? now)
    const links = (options.links ?? []).map(cleanLink)
    if (links.length > SPAN_LIMITS.linkCountLimit) {
      this.droppedLinksCount = links.length - SPAN_LIMITS.linkCountLimit
      this.links = links.slice(this.droppedLinksCount)
    } else {
      this.links = links
    }
    const simple = simpleAttributes(options.attributes)
    if (simple !== null) {
      this.attributes = simple
      this.attributesCount = Object.keys(simple).length
      this.droppedAttributesCount = 0
    } else {
      // As the SDK's tracer: cleaned once without limits (what a sampler would see), then within them.
      const first = cleanAttributes(options.attributes, NO_LIMITS)
      const second = cleanAttributes(first.attributes ?? {}, SPAN_LIMITS)
      this.attributes = second.attributes ?? {}
      this.attributesCount = Object.keys(this.attributes).length
      this.droppedAttributesCount = (first.droppedAttributesCount ?? 0) + (second.droppedAttributesCount ?? 0)
    }
  }

  spanContext(): SpanContext {
    return this.context
  }

  setAttribute(key: string, value: AttributeValue): this {
    if (this.isEnded()) return this
    let decision: AddAttributeDecision
    if (isPrimitive(value) && typeof key === 'string' && key.length > 0) {
      // maybeAddAttribute's decision for a string, number or boolean under a key, without the WeakSet its validity check makes for every value.
      const isNew = !Object.hasOwn(this.attributes, key)
      if (isNew && this.attributesCount >= SPAN_LIMITS.attributeCountLimit) {
        decision = AddAttributeDecision.DROP_LIMIT_REACHED
      } else {
        this.attributes[key] = value
        decision = isNew ? AddAttributeDecision.ADD_NEW : AddAttributeDecision.ADD_OVERWRITE_EXISTING
      }
    } else {
      decision = maybeAddAttribute({ key, value, attributes: this.attributes, limits: SPAN_LIMITS, currentAttributesCount: this.attributesCount })
    }
    if (decision === AddAttributeDecision.DROP_LIMIT_REACHED) {
      if (++this.droppedAttributesCount === 1) diag.warn('Dropping extra attributes.')
    } else if (decision === AddAttributeDecision.ADD_NEW) {
      this.attributesCount++
    }
    return this
  }

  setAttributes(attributes: Attributes): this {
    for (const key in attributes) if (Object.prototype.hasOwnProperty.call(attributes, key)) this.setAttribute(key, attributes[key]!)
    return this
  }

  addEvent(name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.isEnded()) return this
    if (this.events.length >= SPAN_LIMITS.eventCountLimit) {
      if (this.droppedEventsCount === 0) diag.debug('Dropping extra events.')
      this.events.shift()
      this.droppedEventsCount++
    }
    let attributes: Attributes | undefined
    if (isTimeInput(attributesOrTime)) {
      if (!isTimeInput(time)) time = attributesOrTime
    } else {
      attributes = attributesOrTime
    }
    this.events.push({ name, time: this.time(time), ...cleanSimpleAttributes(attributes, EVENT_LIMITS) })
    return this
  }

  addLink(link: Link): this {
    if (this.isEnded()) return this
    if (this.links.length >= SPAN_LIMITS.linkCountLimit) {
      if (this.droppedLinksCount === 0) diag.debug('Dropping extra links.')
      this.links.shift()
      this.droppedLinksCount++
    }
    this.links.push(cleanLink(link))
    return this
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link)
    return this
  }

  setStatus(status: SpanStatus): this {
    if (this.isEnded()) return this
    // UNSET changes nothing; OK is final; a message only goes with ERROR (the specification's rules, the SDK's code).
    if (status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) return this
    const next: SpanStatus = { code: status.code }
    if (status.code === SpanStatusCode.ERROR) {
      if (typeof status.message === 'string') next.message = status.message
      else if (status.message != null) diag.warn(`Dropping invalid status.message of type '${typeof status.message}', expected 'string'`)
    }
    this.status = next
    return this
  }

  updateName(name: string): this {
    if (this.isEnded()) return this
    this.name = name
    return this
  }

  end(endTime?: TimeInput): void {
    if (this.isEnded()) {
      diag.error(`${this.name} ${this.context.traceId}-${this.context.spanId} - You can only call end() on a span once.`)
      return
    }
    this.endTime = this.time(endTime)
    const [s, ns] = this.startTime
    if (this.endTime[0] < s || (this.endTime[0] === s && this.endTime[1] < ns)) {
      diag.warn('Inconsistent start and end time, startTime > endTime. Setting span duration to 0ms.', this.startTime, this.endTime)
      this.endTime = [s, ns]
    }
    if (this.droppedEventsCount > 0) diag.warn(`Dropped ${this.droppedEventsCount} events because eventCountLimit reached`)
    if (this.droppedLinksCount > 0) diag.warn(`Dropped ${this.droppedLinksCount} links because linkCountLimit reached`)
    this.ended = true
    this.sink.ended(this)
  }

  isRecording(): boolean {
    return !this.ended
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {}
    if (typeof exception === 'string') {
      attributes['exception.message'] = exception
    } else if (exception) {
      if (exception.code) attributes['exception.type'] = exception.code.toString()
      else if (exception.name) attributes['exception.type'] = exception.name
      if (exception.message) attributes['exception.message'] = exception.message
      if (exception.stack) attributes['exception.stacktrace'] = exception.stack
    }
    if (attributes['exception.type'] || attributes['exception.message']) this.addEvent('exception', attributes, time)
    else diag.warn(`Failed to record an exception ${String(exception)}`)
  }

  /** A time of this span, as the SDK's span reads its inputs: a performance.now() value, epoch milliseconds, a Date or an HrTime; none is now. */
  private time(input?: TimeInput): HrTime {
    if (typeof input === 'number' && input <= performance.now()) return hrTime(input + this.offset)
    if (typeof input === 'number') return millisToHrTime(input)
    if (input instanceof Date) return millisToHrTime(input.getTime())
    if (isTimeInputHrTime(input)) return input
    if (this.startGiven) return millisToHrTime(Date.now())
    return addHrTimes(this.startTime, millisToHrTime(performance.now() - this.startedAt))
  }

  private isEnded(): boolean {
    if (this.ended) {
      const { traceId, spanId } = this.context
      diag.warn(`Cannot execute the operation on ended Span {traceId: ${traceId}, spanId: ${spanId}}`, new Error(`Operation attempted on ended Span {traceId: ${traceId}, spanId: ${spanId}}`))
    }
    return this.ended
  }
}

/**
 * What cleanAttributes would leave of a span's starting attributes when they
 * are few and simple (under non-empty keys, each a string, number, boolean or
 * undefined, at most the count limit): a copy without the undefined ones. Null
 * otherwise, and then the library decides. (The library's check makes a
 * WeakSet for every value.)
 */
function simpleAttributes(attributes: Attributes | undefined): Attributes | null {
  if (attributes === undefined) return {}
  if (typeof attributes !== 'object' || attributes === null) return null
  const keys = Object.keys(attributes)
  if (keys.length > SPAN_LIMITS.attributeCountLimit) return null
  const copy: Attributes = {}
  for (const key of keys) {
    const value = attributes[key]
    if (value === undefined) continue
    if (key.length === 0 || !isPrimitive(value)) return null
    copy[key] = value
  }
  return copy
}

function isPrimitive(value: unknown): value is string | number | boolean {
  const type = typeof value
  return type === 'string' || type === 'number' || type === 'boolean'
}

function cleanLink(link: Link): SpanLink {
  return { context: link.context, ...cleanAttributes(link.attributes, LINK_LIMITS) }
}
