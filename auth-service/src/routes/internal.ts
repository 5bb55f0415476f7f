/**
 * Internal routes, called by the gateway itself (never routed from outside):
 * the revocation feed every gateway replica polls, so a signed-out token is
 * refused everywhere without a database round trip per request.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { requireGatewayIdentity } from '@tollgate/common'
import type { RevocationsRepository } from '../plugins/revocations-repository.js'
import { ErrorBody } from '../schemas.js'

export interface InternalRoutesOptions {
  revocations: RevocationsRepository
  proofKey: Buffer
  proofWindowMs: number
}

const RevocationFeed = Type.Object({
  cursor: Type.Integer(),
  reset: Type.Boolean(),
  more: Type.Boolean(),
  revoked: Type.Array(Type.Object({ jti: Type.String(), exp: Type.Integer() })),
})

export const internalRoutes: FastifyPluginAsyncTypebox<InternalRoutesOptions> = async (app, opts) => {
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
