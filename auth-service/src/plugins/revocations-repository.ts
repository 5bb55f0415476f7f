/**
 * Signed-out tokens. Written here; the gateway reads them (by seq) to refuse
 * the token everywhere, also after restarts.
 */
import type pg from 'pg'
import { runQuery } from './query.js'

export interface RevocationsRepository {
  /** Idempotent: revoking the same jti twice is not an error. */
  revoke(input: { jti: string; userId: string; exp: number }): Promise<void>
}

export function createRevocationsRepository(pool: pg.Pool): RevocationsRepository {
  return {
    async revoke({ jti, userId, exp }) {
      await runQuery(() =>
        pool.query(
          `INSERT INTO revoked_tokens (jti, user_id, expires_at) VALUES ($1, $2, to_timestamp($3))
           ON CONFLICT (jti) DO NOTHING`,
          [jti, userId, exp],
        ),
      )
    },
  }
}
