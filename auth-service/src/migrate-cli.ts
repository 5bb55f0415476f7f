/**
 * `npm run migrate -w auth-service`: apply pending migrations and exit.
 * A failure exits 1 with one line, so compose and CI stop instead of going on.
 */
import { configOrExit, describeError } from '@tollgate/common'
import { configSchema } from './config.js'
import { runMigrations } from './migrations.js'

const config = configOrExit(configSchema, 'auth-service')
try {
  const applied = await runMigrations(config.DATABASE_URL)
  process.stdout.write(`auth-service: ${applied.length ? `applied ${applied.join(', ')}` : 'schema up to date'}\n`)
} catch (err) {
  process.stderr.write(`auth-service: migration failed: ${describeError(err)}\n`)
  process.exitCode = 1
}
