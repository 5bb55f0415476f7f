/**
 * PostgreSQL pool with the timeouts that keep a dead database from hanging
 * requests, and the error listener that keeps it from crashing the process.
 */
import pg from 'pg'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { installPoolMetrics } from './metrics.js'
import { errors } from './errors.js'
import { traceQueries } from './db-tracing.js'

export interface PoolOptions {
  connectionString: string
  max: number
  connectTimeoutMs: number
  statementTimeoutMs: number
  applicationName: string
}

export function createPool(opts: PoolOptions, log: FastifyBaseLogger): pg.Pool {
  const pool = new pg.Pool({
    connectionString: opts.connectionString,
    max: opts.max,
    connectionTimeoutMillis: opts.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    // Server-side bound plus a client-side backstop a little later.
    statement_timeout: opts.statementTimeoutMs,
    query_timeout: opts.statementTimeoutMs + 1000,
    application_name: opts.applicationName,
    keepAlive: true,
  })
  // An idle client losing its connection emits here; unhandled it would kill the process.
  pool.on('error', (err) => log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'database connection lost'))
  return pool
}

/** SQLSTATE classes and driver errors that mean "the database is not reachable now". */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0[1-5])/
const UNAVAILABLE_NODE = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN',
  'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'EADDRNOTAVAIL', 'ENOENT',
])

export function isDatabaseUnavailable(err: unknown): boolean {
  const e = err as { code?: string; message?: string }
  if (!e) return false
  if (typeof e.code === 'string' && (UNAVAILABLE_SQLSTATE.test(e.code) || UNAVAILABLE_NODE.has(e.code))) return true
  if (e.code === '57014') return true // statement timeout / query canceled
  const m = e.message ?? ''
  return (
    m.includes('timeout exceeded when trying to connect') ||
    m.includes('Connection terminated') ||
    m.includes('Query read timeout') ||
    m.includes('Client has encountered a connection error') ||
    m.includes('connection timeout')
  )
}

/** Run a query function, turning "database unreachable" into a 503 the envelope understands. */
export async function withDatabase<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (isDatabaseUnavailable(err)) throw errors.unavailable('Database unavailable')
    throw err
  }
}

export interface DatabaseSettings {
  DATABASE_URL: string
  DB_POOL_MAX: number
  DB_CONNECT_TIMEOUT_MS: number
  DB_STATEMENT_TIMEOUT_MS: number
}

/**
 * A service's pool from its configuration: pool metrics on /metrics, and
 * closed when the app closes (after in-flight requests have finished).
 */
export function attachDatabase(app: FastifyInstance, config: DatabaseSettings, applicationName: string): pg.Pool {
  const pool = createPool(
    {
      connectionString: config.DATABASE_URL,
      max: config.DB_POOL_MAX,
      connectTimeoutMs: config.DB_CONNECT_TIMEOUT_MS,
      statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
      applicationName,
    },
    app.log,
  )
  installPoolMetrics(app, pool)
  if (app.tracing) traceQueries(pool, app.tracing.tracer, databaseName(config.DATABASE_URL))
  app.addHook('onClose', async () => {
    await pool.end()
  })
  return pool
}

function databaseName(url: string): string {
  try {
    return decodeURIComponent(new URL(url).pathname.slice(1)) || 'postgres'
  } catch {
    return 'postgres'
  }
}
