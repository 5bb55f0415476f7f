/**
 * Test helpers: an app against TEST_DATABASE_URL (migrated first), requests
 * that carry a valid gateway identity proof, and direct SQL for assertions.
 * The database persists across runs and is shared: never truncate, always
 * use fresh random emails.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import pg from 'pg'
import type { LightMyRequestResponse } from 'fastify'
import { loadConfig, proofKey, signIdentity, type App, type Identity } from '@tollgate/common'
import { buildApp } from '../src/app.js'
import { configSchema, type Config } from '../src/config.js'
import { runMigrations } from '../src/migrations.js'

const url = process.env.TEST_DATABASE_URL
if (!url) throw new Error('TEST_DATABASE_URL is required (the test runner sets it)')
export const DATABASE_URL: string = url

export const SECRET = 'test-secret-for-auth-service-0123456789-abcdef'
export const PROOF_KEY = proofKey(SECRET)

/** Anything tap's `t` offers that the helpers need. */
interface Teardown {
  teardown(fn: () => unknown): void
}

export function testConfig(overrides: Record<string, unknown> = {}): Config {
  return loadConfig(configSchema, {
    DATABASE_URL,
    BETTER_AUTH_SECRET: SECRET,
    BCRYPT_COST: '10', // the minimum, to keep tests quick
    LOG_LEVEL: 'silent',
    MIGRATE_ON_START: 'false',
    ...overrides,
  })
}

let migrated: Promise<string[]> | undefined
export function migrateOnce(): Promise<string[]> {
  migrated ??= runMigrations(DATABASE_URL)
  return migrated
}

export async function build(
  t: Teardown,
  overrides: Record<string, unknown> = {},
  opts: { logStream?: NodeJS.WritableStream } = {},
): Promise<App> {
  await migrateOnce()
  const app = await buildApp(testConfig(overrides), opts)
  t.teardown(() => app.close())
  return app
}

export const anonymous: Identity = { caller: 'anonymous', userId: '' }
export const asUser = (userId: string): Identity => ({ caller: 'user', userId })

export interface InjectOptions {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH'
  url: string
  payload?: unknown
  headers?: Record<string, string>
  /** null sends no proof at all. */
  identity?: Identity | null
  /** Sign for a different method/url/time than the request (negative tests). */
  sign?: { method?: string; url?: string; now?: number }
}

/** app.inject with the headers the gateway would add. */
export function inject(app: App, opts: InjectOptions): Promise<LightMyRequestResponse> {
  const requestId = randomUUID()
  const identity = opts.identity === undefined ? anonymous : opts.identity
  const proof = identity
    ? signIdentity(PROOF_KEY, identity, opts.sign?.method ?? opts.method, opts.sign?.url ?? opts.url, requestId, opts.sign?.now)
    : {}
  const payload = opts.payload
  return app.inject({
    method: opts.method,
    url: opts.url,
    headers: { 'x-request-id': requestId, ...proof, ...opts.headers },
    ...(payload === undefined ? {} : typeof payload === 'string' ? { payload } : { payload: payload as object }),
  })
}

export function uniqueEmail(tag = 'user'): string {
  return `${tag}-${randomBytes(8).toString('hex')}@example.com`
}

export const PASSWORD = 'correct horse battery staple'

export async function signup(
  app: App,
  body: { email?: string; password?: string; name?: string | null } = {},
): Promise<{ id: string; email: string; password: string; res: LightMyRequestResponse }> {
  const email = body.email ?? uniqueEmail()
  const password = body.password ?? PASSWORD
  const res = await inject(app, { method: 'POST', url: '/api/auth/signup', payload: { ...body, email, password } })
  if (res.statusCode !== 201) throw new Error(`signup failed: ${res.statusCode} ${res.body}`)
  return { id: res.json().id, email: res.json().email, password, res }
}

export function signin(app: App, email: string, password: string): Promise<LightMyRequestResponse> {
  return inject(app, { method: 'POST', url: '/api/auth/signin', payload: { email, password } })
}

/** A direct connection for assertions the API cannot make. */
export async function db(t: Teardown): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: DATABASE_URL })
  await client.connect()
  t.teardown(() => client.end())
  return client
}

/** Nothing secret in a successful answer: no hash, no password field, no bcrypt string. */
export function secretFree(res: LightMyRequestResponse, password: string): boolean {
  return !/password|hash|\$2[aby]\$/i.test(res.body) && !res.body.includes(password)
}
