/**
 * The auth-service app: common's service base plus the /api/auth routes.
 * Config in, app out; server.ts is the only caller that listens.
 */
import { createPool, createService, installPoolMetrics, proofKey, type App } from '@tollgate/common'
import type { Config } from './config.js'
import { createPasswordManager } from './plugins/password-manager.js'
import { createRevocationsRepository } from './plugins/revocations-repository.js'
import { createTokenIssuer } from './plugins/token-issuer.js'
import { createUsersRepository } from './plugins/users-repository.js'
import { authRoutes } from './routes/auth.js'
import { internalRoutes } from './routes/internal.js'

export async function buildApp(config: Config, opts: { logStream?: NodeJS.WritableStream } = {}): Promise<App> {
  // Before anything that must be closed: the dummy hash takes one bcrypt run.
  const passwords = await createPasswordManager({
    cost: config.BCRYPT_COST,
    maxConcurrency: config.BCRYPT_MAX_CONCURRENCY,
    maxQueue: config.BCRYPT_MAX_QUEUE,
  })

  const app = createService({
    name: 'auth-service',
    logLevel: config.LOG_LEVEL,
    logStream: opts.logStream,
    readiness: { database: () => pool.query('select 1') },
  })
  const pool = createPool(
    {
      connectionString: config.DATABASE_URL,
      max: config.DB_POOL_MAX,
      connectTimeoutMs: config.DB_CONNECT_TIMEOUT_MS,
      statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
      applicationName: 'auth-service',
    },
    app.log,
  )
  installPoolMetrics(app as never, pool)
  app.addHook('onClose', async () => {
    await pool.end()
  })

  const revocations = createRevocationsRepository(pool)
  const key = proofKey(config.BETTER_AUTH_SECRET, config.INTERNAL_PROOF_SECRET)
  const proofWindowMs = config.INTERNAL_PROOF_WINDOW_S * 1000
  await app.register(authRoutes, {
    prefix: '/api/auth',
    users: createUsersRepository(pool),
    revocations,
    passwords,
    tokens: createTokenIssuer({
      secret: config.BETTER_AUTH_SECRET,
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      ttlSeconds: config.TOKEN_TTL_S,
    }),
    proofKey: key,
    proofWindowMs,
  })
  await app.register(internalRoutes, { prefix: '/internal', revocations, proofKey: key, proofWindowMs })

  // Entries die with their tokens: purge now and then so the feed stays bounded.
  const purge = setInterval(() => {
    revocations.purgeExpired().catch((err) => app.log.warn({ err: { message: (err as Error).message } }, 'revocation purge failed'))
  }, 10 * 60_000)
  purge.unref()
  app.addHook('onClose', async () => clearInterval(purge))
  return app
}
