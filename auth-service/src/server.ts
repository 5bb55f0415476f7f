/**
 * The auth-service process: validate config, migrate if asked, listen.
 * Every failure before listening is one line on stderr and exit code 1.
 */
import { ConfigError, configOrExit, describeDatabaseError, describeError, listen } from '@tollgate/common'
import { buildApp } from './app.js'
import { configSchema } from './config.js'
import { runMigrations } from './migrations.js'

const config = configOrExit(configSchema, 'auth-service')

if (config.MIGRATE_ON_START) {
  try {
    await runMigrations(config.DATABASE_URL)
  } catch (err) {
    process.stderr.write(`auth-service: migration failed: ${describeDatabaseError(config.DATABASE_URL, err)}\n`)
    process.exit(1)
  }
}

const app = await buildApp(config).catch((err) => {
  // Settings checked while building (SERVICE_CREDENTIALS) fail the same way as the schema's.
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`auth-service: invalid configuration: ${err.message}\n`)
  process.exit(1)
})
await listen(app, { host: config.HOST, port: config.PORT, graceMs: config.SHUTDOWN_GRACE_MS }).catch((err: unknown) => {
  process.stderr.write(`auth-service: cannot listen: ${describeError(err)}\n`)
  process.exit(1)
})
