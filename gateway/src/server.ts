/** Entry point: load config, build the gateway, listen. */
import { ConfigError, configOrExit, listen } from '@tollgate/common'
import { buildApp } from './app.js'
import { configSchema } from './config.js'

const config = configOrExit(configSchema, 'gateway')
const app = await buildApp(config).catch((err) => {
  // Settings that need more than the schema (JWT_TRUSTED_ISSUERS) are checked while building.
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`gateway: invalid configuration: ${err.message}\n`)
  process.exit(1)
})
await app.internal.listen({ host: config.INTERNAL_HOST, port: config.INTERNAL_PORT })
await listen(app, { host: config.HOST, port: config.PORT, graceMs: config.SHUTDOWN_GRACE_MS })
