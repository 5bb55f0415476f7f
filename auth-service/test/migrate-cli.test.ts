/**
 * A migration that cannot run fails loudly: the migrate CLI (the built one,
 * as compose and CI run it) exits non-zero with one line on stderr, and a
 * failure half-way leaves nothing applied. The cases are shared with the
 * task-service (@tollgate/common/testing migrateCliCases).
 */
import { fileURLToPath } from 'node:url'
import t from 'tap'
import * as testing from '@tollgate/common/testing'
import { DATABASE_URL, SECRET } from './helper.js'

const cases = testing.migrateCliCases({
  service: 'auth-service',
  cli: fileURLToPath(new URL('../dist/migrate-cli.js', import.meta.url)),
  env: { BETTER_AUTH_SECRET: SECRET },
  testServerUrl: DATABASE_URL,
  migrationsTable: 'auth_migrations',
  // 001 would succeed; 002 then collides with a table already there.
  collidingTable: 'revoked_tokens',
  collisionError: /relation "revoked_tokens" already exists \(42P07\)/,
  async afterFailure(t, client) {
    const users = await client.query("SELECT to_regclass('public.users') AS t")
    t.equal(users.rows[0].t, null, '001 rolled back with 002: one transaction')
  },
})
for (const c of cases) t.test(c.name, (t) => c.run(t))
