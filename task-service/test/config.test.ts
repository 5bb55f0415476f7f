import t from 'tap'
import { ConfigError, loadConfig } from '@tollgate/common'
import { configSchema, migrateConfigSchema } from '../src/config.js'

const base = { DATABASE_URL: 'postgres://localhost/x', BETTER_AUTH_SECRET: 'a-test-secret-that-is-32-chars-long!' }

t.test('defaults', async (t) => {
  const config = loadConfig(configSchema, base)
  t.equal(config.PORT, 3002)
  t.equal(config.MIGRATE_ON_START, true)
  t.equal(config.HOST, '127.0.0.1')
  t.equal(config.DB_CONNECT_TIMEOUT_MS, 2000)
  t.equal(config.TASK_EVENTS_HEARTBEAT_MS, 15_000)
  t.equal(config.TASK_EVENTS_POLL_MS, 500)
  t.equal(config.TASK_EVENTS_RETENTION_S, 600)
  t.equal(config.TASK_EVENTS_LISTEN, true)
})

t.test('values from the environment are strings, coerced once', async (t) => {
  const config = loadConfig(configSchema, { ...base, PORT: '4000', MIGRATE_ON_START: 'false' })
  t.equal(config.PORT, 4000)
  t.equal(config.MIGRATE_ON_START, false)
})

t.test('bad values are one line naming the variable', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ ...base, PORT: 'http' }, /^PORT /],
    [{ ...base, PORT: '70000' }, /^PORT /],
    [{ ...base, MIGRATE_ON_START: 'maybe' }, /^MIGRATE_ON_START /],
    [{ ...base, TASK_EVENTS_RETENTION_S: '299' }, /^TASK_EVENTS_RETENTION_S /],
    [{ ...base, TASK_EVENTS_HEARTBEAT_MS: '0' }, /^TASK_EVENTS_HEARTBEAT_MS /],
    [{ ...base, TASK_EVENTS_POLL_MS: 'often' }, /^TASK_EVENTS_POLL_MS /],
    [{ ...base, TASK_EVENTS_LISTEN: 'perhaps' }, /^TASK_EVENTS_LISTEN /],
    [{ BETTER_AUTH_SECRET: base.BETTER_AUTH_SECRET }, /^DATABASE_URL is required$/],
    [{ DATABASE_URL: base.DATABASE_URL }, /^BETTER_AUTH_SECRET is required$/],
    [{ ...base, BETTER_AUTH_SECRET: 'short' }, /^BETTER_AUTH_SECRET must be at least 32 characters/],
  ]
  for (const [data, message] of cases) {
    let error: unknown
    try {
      loadConfig(configSchema, data)
    } catch (err) {
      error = err
    }
    t.type(error, ConfigError, message.source)
    t.match((error as Error).message, message)
    t.notMatch((error as Error).message, /\n/, 'one line')
  }
})

t.test('migrations need only DATABASE_URL', async (t) => {
  t.same(loadConfig(migrateConfigSchema, { DATABASE_URL: base.DATABASE_URL }), { DATABASE_URL: base.DATABASE_URL })
  t.throws(() => loadConfig(migrateConfigSchema, {}), /DATABASE_URL is required/)
})
