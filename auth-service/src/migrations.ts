/**
 * The auth-service's schema history: its own migrations table and advisory
 * lock, so replicas starting together take turns and never mix histories with
 * the task-service's.
 */
import { fileURLToPath } from 'node:url'
import { migrate } from '@tollgate/common/migrate'

// Resolves to auth-service/migrations from both src/ (tests) and dist/ (built).
export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url))

export async function runMigrations(databaseUrl: string, log?: (msg: string) => void): Promise<string[]> {
  return migrate({
    databaseUrl,
    dir: MIGRATIONS_DIR,
    table: 'auth_migrations',
    lockValue: 7301,
    ...(log ? { log } : {}),
  })
}
