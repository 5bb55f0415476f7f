/**
 * The task-service process: config from the environment, migrations, then
 * listen. The only file that listens; failures before that are one line on
 * stderr and exit code 1, so compose and CI stop.
 */
import { configOrExit, describeDatabaseError, describeError, listen } from '@tollgate/common'
import { buildApp } from './app.js'
import { configSchema } from './config.js'
import { runMigrations } from './migrations.js'

const SERVICE = 'task-service'

function fail(what: string, err: unknown): never {
  process.stderr.write(`${SERVICE}: ${what}: ${describeError(err)}\n`)
  process.exit(1)
}

const config = configOrExit(configSchema, SERVICE)

let applied: string[] = []
if (config.MIGRATE_ON_START) {
  applied = await runMigrations(config.DATABASE_URL).catch((err: unknown) => {
    process.stderr.write(`${SERVICE}: migration failed: ${describeDatabaseError(config.DATABASE_URL, err)}\n`)
    process.exit(1)
  })
}

const app = await buildApp(config)
if (applied.length > 0) app.log.info({ migrations: applied }, 'migrations applied')

await listen(app, { host: config.HOST, port: config.PORT, graceMs: config.SHUTDOWN_GRACE_MS }).catch((err: unknown) =>
  fail('cannot listen', err),
)
