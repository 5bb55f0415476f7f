/**
 * Configuration is read once, at the edge of each process, validated against a
 * JSON schema, and passed into the app factory. Nothing else reads process.env.
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse as parseDotenv } from 'dotenv'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import envSchema from 'env-schema'
import addFormats from 'ajv-formats'
import { Type, type TObject, type Static } from './typebox.js'
import { TRACES_SAMPLERS, tracingConfig } from './tracing.js'
import { describeError } from './errors.js'

/** Values from `.env` (the working directory's, else the repository root's) under the real environment. */
export function readEnv(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Record<string, string | undefined> {
  const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
  const file = [join(cwd, '.env'), join(repoRoot, '.env')].find((f) => existsSync(f))
  const fromFile = file ? parseDotenv(readFileSync(file)) : {}
  // The real environment wins over the file, as dotenv does.
  return { ...fromFile, ...env }
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

/** Values that appear in docs and examples; a deployment using one is misconfigured. */
const PLACEHOLDER_SECRETS = new Set([
  'your-secret-here-minimum-32-characters',
  'change-me-to-a-random-secret-of-at-least-32-chars',
])

/** Validate `data` against `schema`; a failure becomes one line naming the variable. */
export function loadConfig<S extends TObject>(schema: S, data: Record<string, unknown>): Static<S> {
  // env-schema mutates what it is given (coercion, defaults): hand it a copy holding only known keys.
  const known: Record<string, unknown> = {}
  for (const key of Object.keys(schema.properties)) {
    const v = data[key]
    if (v !== undefined && v !== '') known[key] = v
  }
  let config: Static<S>
  try {
    config = envSchema({
      schema,
      data: known,
      env: false,
      dotenv: false,
      ajv: {
        customOptions(ajv) {
          addFormats.default(ajv as never, ['uri', 'email'])
          return ajv
        },
      },
    }) as Static<S>
  } catch (err) {
    throw new ConfigError(describeSchemaError((err as Error).message))
  }
  const secret = (config as Record<string, unknown>).BETTER_AUTH_SECRET
  if (typeof secret === 'string' && PLACEHOLDER_SECRETS.has(secret)) {
    throw new ConfigError('BETTER_AUTH_SECRET is a placeholder value; generate one: openssl rand -base64 32')
  }
  return config
}

function describeSchemaError(message: string): string {
  // env-schema: "env/PORT must be integer" or "env must have required property 'X'".
  const first = message.split(',')[0] ?? message
  const required = /must have required property '([^']+)'/.exec(first)
  if (required) return `${required[1]} is required`
  const m = /^env\/(\S+) (.*)$/.exec(first.trim())
  if (m) {
    const [, name, what] = m
    if (name === 'BETTER_AUTH_SECRET' && /fewer than/.test(what!)) {
      return 'BETTER_AUTH_SECRET must be at least 32 characters (generate one: openssl rand -base64 32)'
    }
    const allowed = ALLOWED_VALUES[name!]
    if (allowed) return `${name} must be one of ${allowed.join(', ')}`
    if (name === 'DATABASE_URL' && /must match pattern/.test(what!)) {
      return 'DATABASE_URL must be a postgres:// or postgresql:// URL (postgres://user:password@host:5432/database)'
    }
    return `${name} ${what}`
  }
  return first
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
/** Variables with a fixed set of values: a mistake lists them (ajv only says "must be equal to constant"). */
const ALLOWED_VALUES: Record<string, string[]> = { LOG_LEVEL: LOG_LEVELS, OTEL_TRACES_SAMPLER: [...TRACES_SAMPLERS] }

/** "host:port" of a database URL, without credentials, for messages. */
export function databaseAddress(url: string): string {
  try {
    const u = new URL(url)
    return `${u.hostname || 'localhost'}:${u.port || '5432'}`
  } catch {
    return 'an unparseable URL'
  }
}

/**
 * A database failure at start as a line a user can act on: which variable, which server, what happened
 * (instead of a bare `getaddrinfo ENOTFOUND base`).
 */
export function describeDatabaseError(url: string, err: unknown): string {
  return `DATABASE_URL (${databaseAddress(url)}): ${describeError(err)}`
}

/**
 * Run `main` with the loaded config; a ConfigError ends the process with one
 * line on stderr and exit code 1, before anything listens.
 */
export function configOrExit<S extends TObject>(schema: S, service: string, env: NodeJS.ProcessEnv = process.env): Static<S> {
  try {
    return loadConfig(schema, readEnv(env))
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${service}: invalid configuration: ${err.message}\n`)
      process.exit(1)
    }
    throw err
  }
}

/** Schema fragments every service shares. */
export const commonConfig = {
  HOST: Type.String({ default: '127.0.0.1' }),
  LOG_LEVEL: Type.Union(
    LOG_LEVELS.map((l) => Type.Literal(l)),
    { default: 'info' },
  ),
  NODE_ENV: Type.String({ default: 'development' }),
  BETTER_AUTH_SECRET: Type.String({ minLength: 32 }),
  /** HMAC key for the gateway's identity proof; derived from BETTER_AUTH_SECRET when unset. */
  INTERNAL_PROOF_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  /** Seconds a gateway identity proof stays valid (clock skew plus transit). */
  INTERNAL_PROOF_WINDOW_S: Type.Integer({ minimum: 1, maximum: 300, default: 30 }),
  SHUTDOWN_GRACE_MS: Type.Integer({ minimum: 0, maximum: 60000, default: 8000 }),
  ...tracingConfig,
}

export const databaseConfig = {
  DATABASE_URL: Type.String({ pattern: '^postgres(ql)?://' }),
  DB_POOL_MAX: Type.Integer({ minimum: 1, maximum: 100, default: 10 }),
  /** How long a request may wait for a pool connection before 503. */
  DB_CONNECT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 60000, default: 2000 }),
  DB_STATEMENT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600000, default: 5000 }),
}
