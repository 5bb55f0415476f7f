import t from 'tap'
import { ConfigError, loadConfig } from '@tollgate/common'
import { configSchema } from '../src/config.js'

const base = { DATABASE_URL: 'postgres://localhost/x', BETTER_AUTH_SECRET: 's'.repeat(32) }

t.test('defaults', async (t) => {
  const c = loadConfig(configSchema, base)
  t.equal(c.PORT, 3001)
  t.equal(c.BCRYPT_COST, 12)
  t.equal(c.TOKEN_TTL_S, 604800)
  t.equal(c.JWT_ISSUER, 'tollgate')
  t.equal(c.JWT_AUDIENCE, 'tollgate-api')
  t.equal(c.MIGRATE_ON_START, true)
  t.equal(c.BCRYPT_MAX_CONCURRENCY, 4)
  t.equal(c.BCRYPT_MAX_QUEUE, 16)
})

t.test('values come in as strings and are typed', async (t) => {
  const c = loadConfig(configSchema, { ...base, PORT: '4000', BCRYPT_COST: '11', MIGRATE_ON_START: 'false' })
  t.equal(c.PORT, 4000)
  t.equal(c.BCRYPT_COST, 11)
  t.equal(c.MIGRATE_ON_START, false)
})

t.test('a secret shorter than 32 characters is refused, naming the variable', async (t) => {
  t.throws(() => loadConfig(configSchema, { ...base, BETTER_AUTH_SECRET: 's'.repeat(31) }), ConfigError)
  t.throws(() => loadConfig(configSchema, { ...base, BETTER_AUTH_SECRET: 's'.repeat(31) }), /BETTER_AUTH_SECRET/)
})

t.test('a missing secret or database url is refused, naming it', async (t) => {
  t.throws(() => loadConfig(configSchema, { DATABASE_URL: base.DATABASE_URL }), /BETTER_AUTH_SECRET/)
  t.throws(() => loadConfig(configSchema, { BETTER_AUTH_SECRET: base.BETTER_AUTH_SECRET }), /DATABASE_URL/)
})

t.test('bcrypt cost outside 10..15 is refused', async (t) => {
  t.throws(() => loadConfig(configSchema, { ...base, BCRYPT_COST: '9' }), /BCRYPT_COST/)
  t.throws(() => loadConfig(configSchema, { ...base, BCRYPT_COST: '16' }), /BCRYPT_COST/)
  t.throws(() => loadConfig(configSchema, { ...base, BCRYPT_COST: 'twelve' }), /BCRYPT_COST/)
})

t.test('bcrypt limits: typed, bounded, named when wrong', async (t) => {
  const c = loadConfig(configSchema, { ...base, BCRYPT_MAX_CONCURRENCY: '2', BCRYPT_MAX_QUEUE: '0' })
  t.equal(c.BCRYPT_MAX_CONCURRENCY, 2)
  t.equal(c.BCRYPT_MAX_QUEUE, 0, 'no queue at all is allowed')
  t.throws(() => loadConfig(configSchema, { ...base, BCRYPT_MAX_CONCURRENCY: '0' }), /BCRYPT_MAX_CONCURRENCY/)
  t.throws(() => loadConfig(configSchema, { ...base, BCRYPT_MAX_CONCURRENCY: '65' }), /BCRYPT_MAX_CONCURRENCY/)
  t.throws(() => loadConfig(configSchema, { ...base, BCRYPT_MAX_QUEUE: '-1' }), /BCRYPT_MAX_QUEUE/)
  t.throws(() => loadConfig(configSchema, { ...base, BCRYPT_MAX_QUEUE: 'lots' }), /BCRYPT_MAX_QUEUE/)
})
