/**
 * /api/auth: sign up, sign in, who am I, sign out. Reachable only through the
 * gateway: every route checks its signed identity proof first.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@tollgate/common/typebox'
import { errors, normaliseEmail, requireGatewayIdentity, type Identity } from '@tollgate/common'
import type { UsersRepository } from '../repositories/users-repository.js'
import type { RevocationsRepository } from '../repositories/revocations-repository.js'
import { passwordProblem, type PasswordManager } from '../credentials/password-manager.js'
import type { TokenIssuer } from '../credentials/token-issuer.js'
import { isCommonPassword } from '../credentials/common-passwords.js'
import { CreatedUser, ErrorBody, Me, SigninBody, SigninResult, SignupBody } from '../schemas.js'

export interface AuthRoutesOptions {
  /** Token lifetime: an account cutoff must outlive every token of the account. */
  tokenTtlSeconds: number
  /** Called after an account deletion commits (delivers its outbox message now). */
  onAccountDeleted: () => void
  users: UsersRepository
  revocations: RevocationsRepository
  passwords: PasswordManager
  tokens: TokenIssuer
  proofKey: Buffer
  proofWindowMs: number
}

const BEARER = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+) *$/i

const errorResponses = { 400: ErrorBody, 401: ErrorBody, 503: ErrorBody }

export const authRoutes: FastifyPluginAsyncTypebox<AuthRoutesOptions> = async (app, opts) => {
  const { users, revocations, passwords, tokens } = opts
  const gateway = (accept: (id: Identity) => boolean) => requireGatewayIdentity(opts.proofKey, opts.proofWindowMs, accept)
  // Signing in again while signed in is harmless, so public routes take users too.
  const publicCaller = gateway((id) => id.caller === 'anonymous' || id.caller === 'user')
  const userCaller = gateway((id) => id.caller === 'user')

  // This API speaks JSON only: without this, Fastify parses text/plain into a string.
  app.removeContentTypeParser('text/plain')

  // First hook, so it is set on every answer here, 401s from the proof check included.
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
  })

  app.post(
    '/signup',
    {
      onRequest: publicCaller,
      preValidation: normaliseEmail,
      schema: { body: SignupBody, response: { 201: CreatedUser, 409: ErrorBody, ...errorResponses } },
    },
    async (request, reply) => {
      const { email, password, name = null } = request.body
      const problem = passwordProblem(password)
      if (problem) throw errors.validation(problem)
      if (isCommonPassword(password)) throw errors.validation('body/password is one of the most commonly used passwords; choose another')
      // PostgreSQL text cannot hold NUL: refuse it here rather than fail in the driver.
      if (name?.includes('\u0000')) throw errors.validation('body/name must not contain NUL characters')

      const passwordHash = await passwords.hash(password)
      const user = await users.create({ email, passwordHash, name })
      if (!user) throw errors.conflict('Email already registered')
      request.log.info({ event: 'signup', userId: user.id }, 'user created')
      reply.code(201)
      return { id: user.id, email: user.email, name: user.name, created_at: user.created_at }
    },
  )

  app.post(
    '/signin',
    {
      onRequest: publicCaller,
      preValidation: normaliseEmail,
      schema: { body: SigninBody, response: { 200: SigninResult, ...errorResponses } },
    },
    async (request) => {
      const { email, password } = request.body
      // Unknown email and wrong password: same bcrypt work, same answer. A
      // flood beyond the bcrypt limit is refused (503) before the lookup.
      const found = await passwords.authenticate(password, () => users.findByEmail(email))
      // The lookup ran before bcrypt: an account deleted meanwhile must not get
      // a token (one signed while the deletion commits is cut off by it).
      const user = found && (await users.findById(found.id)) ? found : null
      if (!user) {
        request.log.info({ event: 'signin', outcome: 'failure' }, 'sign-in failed')
        throw errors.invalidCredentials()
      }

      if (passwords.needsRehash(user.password_hash)) {
        // The only moment we hold the plain password: upgrade the work factor now.
        // A failure here must not fail the sign-in; the next one retries.
        try {
          await users.updatePasswordHash(user.id, await passwords.hash(password))
        } catch (err) {
          request.log.warn({ err, userId: user.id }, 'password hash upgrade failed')
        }
      }

      const issued = await tokens.issue(user)
      request.log.info({ event: 'signin', outcome: 'success', userId: user.id, jti: issued.jti }, 'signed in')
      return {
        user: { id: user.id, email: user.email, name: user.name },
        token: issued.token,
        expires_at: new Date(issued.exp * 1000).toISOString(),
      }
    },
  )

  app.get(
    '/me',
    { onRequest: userCaller, schema: { response: { 200: Me, ...errorResponses } } },
    async (request) => {
      const user = await users.findById(request.identity!.userId)
      // A valid token for an account that is gone.
      if (!user) throw errors.invalidToken()
      return user
    },
  )

  app.post(
    '/signout',
    { onRequest: userCaller, schema: { response: { 204: Type.Null(), ...errorResponses } } },
    async (request, reply) => {
      // The gateway forwards the bearer token for this route only; we need its jti and exp.
      const header = request.headers.authorization
      const match = typeof header === 'string' ? BEARER.exec(header) : null
      if (!match) throw errors.invalidToken()
      const claims = await tokens.verify(match[1]!)
      // Only the caller's own token can be signed out.
      if (claims.sub !== request.identity!.userId) throw errors.invalidToken()
      await revocations.revoke({ jti: claims.jti, userId: claims.sub, exp: claims.exp })
      request.log.info({ event: 'signout', userId: claims.sub, jti: claims.jti }, 'token revoked')
      return reply.code(204).send(null)
    },
  )

  app.delete(
    '/me',
    { onRequest: userCaller, schema: { response: { 204: Type.Null(), ...errorResponses } } },
    async (request, reply) => {
      const userId = request.identity!.userId
      // One transaction: the account, a cutoff revoking all its tokens, and the task purge to deliver.
      const deleted = await users.deleteAccount(userId, opts.tokenTtlSeconds, request.id)
      if (!deleted) throw errors.invalidToken()
      request.log.info({ event: 'account-deleted', userId }, 'account deleted; task purge queued')
      opts.onAccountDeleted()
      return reply.code(204).send(null)
    },
  )
}
