/**
 * The outbox: work for other services, recorded in the transaction that made
 * it necessary, claimed with a lease (so two replicas do not deliver the same
 * message at once) and retried with backoff until delivered.
 */
import type pg from 'pg'
import { withDatabase } from '@tollgate/common/db'

export interface OutboxMessage {
  id: number
  kind: string
  payload: Record<string, unknown>
  attempts: number
  /** The traceparent of the request that wrote it (tracing on), else null. */
  traceContext: string | null
}

/** A claimed message is invisible to other workers this long; delivery takes far less. */
const LEASE_SECONDS = 30

export function createOutboxRepository(pool: pg.Pool) {
  return {
    /** Claim up to `limit` due messages. */
    async claimDue(limit: number): Promise<OutboxMessage[]> {
      const { rows } = await withDatabase(() =>
        pool.query<{ id: string; kind: string; payload: Record<string, unknown>; attempts: number; trace_context: string | null }>(
          `UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2)
            WHERE id IN (SELECT id FROM outbox
                          WHERE delivered_at IS NULL AND next_attempt_at <= now()
                          ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
          RETURNING id::text, kind, payload, attempts, trace_context`,
          [limit, LEASE_SECONDS],
        ),
      )
      return rows.map(({ trace_context, ...r }) => ({ ...r, id: Number(r.id), traceContext: trace_context }))
    },

    async delivered(id: number): Promise<void> {
      await withDatabase(() => pool.query('UPDATE outbox SET delivered_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1', [id]))
    },

    async failed(id: number, error: string, retryInSeconds: number): Promise<void> {
      await withDatabase(() =>
        pool.query(
          `UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                  next_attempt_at = now() + make_interval(secs => $3)
            WHERE id = $1`,
          [id, error.slice(0, 500), retryInSeconds],
        ),
      )
    },
  }
}

export type OutboxRepository = ReturnType<typeof createOutboxRepository>
