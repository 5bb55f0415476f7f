/**
 * Signed-out tokens, and subjects whose tokens issued before a time are all
 * revoked (an account deleted; a user of a trusted external issuer signed
 * out). Written here; the gateway reads them (by seq) to refuse the tokens
 * everywhere, also after restarts.
 */
import type pg from 'pg'
import type { RevocationEntry, RevocationPage } from '@tollgate/common/contracts'
import { runQuery } from './query.js'

export interface RevocationsRepository {
  /** Idempotent: revoking the same jti twice is not an error. */
  revoke(input: { jti: string; userId: string; exp: number }): Promise<void>
  /**
   * Every token of `sub` from `issuer` issued at or before `notBefore` (epoch
   * seconds) is revoked until `exp`. Repeating it only moves both later.
   */
  revokeSubject(input: { issuer: string; sub: string; notBefore: number; exp: number }): Promise<void>
  /** Unexpired revocations recorded after `after`, oldest first. */
  since(after: number, limit: number): Promise<RevocationPage>
  /** Drop entries whose tokens have expired anyway; keeps the list bounded. */
  purgeExpired(): Promise<number>
}

/** Longer than any statement may run (DB_STATEMENT_TIMEOUT_MS is at most minutes; default 5 s). */
const REPEAT_WINDOW_S = 15

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

    async revokeSubject({ issuer, sub, notBefore, exp }) {
      // One row per (issuer, subject): a synthetic jti keeps the table bounded by subjects, not sign-outs.
      await runQuery(() =>
        pool.query(
          `INSERT INTO revoked_tokens (jti, user_id, issuer, expires_at, not_before)
           VALUES ('subject:' || $1 || ' ' || $2, $2, $1, to_timestamp($4), to_timestamp($3))
           ON CONFLICT (jti) DO UPDATE SET
             expires_at = greatest(revoked_tokens.expires_at, excluded.expires_at),
             not_before = greatest(revoked_tokens.not_before, excluded.not_before),
             revoked_at = now(), seq = nextval(pg_get_serial_sequence('revoked_tokens', 'seq'))`,
          [issuer, sub, notBefore, exp],
        ),
      )
    },

    async since(after, limit) {
      return runQuery(async () => {
        const { rows: top } = await pool.query<{ max: string | null }>('SELECT max(seq)::text AS max FROM revoked_tokens')
        const max = Number(top[0]?.max ?? 0)
        const reset = after > max
        const from = reset ? 0 : after
        // seq is taken at insert but rows become visible at commit, so a lower
        // seq can appear after a higher one: every page also repeats the last
        // few seconds of revocations below the cursor (a statement cannot take
        // longer than that). Paging counts only rows past the cursor, so a
        // burst of recent revocations cannot keep a reader on one page.
        // Ordered by the numeric column (seq::text would sort "10" before "9").
        const select = `SELECT seq::text AS seq_text, jti, floor(extract(epoch FROM expires_at))::text AS exp, user_id, issuer,
                               floor(extract(epoch FROM not_before))::text AS not_before
                          FROM revoked_tokens`
        type Row = { seq_text: string; jti: string; exp: string; user_id: string; not_before: string | null; issuer: string | null }
        const { rows: fresh } = await pool.query<Row>(
          `${select} WHERE seq > $1 AND expires_at > now() ORDER BY revoked_tokens.seq LIMIT $2`,
          [from, limit + 1],
        )
        const { rows: repeated } = await pool.query<Row>(
          `${select} WHERE seq <= $1 AND revoked_at > now() - interval '${REPEAT_WINDOW_S} seconds' AND expires_at > now()
            ORDER BY revoked_tokens.seq DESC LIMIT $2`,
          [from, limit],
        )
        const more = fresh.length > limit
        const newRows = more ? fresh.slice(0, limit) : fresh
        const last = newRows.length ? Number(newRows[newRows.length - 1]!.seq_text) : 0
        const cursor = Math.max(last, reset ? max : from)
        const page = [...repeated.reverse(), ...newRows]
        const revoked = page.map((r): RevocationEntry => {
          if (r.not_before === null) return { jti: r.jti, exp: Number(r.exp) }
          const cutoff = { jti: r.jti, exp: Number(r.exp), user_id: r.user_id, not_before: Number(r.not_before) }
          return r.issuer === null ? cutoff : { ...cutoff, issuer: r.issuer }
        })
        return { cursor, reset, more, revoked }
      })
    },

    async purgeExpired() {
      const { rowCount } = await runQuery(() => pool.query('DELETE FROM revoked_tokens WHERE expires_at < now()'))
      return rowCount ?? 0
    },
  }
}
