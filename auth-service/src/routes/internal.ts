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
import { Type } from '@tollgate/common/typebox'
import { errors, requireGatewayIdentity } from '@tollgate/common'
import { RevocationFeed, ServiceTokenExchange, SubjectRevocation } from '@tollgate/common/contracts'
import type { RevocationsRepository } from '../repositories/revocations-repository.js'
import type { ServiceTokenIssuer } from '../credentials/service-tokens.js'
import { ErrorBody } from '../schemas.js'

interface ProofOptions {
  proofKey: Buffer
  proofWindowMs: number
}

export const revocationFeedRoutes: FastifyPluginAsyncTypebox<ProofOptions & { revocations: RevocationsRepository }> = async (app, opts) => {
  app.addHook('onRequest', requireGatewayIdentity(opts.proofKey, opts.proofWindowMs, (id) => id.caller === 'service:gateway'))
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
  })

  app.get(
    RevocationFeed.path,
    {
      logLevel: 'warn', // polled several times a second by every gateway
      schema: {
        querystring: RevocationFeed.query,
        response: { 200: RevocationFeed.page, 400: ErrorBody, 401: ErrorBody, 503: ErrorBody },
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
    ServiceTokenExchange.path,
    {
      schema: {
        body: ServiceTokenExchange.body,
        response: { 200: ServiceTokenExchange.response, 400: ErrorBody, 401: ErrorBody },
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

const DEFAULT_COVERED_LIFETIME_S = 2_592_000
/** Past the tokens' expiry, the gateways' clock tolerance (at most 300 s) still accepts them. */
const TOLERANCE_MARGIN_S = 300

export const subjectRevocationRoutes: FastifyPluginAsyncTypebox<ProofOptions & { revocations: RevocationsRepository }> = async (app, opts) => {
  app.addHook('onRequest', requireGatewayIdentity(opts.proofKey, opts.proofWindowMs, (id) => id.caller.startsWith('service:')))
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
  })

  app.post(
    SubjectRevocation.path,
    {
      schema: {
        body: SubjectRevocation.body,
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
