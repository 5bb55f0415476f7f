/**
 * The users table. Every query is parameterised; the password hash leaves
 * this file only through findByEmail, for verification.
 */
import type pg from 'pg'
import { isUniqueViolation, runQuery } from './query.js'
import { activeTraceHeaders } from '@tollgate/common'

export interface User {
  id: string
  email: string
  name: string | null
  created_at: string
  updated_at: string
}

export interface UserWithHash extends User {
  password_hash: string
}

interface UserRow {
  id: string
  email: string
  name: string | null
  created_at: Date
  updated_at: Date
  password_hash?: string
}

const COLUMNS = 'id, email, name, created_at, updated_at'
/**
 * How much longer than a token's lifetime an account cutoff lasts: covers the
 * gateways' clock tolerance (at most 300 s) and a sign-in still in bcrypt when
 * the deletion commits.
 */
const CUTOFF_MARGIN_S = 600
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

function toUser(row: UserRow): User {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  }
}

export interface UsersRepository {
  /** The new user, or null when the email is taken (the unique index decides races). */
  create(input: { email: string; passwordHash: string; name: string | null }): Promise<User | null>
  findByEmail(email: string): Promise<UserWithHash | null>
  /** Ids are opaque subjects: one that is not one of our UUIDs simply matches nobody. */
  findById(id: string): Promise<User | null>
  /** An internal upgrade, not a profile change: updated_at stays. */
  updatePasswordHash(id: string, passwordHash: string): Promise<void>
  /**
   * Delete the account, and in the same transaction revoke every token of it,
   * also one signed after this commits (a per-user cutoff, live as long as a
   * token can be), and record the task purge in the outbox. False when there
   * was no such account.
   */
  deleteAccount(id: string, tokenTtlSeconds: number, requestId: string): Promise<boolean>
}

export function createUsersRepository(pool: pg.Pool): UsersRepository {
  return {
    async create({ email, passwordHash, name }) {
      try {
        const { rows } = await runQuery(() =>
          pool.query<UserRow>(
            `INSERT INTO users (email, password_hash, name) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`,
            [email, passwordHash, name],
          ),
        )
        return toUser(rows[0]!)
      } catch (err) {
        if (isUniqueViolation(err)) return null
        throw err
      }
    },

    async findByEmail(email) {
      const { rows } = await runQuery(() =>
        pool.query<UserRow>(`SELECT ${COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)`, [email]),
      )
      const row = rows[0]
      return row ? { ...toUser(row), password_hash: row.password_hash! } : null
    },

    async findById(id) {
      if (!UUID.test(id)) return null
      const { rows } = await runQuery(() => pool.query<UserRow>(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]))
      return rows[0] ? toUser(rows[0]) : null
    },

    async deleteAccount(id, tokenTtlSeconds, requestId) {
      if (!UUID.test(id)) return false
      return runQuery(async () => {
        const client = await pool.connect()
        try {
          await client.query('BEGIN')
          const { rowCount } = await client.query('DELETE FROM users WHERE id = $1', [id])
          if (!rowCount) {
            await client.query('ROLLBACK')
            return false
          }
          // Every token of the account, whatever its iat: a sign-in racing this
          // deletion may sign after it commits (ids are never reused, so nothing
          // legitimate is caught). Kept until any such token has expired.
          const cutoffS = tokenTtlSeconds + CUTOFF_MARGIN_S
          await client.query(
            `INSERT INTO revoked_tokens (jti, user_id, expires_at, not_before)
             VALUES ('user:' || $1, $1, now() + make_interval(secs => $2), now() + make_interval(secs => $2))
             ON CONFLICT (jti) DO UPDATE SET expires_at = excluded.expires_at, not_before = excluded.not_before,
               revoked_at = now(), seq = nextval(pg_get_serial_sequence('revoked_tokens', 'seq'))`,
            [id, cutoffS],
          )
          await client.query(`INSERT INTO outbox (kind, payload, trace_context) VALUES ('purge-tasks', $1, $2)`, [
            JSON.stringify({ user_id: id, request_id: requestId }),
            activeTraceHeaders().traceparent ?? null,
          ])
          await client.query('COMMIT')
          return true
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {})
          throw err
        } finally {
          client.release()
        }
      })
    },

    async updatePasswordHash(id, passwordHash) {
      await runQuery(() =>
        pool.query('UPDATE users SET password_hash = $2 WHERE id = $1', [id, passwordHash]),
      )
    },
  }
}
