/** Entry point: load config and the gateway's file, build the gateway, listen. */
import { ConfigError, configOrExit, listen } from '@tollgate/common'
import { buildApp } from './app.js'
import { bundledGatewayFile, configSchema } from './config.js'
import { loadGatewayFile } from './gateway-config/load.js'
import { gatewayVariables } from './gateway-config/variables.js'

const config = configOrExit(configSchema, 'gateway')
const invalid = (err: unknown): never => {
  // Settings that need more than the schema (the file, JWT_TRUSTED_ISSUERS) are checked here: nothing starts on a bad one.
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`gateway: invalid configuration:\n${err.message}\n`)
  process.exit(1)
}
let definition
try {
  definition = loadGatewayFile(config.GATEWAY_CONFIG ?? bundledGatewayFile, gatewayVariables(config, process.env))
} catch (err) {
  invalid(err)
}
const app = await buildApp(config, { definition }).catch(invalid)
const listeners = definition!.listeners
// Public first, internal last: the launcher (and a probe on the internal port) takes the internal listener's /health as "up".
await listen(app, { host: listeners.public?.host ?? config.HOST, port: listeners.public?.port ?? config.PORT, graceMs: config.SHUTDOWN_GRACE_MS })
await app.admin.listen({ host: listeners.admin?.host ?? config.ADMIN_HOST, port: listeners.admin?.port ?? config.ADMIN_PORT })
await app.internal.listen({ host: listeners.internal?.host ?? config.INTERNAL_HOST, port: listeners.internal?.port ?? config.INTERNAL_PORT })
