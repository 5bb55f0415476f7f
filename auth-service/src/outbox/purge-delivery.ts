/**
 * Delivers outbox messages: today, "purge the tasks of a deleted account",
 * sent to the task-service through the gateway's internal listener with this
 * service's own short-lived service token. Runs on a timer and right after a
 * deletion; failures back off exponentially (capped), and nothing is dropped.
 */
import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { REQUEST_ID_HEADER, REQUEST_ID_LOG_LABEL, type Tracing } from '@tollgate/common'
import { AccountPurge } from '@tollgate/common/contracts'
import { traceDelivery } from './delivery-tracing.js'
import type { OutboxMessage, OutboxRepository } from './outbox-repository.js'

export interface DeliveryOptions {
  outbox: OutboxRepository
  gatewayInternalUrl: string
  /** A valid service token, refreshed by the caller before it expires. */
  serviceToken: () => Promise<string>
  pollMs: number
  log: FastifyBaseLogger
  /** Per-request timeout toward the gateway. */
  timeoutMs?: number
  /** Each delivery as a span, child of the deletion's trace (tracing on). */
  tracing?: Tracing | null
}

const MAX_BACKOFF_S = 300

export function backoffSeconds(attempts: number): number {
  const base = Math.min(MAX_BACKOFF_S, 2 ** Math.min(attempts, 10))
  return base + Math.random() * base * 0.2 // jitter, so replicas do not retry in step
}

export function createPurgeDelivery(opts: DeliveryOptions) {
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> | undefined
  let stopped = false
  let again = false

  async function deliverOnce(message: OutboxMessage): Promise<void> {
    if (message.kind !== 'purge-tasks') throw new Error(`unknown outbox kind ${message.kind}`)
    const userId = String(message.payload.user_id)
    const requestId = typeof message.payload.request_id === 'string' ? message.payload.request_id : randomUUID()
    const res = await fetch(`${opts.gatewayInternalUrl}${AccountPurge.pathFor(userId)}`, {
      method: AccountPurge.method,
      headers: { authorization: `Bearer ${await opts.serviceToken()}`, [REQUEST_ID_HEADER]: requestId, ...traceHeaders() },
      signal: AbortSignal.timeout(opts.timeoutMs ?? 5000),
    })
    await res.arrayBuffer().catch(() => undefined)
    if (!res.ok) throw new Error(`purge answered ${res.status}`)
    opts.log.info({ [REQUEST_ID_LOG_LABEL]: requestId, userId, attempts: message.attempts + 1, ...traced?.logFields() }, 'account purge delivered')
  }

  const traced = opts.tracing ? traceDelivery(opts.tracing) : null
  const traceHeaders = traced ? traced.headers : () => undefined
  const deliverAndMark = async (message: OutboxMessage): Promise<void> => {
    await deliverOnce(message)
    await opts.outbox.delivered(message.id)
  }
  /** Deliver, then mark delivered: in the delivery's span when tracing is on. */
  const deliver = traced ? (message: OutboxMessage) => traced.run(message, () => deliverAndMark(message)) : deliverAndMark

  async function runOnce(): Promise<void> {
    const due = await opts.outbox.claimDue(20)
    for (const message of due) {
      try {
        await deliver(message)
      } catch (err) {
        const retryIn = backoffSeconds(message.attempts)
        opts.log.warn({ ...(message.traceContext ? { trace_id: message.traceContext.split('-')[1] } : {}), outboxId: message.id, attempts: message.attempts + 1, retryInS: Math.round(retryIn), err: { message: (err as Error).message } }, 'outbox delivery failed; will retry')
        await opts.outbox.failed(message.id, (err as Error).message, retryIn).catch(() => {})
      }
    }
  }

  /** Run now (coalesced with a run in progress). */
  function kick(): Promise<void> {
    if (running) {
      again = true
      return running
    }
    running = (traced ? traced.detached(runOnce) : runOnce())
      .catch((err) => opts.log.warn({ err: { message: (err as Error).message } }, 'outbox unavailable'))
      .finally(() => {
        running = undefined
        if (again && !stopped) {
          again = false
          void kick()
        }
      })
    return running
  }

  return {
    kick,
    start() {
      const tick = () => {
        if (stopped) return
        void kick().finally(() => {
          if (!stopped) {
            timer = setTimeout(tick, opts.pollMs)
            timer.unref()
          }
        })
      }
      tick()
    },
    async stop() {
      stopped = true
      clearTimeout(timer)
      await running
    },
  }
}
