/**
 * GET /.well-known/jwks.json: the public keys tokens are verified with, for
 * the gateways (JWT_ALG=EdDSA). Public key material, so no identity proof is
 * asked; never a private member, and with HS256 an empty set (the HMAC secret
 * is never published). Keys appear here before they sign (JWT_KEY_PUBLISH_AHEAD_S)
 * and stay until the tokens they signed have expired.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errors } from '@tollgate/common'
import type { SigningKeyStore } from '../credentials/signing-keys.js'
import { ErrorBody } from '../schemas.js'

export interface JwksRoutesOptions {
  /** Absent with JWT_ALG=HS256. */
  keys?: SigningKeyStore
}

// The serializer writes only these members, whatever the object holds.
const PublicJwk = Type.Object({
  kty: Type.Literal('OKP'),
  crv: Type.Literal('Ed25519'),
  x: Type.String(),
  kid: Type.String(),
  alg: Type.Literal('EdDSA'),
  use: Type.Literal('sig'),
})
const JwkSet = Type.Object({ keys: Type.Array(PublicJwk) })

export const jwksRoutes: FastifyPluginAsyncTypebox<JwksRoutesOptions> = async (app, opts) => {
  app.get(
    '/.well-known/jwks.json',
    { schema: { response: { 200: JwkSet, 503: ErrorBody } } },
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
