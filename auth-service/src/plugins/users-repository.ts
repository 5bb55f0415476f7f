/**
 * The users table. Every query is parameterised; the password hash leaves
 * this file only through findByEmail, for verification.
 */
import type pg from 'pg'
import { isUniqueViolation, runQuery } from './query.js'

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

    async updatePasswordHash(id, passwordHash) {
      await runQuery(() =>
        pool.query('UPDATE users SET password_hash = $2 WHERE id = $1', [id, passwordHash]),
      )
    },
  }
}
