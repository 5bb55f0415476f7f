/**
 * The gateway, wired from its declarative file (GATEWAY_CONFIG, default the
 * bundled tollgate.yaml): the process-lifetime runtime (runtime/runtime.ts:
 * metrics, limit counters, revocation list, upstream pools) and one
 * generation built from the file (runtime/generation.ts: routes, issuers,
 * CORS, /docs, internal routes). server.ts swaps generations on reload
 * (reload/reloader.ts); this builds one app that owns both, for tests and tools.
 */
import type { App } from '@tollgate/common'
import { bundledGatewayFile, type Config } from './config.js'
import { loadGatewayFile, type GatewayDefinition } from './gateway-config/load.js'
import { gatewayVariables } from './gateway-config/variables.js'
import { createRuntime } from './runtime/runtime.js'
import { buildGeneration } from './runtime/generation.js'
import { buildAdminApp } from './admin/admin-app.js'
import type { StreamRegistry } from './streams/registry.js'
import type { DeadlineTimers } from './proxy/forwarder.js'

export type { UpstreamHandle } from './runtime/generation.js'

export interface BuildOptions {
  logStream?: NodeJS.WritableStream
  /** The clock of token verification, JWKS fetching and the revocation list's staleness (epoch ms); tests move it instead of sleeping. */
  now?: () => number
  /** The environment `${VAR}` references in the file read (default process.env); the config's own values win. */
  env?: Record<string, string | undefined>
  /** An already loaded file (the CLI and tests); default: load GATEWAY_CONFIG. */
  definition?: GatewayDefinition
  /** The process's open live streams (one registry for every app built in it); default: a new one. */
  streams?: StreamRegistry
  /** The clock of the forwarders' upstream deadlines; default Node's timers (tests: @sinonjs/fake-timers' createClock()). */
  timers?: DeadlineTimers
}

export async function buildApp(config: Config, opts: BuildOptions = {}): Promise<App> {
  const definition = opts.definition ?? loadGatewayFile(config.GATEWAY_CONFIG ?? bundledGatewayFile, gatewayVariables(config, opts.env ?? process.env))
  const runtime = await createRuntime(config, { logStream: opts.logStream, ...(opts.streams ? { streams: opts.streams } : {}), ...(opts.now ? { now: opts.now } : {}) })
  let app: App
  try {
    app = await buildGeneration(config, runtime, definition, { logStream: opts.logStream, now: opts.now, ...(opts.timers ? { timers: opts.timers } : {}) })
  } catch (err) {
    await runtime.close()
    throw err
  }
  runtime.setRevocationFeed(app.revocationFeed)
  const admin = buildAdminApp(config, { registry: runtime.metrics.registry, readiness: app.readiness, logStream: opts.logStream })
  app.decorate('admin', admin)
  app.addHook('onReady', () => runtime.start())
  app.addHook('onClose', async () => {
    await admin.close()
    await runtime.close()
  })
  return app
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The admin listener's app (/ready, /metrics): tests inject into it; the reloading server builds its own. */
    admin: App
  }
}
