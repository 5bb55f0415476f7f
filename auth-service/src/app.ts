/**
 * The auth-service app: common's service base, the /api/auth routes, the
 * internal routes (revocation feed, service tokens) and the outbox delivery.
 * Config in, app out; server.ts is the only caller that listens.
 */
import { createService, proofKey, startTracing, type App } from '@tollgate/common'
import { attachDatabase } from '@tollgate/common/db'
import type { Config } from './config.js'
import { createPasswordManager } from './credentials/password-manager.js'
import { createRevocationsRepository } from './repositories/revocations-repository.js'
import { createTokenIssuer } from './credentials/token-issuer.js'
import { createSigningKeyStore, signingKeyEncryptionKey } from './credentials/signing-keys.js'
import { jwksRoutes } from './routes/jwks.js'
import { createUsersRepository } from './repositories/users-repository.js'
import { authRoutes } from './routes/auth.js'
import { revocationFeedRoutes, serviceTokenRoutes, subjectRevocationRoutes } from './routes/internal.js'
import { createServiceTokenIssuer, parseServiceCredentials } from './credentials/service-tokens.js'
import { createOutboxRepository } from './outbox/outbox-repository.js'
import { createPurgeDelivery } from './outbox/purge-delivery.js'

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
    tracing: await startTracing(config, 'auth-service'),
  })
  // Metrics on /metrics; closed with the app, after in-flight requests.
  const pool = attachDatabase(app as never, config, 'auth-service')

  // JWT_ALG=EdDSA: the Ed25519 keys, shared by the replicas through the database.
  const signingKeys =
    config.JWT_ALG === 'EdDSA'
      ? createSigningKeyStore({
          pool,
          encryptionKey: signingKeyEncryptionKey(config.BETTER_AUTH_SECRET, config.SIGNING_KEY_SECRET),
          tokenTtlS: config.TOKEN_TTL_S,
          refreshMs: config.JWT_KEY_REFRESH_S * 1000,
          publishAheadS: config.JWT_KEY_PUBLISH_AHEAD_S,
          rotationDays: config.JWT_KEY_ROTATION_DAYS,
          log: app.log,
        })
      : undefined
  app.addHook('onClose', async () => signingKeys?.stop())
  await signingKeys?.start().catch(async (err) => {
    await app.close().catch(() => {})
    throw err
  })

  const revocations = createRevocationsRepository(pool)
  const serviceTokens = createServiceTokenIssuer({
    betterAuthSecret: config.BETTER_AUTH_SECRET,
    serviceTokenSecret: config.SERVICE_TOKEN_SECRET,
    issuer: config.JWT_ISSUER,
    ttlSeconds: config.SERVICE_TOKEN_TTL_S,
    credentials: parseServiceCredentials(config.SERVICE_CREDENTIALS),
  })
  // Account deletions leave work for the task-service in the outbox; this delivers it, with retries.
  const delivery = createPurgeDelivery({
    outbox: createOutboxRepository(pool),
    gatewayInternalUrl: config.GATEWAY_INTERNAL_URL.replace(/\/$/, ''),
    serviceToken: () => serviceTokens.own(),
    pollMs: config.OUTBOX_POLL_MS,
    log: app.log,
    tracing: app.tracing,
  })
  app.addHook('onReady', async () => delivery.start())
  app.addHook('preClose', async () => delivery.stop())

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
      alg: config.JWT_ALG,
      keys: signingKeys,
    }),
    proofKey: key,
    proofWindowMs,
    tokenTtlSeconds: config.TOKEN_TTL_S,
    onAccountDeleted: () => void delivery.kick(),
  })
  await app.register(jwksRoutes, { keys: signingKeys })
  await app.register(revocationFeedRoutes, { revocations, proofKey: key, proofWindowMs })
  await app.register(serviceTokenRoutes, { serviceTokens, proofKey: key, proofWindowMs })
  await app.register(subjectRevocationRoutes, { revocations, proofKey: key, proofWindowMs })

  // Entries die with their tokens: purge now and then so the feed stays bounded.
  const purge = setInterval(() => {
    revocations.purgeExpired().catch((err) => app.log.warn({ err: { message: (err as Error).message } }, 'revocation purge failed'))
  }, 10 * 60_000)
  purge.unref()
  app.addHook('onClose', async () => clearInterval(purge))
  return app
}
