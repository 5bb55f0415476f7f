/**
 * Test helpers: an app on TEST_DATABASE_URL (migrated first), requests signed
 * the way the gateway signs them, and random user ids so suites never depend
 * on what earlier runs left in the database.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import pg from 'pg'
import { loadConfig, proofKey, signIdentity, type App, type Identity } from '@tollgate/common'
import { buildApp } from '../src/app.js'
import { configSchema, type Config } from '../src/config.js'
import { runMigrations } from '../src/migrations.js'

type Tap = { teardown(fn: () => unknown): void }

export const SECRET = 'test-secret-for-task-service-0123456789abcdef'
export const KEY = proofKey(SECRET)

export function testDatabaseUrl(): string {
  const url = process.env.TEST_DATABASE_URL
  if (!url) throw new Error('TEST_DATABASE_URL is required (the test runner sets it)')
  return url
}

export function testConfig(overrides: Record<string, unknown> = {}): Config {
  return loadConfig(configSchema, {
    DATABASE_URL: testDatabaseUrl(),
    BETTER_AUTH_SECRET: SECRET,
    LOG_LEVEL: 'silent',
    ...overrides,
  })
}

let migrated: Promise<unknown> | undefined
export function migrateOnce(): Promise<unknown> {
  migrated ??= runMigrations(testDatabaseUrl())
  return migrated
}

/** A migrated app, closed when the test ends. */
export async function build(
  t: Tap,
  overrides: Record<string, unknown> = {},
  migrate = true,
  opts: { logStream?: NodeJS.WritableStream } = {},
): Promise<App> {
  if (migrate) await migrateOnce()
  const app = await buildApp(testConfig(overrides), opts)
  t.teardown(() => app.close())
  return app
}

/** Our auth-service's ids are UUIDs. */
export const newUserId = (): string => randomUUID()
/** Better Auth's default ids: 32 random characters, not a UUID. */
export const newBetterAuthId = (): string => randomBytes(24).toString('base64url').slice(0, 32)

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

export interface InjectOptions {
  method: Method
  /** Exact path and query as sent: it is what the proof signs. */
  url: string
  /** Identity the gateway vouches for; omit to send no proof at all. */
  userId?: string
  caller?: Identity['caller']
  payload?: unknown
  headers?: Record<string, string>
  key?: Buffer
  now?: number
}

/** A request as the gateway forwards it: identity proof plus the x-request-id it signed. */
export function inject(app: App, o: InjectOptions) {
  const requestId = randomUUID()
  const proof =
    o.userId === undefined && o.caller === undefined
      ? {}
      : signIdentity(
          o.key ?? KEY,
          { caller: o.caller ?? 'user', userId: o.userId ?? '' },
          o.method,
          o.url,
          requestId,
          o.now,
        )
  return app.inject({
    method: o.method,
    url: o.url,
    headers: { 'x-request-id': requestId, ...proof, ...o.headers },
    ...(o.payload === undefined ? {} : typeof o.payload === 'string' ? { payload: o.payload } : { payload: o.payload as object }),
  })
}

/** Shorthand: an identified user acting on their own tasks. */
export function asUser(app: App, userId: string) {
  const base = `/api/${userId}/tasks`
  const call = (method: Method, path: string, payload?: unknown) =>
    inject(app, { method, url: `${base}${path}`, userId, payload })
  return {
    base,
    list: (query = '') => call('GET', query ? `?${query}` : ''),
    create: (payload: unknown) => call('POST', '', payload),
    get: (id: string) => call('GET', `/${id}`),
    update: (id: string, payload: unknown) => call('PUT', `/${id}`, payload),
    toggle: (id: string) => call('PATCH', `/${id}/complete`),
    remove: (id: string) => call('DELETE', `/${id}`),
  }
}

/** Direct database access for setup the API cannot express (rows sharing one timestamp). */
export function database(t: Tap): pg.Pool {
  const pool = new pg.Pool({ connectionString: testDatabaseUrl(), max: 2 })
  t.teardown(() => pool.end())
  return pool
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
