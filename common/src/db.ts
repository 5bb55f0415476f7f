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

/**
 * By code and class, never by message text. A server's answer is a
 * DatabaseError with a SQLSTATE; a socket failure carries Node's code; and
 * node-postgres reports a connection it lost, could not get in time, or gave
 * up reading from ("Connection terminated", a pool or query timeout) as a
 * plain Error with no code at all. Our own failures are HttpErrors or typed.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') {
    // 57014: statement timeout / query canceled.
    return UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_NODE.has(code) || code === '57014'
  }
  return Object.getPrototypeOf(err) === Error.prototype
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
