/**
 * GET /.well-known/jwks.json: the public keys tokens are verified with, for
 * the gateways (JWT_ALG=EdDSA). Public key material, so no identity proof is
 * asked; never a private member, and with HS256 an empty set (the HMAC secret
 * is never published). Keys appear here before they sign (JWT_KEY_PUBLISH_AHEAD_S)
 * and stay until the tokens they signed have expired.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errors } from '@tollgate/common'
import { Jwks } from '@tollgate/common/contracts'
import type { SigningKeyStore } from '../credentials/signing-keys.js'
import { ErrorBody } from '../schemas.js'

export interface JwksRoutesOptions {
  /** Absent with JWT_ALG=HS256. */
  keys?: SigningKeyStore
}

export const jwksRoutes: FastifyPluginAsyncTypebox<JwksRoutesOptions> = async (app, opts) => {
  app.get(
    Jwks.path,
    // The serializer writes only the contract's public members, whatever the object holds.
    { schema: { response: { 200: Jwks.published, 503: ErrorBody } } },
    async (_request, reply) => {
      if (!opts.keys) {
        reply.header('cache-control', 'public, max-age=60')
        return { keys: [] }
      }
      const set = opts.keys.jwks()
      // Never an empty set for "not loaded yet": a verifier would cache it.
      if (!set) {
        reply.header('cache-control', 'no-store')
        throw errors.unavailable('Signing keys not loaded yet')
      }
      reply.header('cache-control', 'public, max-age=60')
      return set
    },
  )
}
