/**
 * The gateway's admin listener (ADMIN_HOST:ADMIN_PORT, loopback by default,
 * never public): GET /ready with the state of every store and upstream, and
 * GET /metrics, the gateway's Prometheus registry. The public listener keeps
 * GET /health only, so neither the detail of /ready nor the metrics (routes,
 * upstream names and targets, error causes) reach a client.
 */
import { createService, metricsHandler, readinessHandler, type App, type ReadinessChecks } from '@tollgate/common'
import type { Registry } from 'prom-client'
import type { Config } from '../config.js'

export interface AdminDeps {
  /** The registry the public listener's metrics live in. */
  registry: Registry
  /** The checks, or where to find them now (the reloading gateway's current generation). */
  readiness: ReadinessChecks | (() => ReadinessChecks)
  logStream?: NodeJS.WritableStream
}

export function buildAdminApp(config: Pick<Config, 'LOG_LEVEL'>, deps: AdminDeps): App {
  // probes: false: its own /ready and /metrics would describe this small app, not the gateway.
  const app = createService({ name: 'gateway-admin', logLevel: config.LOG_LEVEL, logStream: deps.logStream, openapi: false, probes: false })
  app.get('/ready', { logLevel: 'warn' }, readinessHandler(deps.readiness))
  app.get('/metrics', { logLevel: 'warn' }, metricsHandler(deps.registry))
  return app
}

/** /docs on unless DOCS_ENABLED says otherwise; off by default in production. */
export function docsEnabled(config: Pick<Config, 'DOCS_ENABLED' | 'NODE_ENV'>): boolean {
  return config.DOCS_ENABLED ?? config.NODE_ENV !== 'production'
}
