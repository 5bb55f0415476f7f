/** Entry point: load config and the gateway's file, start the gateway (reloaded on SIGHUP, see reload/reloader.ts). */
import { ConfigError, configOrExit } from '@tollgate/common'
import { bundledGatewayFile, configSchema } from './config.js'
import { gatewayVariables } from './gateway-config/variables.js'
import { readGatewayFile, startReloadingGateway, type LoadedFile } from './reload/reloader.js'

const config = configOrExit(configSchema, 'gateway')
const invalid = (err: unknown): never => {
  // Settings that need more than the schema (the file, JWT_TRUSTED_ISSUERS) are checked here: nothing starts on a bad one.
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`gateway: invalid configuration:\n${err.message}\n`)
  process.exit(1)
}
const file = config.GATEWAY_CONFIG ?? bundledGatewayFile
const variables = () => gatewayVariables(config, process.env)
let first: LoadedFile
try {
  first = readGatewayFile(file, variables())
} catch (err) {
  invalid(err)
}
await startReloadingGateway(config, first!, { file, variables }).catch(invalid)
