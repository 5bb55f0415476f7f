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
