/**
 * Internal routes, never routed from the public listener:
 * - the revocation feed every gateway replica polls (caller: the gateway), so
 *   a signed-out token is refused everywhere with no database round trip per
 *   request;
 * - the service-token exchange, reached through the gateway's internal
 *   listener (which forwards its callers as anonymous);
 * - revocation by subject, for services (through the gateway's internal
 *   listener, whose allowlist decides which may call it): every token of a
 *   subject of an issuer issued before a time, e.g. when a user signs out of
 *   a Better Auth app whose JWTs carry no jti.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errors, requireGatewayIdentity } from '@tollgate/common'
import type { RevocationsRepository } from '../repositories/revocations-repository.js'
import type { ServiceTokenIssuer } from '../credentials/service-tokens.js'
import { ErrorBody } from '../schemas.js'

interface ProofOptions {
  proofKey: Buffer
  proofWindowMs: number
}

const RevocationFeed = Type.Object({
  cursor: Type.Integer(),
  reset: Type.Boolean(),
  more: Type.Boolean(),
  revoked: Type.Array(
    Type.Object({
      jti: Type.String(),
      exp: Type.Integer(),
      user_id: Type.Optional(Type.String()),
      not_before: Type.Optional(Type.Integer()),
      issuer: Type.Optional(Type.String()),
    }),
  ),
})

export const revocationFeedRoutes: FastifyPluginAsyncTypebox<ProofOptions & { revocations: RevocationsRepository }> = async (app, opts) => {
  app.addHook('onRequest', requireGatewayIdentity(opts.proofKey, opts.proofWindowMs, (id) => id.caller === 'service:gateway'))
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
  })

  app.get(
    '/revocations',
    {
      logLevel: 'warn', // polled several times a second by every gateway
      schema: {
        querystring: Type.Object({
          after: Type.Integer({ minimum: 0, default: 0 }),
          limit: Type.Integer({ minimum: 1, maximum: 10_000, default: 5000 }),
        }),
        response: { 200: RevocationFeed, 400: ErrorBody, 401: ErrorBody, 503: ErrorBody },
      },
    },
    async (request) => opts.revocations.since(request.query.after, request.query.limit),
  )
}

export const serviceTokenRoutes: FastifyPluginAsyncTypebox<ProofOptions & { serviceTokens: ServiceTokenIssuer }> = async (app, opts) => {
  app.addHook('onRequest', requireGatewayIdentity(opts.proofKey, opts.proofWindowMs, (id) => id.caller === 'anonymous'))
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
  })

  app.post(
    '/service-token',
    {
      schema: {
        body: Type.Object(
          { service: Type.String({ minLength: 1, maxLength: 64 }), secret: Type.String({ minLength: 1, maxLength: 512 }) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ token: Type.String(), expires_at: Type.String() }), 400: ErrorBody, 401: ErrorBody },
      },
    },
    async (request) => {
      const issued = await opts.serviceTokens.exchange(request.body.service, request.body.secret)
      if (!issued) {
        request.log.warn({ event: 'service-token-refused', service: request.body.service }, 'bad service credential')
        throw errors.invalidCredentials()
      }
      request.log.info({ event: 'service-token-issued', service: request.body.service }, 'service token issued')
      return { token: issued.token, expires_at: issued.expiresAt.toISOString() }
    },
  )
}

/** Subjects as the gateway accepts them in tokens (bounded, plain). */
const SUBJECT = '^[A-Za-z0-9._~:@-]{1,128}$'
/** Longest token lifetime a subject revocation may cover: one year. */
const MAX_COVERED_LIFETIME_S = 31_536_000
const DEFAULT_COVERED_LIFETIME_S = 2_592_000
/** Past the tokens' expiry, the gateways' clock tolerance (at most 300 s) still accepts them. */
const TOLERANCE_MARGIN_S = 300

export const subjectRevocationRoutes: FastifyPluginAsyncTypebox<ProofOptions & { revocations: RevocationsRepository }> = async (app, opts) => {
  app.addHook('onRequest', requireGatewayIdentity(opts.proofKey, opts.proofWindowMs, (id) => id.caller.startsWith('service:')))
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
  })

  app.post(
    '/subject-revocations',
    {
      schema: {
        body: Type.Object(
          {
            issuer: Type.String({ minLength: 1, maxLength: 512 }),
            sub: Type.String({ pattern: SUBJECT }),
            /** Epoch seconds; default now. Tokens issued at or before it are revoked. */
            issued_before: Type.Optional(Type.Integer({ minimum: 0 })),
            /** How long the issuer's tokens live at most; the revocation is kept that long. Default 30 days. */
            token_lifetime_s: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_COVERED_LIFETIME_S })),
          },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), 400: ErrorBody, 401: ErrorBody, 503: ErrorBody },
      },
    },
    async (request, reply) => {
      const nowS = Math.floor(Date.now() / 1000)
      const { issuer, sub, issued_before: issuedBefore = nowS, token_lifetime_s: lifetimeS = DEFAULT_COVERED_LIFETIME_S } = request.body
      // A cutoff in the future would refuse tokens not issued yet: not a sign-out.
      if (issuedBefore > nowS + 60) throw errors.validation('issued_before must not be in the future')
      await opts.revocations.revokeSubject({ issuer, sub, notBefore: issuedBefore, exp: issuedBefore + lifetimeS + TOLERANCE_MARGIN_S })
      request.log.info({ event: 'subject-revoked', caller: request.identity?.caller, issuer }, 'tokens of a subject revoked')
      return reply.code(204).send(null)
    },
  )
}
