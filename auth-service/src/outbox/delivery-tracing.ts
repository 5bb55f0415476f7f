/**
 * An outbox delivery as a span of the trace of the request that wrote the
 * message (its traceparent is stored with the row): the purge of a deleted
 * account shows under the deletion, however much later and from whichever
 * replica it runs, each attempt a span of its own. Its traceparent goes on
 * to the gateway's internal listener, and from there to the task-service.
 */
import { context, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api'
import { activeTraceHeaders, extractContext, failSpan, type Tracing } from '@tollgate/common'
import type { OutboxMessage } from './outbox-repository.js'

export function traceDelivery(tracing: Tracing) {
  const { tracer } = tracing
  return {
    /** The active delivery span's traceparent, for the request to the gateway. */
    headers: () => activeTraceHeaders(),
    /**
     * Outside any request's context: a run kicked by a deletion must not make
     * its claim query, nor the runs it chains, part of that request's trace.
     */
    detached: <T>(fn: () => T): T => context.with(ROOT_CONTEXT, fn),
    /** The active delivery span's ids, for its log lines. */
    logFields(): { trace_id?: string; span_id?: string } {
      const ids = trace.getSpan(context.active())?.spanContext()
      return ids ? { trace_id: ids.traceId, span_id: ids.spanId } : {}
    },
    run<T>(message: OutboxMessage, fn: () => Promise<T>): Promise<T> {
      const parent = message.traceContext ? extractContext({ traceparent: message.traceContext }) : context.active()
      const span = tracer.startSpan(
        `outbox deliver ${message.kind}`,
        {
          kind: SpanKind.CONSUMER,
          attributes: { 'messaging.system': 'outbox', 'messaging.operation.type': 'process', 'messaging.message.id': String(message.id), 'tollgate.outbox.attempt': message.attempts + 1 },
        },
        parent,
      )
      return context.with(trace.setSpan(parent, span), fn).then(
        (value) => {
          span.end()
          return value
        },
        (err: unknown) => {
          failSpan(span, err)
          span.end()
          throw err
        },
      )
    },
  }
}
