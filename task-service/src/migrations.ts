/**
 * The task-service's own migrations: its folder, its history table and its
 * advisory lock, so it never mixes with the auth-service's in a shared database.
 */
import { fileURLToPath } from 'node:url'
import { migrate } from '@tollgate/common/migrate'

/** Resolves to task-service/migrations from both src/ (tests) and dist/ (production). */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url))

export async function runMigrations(databaseUrl: string, log?: (msg: string) => void): Promise<string[]> {
  return migrate({
    databaseUrl,
    dir: MIGRATIONS_DIR,
    table: 'task_migrations',
    lockValue: 7302,
    ...(log ? { log } : {}),
  })
}

/**
 * An error as one line for stderr. Some carry no message: a connection
 * refused on every address of a host (localhost as ::1 and 127.0.0.1) is an
 * AggregateError with an empty one, so its parts and code are used instead.
 */
export function describeError(err: unknown): string {
  const e = err as { message?: unknown; code?: unknown; errors?: unknown } | null | undefined
  let message = typeof e?.message === 'string' ? e.message : e instanceof Error ? '' : String(err)
  if (!message && Array.isArray(e?.errors)) {
    message = [...new Set(e.errors.map((x) => (x as { message?: unknown })?.message).filter((m) => typeof m === 'string' && m))].join('; ')
  }
  message = message.replace(/\s+/g, ' ').trim()
  if (!message) message = typeof e?.code === 'string' ? e.code : 'unknown error'
  return message
}
