/**
 * How the repositories talk to PostgreSQL: an unreachable database becomes a
 * 503, and a value the column cannot hold becomes a 400, never a 500. (Schemas
 * reject such values first; this is the backstop.)
 */
import { errors } from '@tollgate/common'
import { withDatabase } from '@tollgate/common/db'

/** SQLSTATE 22001 string too long, 22021 bad byte (NUL), 22P02 bad text for the type. */
const BAD_VALUE = new Set(['22001', '22021', '22P02'])

export async function runQuery<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await withDatabase(fn)
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'string' && BAD_VALUE.has(code)) throw errors.validation('Invalid value')
    throw err
  }
}

/** SQLSTATE unique_violation, for callers that turn it into a 409. */
export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown })?.code === '23505'
}
