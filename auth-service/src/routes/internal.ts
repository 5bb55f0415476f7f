/**
 * Internal routes, never routed from the public listener:
 * - the revocation feed every gateway replica polls (caller: the gateway), so
 *   a signed-out token is refused everywhere with no database round trip per
 *   request;
 * - the service-token exchange, reached through the gateway's internal
 *   listener (which forwards its callers as anonymous).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errors, requireGatewayIdentity } from '@tollgate/common'
import type { RevocationsRepository } from '../plugins/revocations-repository.js'
import type { ServiceTokenIssuer } from '../plugins/service-tokens.js'
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
