/** Entry point: load config, build the gateway, listen. */
import { configOrExit, listen } from '@tollgate/common'
import { buildApp } from './app.js'
import { configSchema } from './config.js'

const config = configOrExit(configSchema, 'gateway')
const app = await buildApp(config)
await listen(app, { host: config.HOST, port: config.PORT, graceMs: config.SHUTDOWN_GRACE_MS })
