/**
 * `npm run migrate -w task-service`: apply pending migrations and exit.
 * A failure is one line on stderr and exit code 1, never a green exit.
 */
import { configOrExit, describeError } from '@tollgate/common'
import { migrateConfigSchema } from './config.js'
import { runMigrations } from './migrations.js'

const SERVICE = 'task-service'
const config = configOrExit(migrateConfigSchema, SERVICE)

try {
  const applied = await runMigrations(config.DATABASE_URL)
  process.stdout.write(
    applied.length > 0 ? `${SERVICE}: applied ${applied.join(', ')}\n` : `${SERVICE}: no pending migrations\n`,
  )
} catch (err) {
  process.stderr.write(`${SERVICE}: migration failed: ${describeError(err)}\n`)
  process.exitCode = 1
}
