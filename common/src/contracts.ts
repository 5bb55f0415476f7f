/**
 * The internal wire contracts: every endpoint one Tollgate process calls on
 * another, and the headers of the identity proof. Each endpoint's path and
 * schemas live here once: the producer uses the schemas as its route schema
 * (so it serialises nothing else), the consumer checks what it receives
 * against the same schema, and neither side can change alone.
 *
 * Imported as '@tollgate/common/contracts' (typebox only, no Fastify, no pg).
 */
import { Type, type Static } from './typebox.js'

/** The identity proof the gateway adds to every request it forwards (see identity.ts). */
export const IdentityHeader = {
  userId: 'x-user-id',
  caller: 'x-tollgate-caller',
  timestamp: 'x-tollgate-timestamp',
  signature: 'x-tollgate-signature',
} as const

const RevocationEntry = Type.Object({
  jti: Type.String(),
  exp: Type.Integer(),
  user_id: Type.Optional(Type.String()),
  not_before: Type.Optional(Type.Integer()),
  issuer: Type.Optional(Type.String()),
})

/**
 * GET: the signed-out tokens every gateway replica polls from the
 * auth-service, as the gateway itself (caller service:gateway).
 */
export const RevocationFeed = {
  method: 'GET',
  path: '/internal/revocations',
  query: Type.Object({
    after: Type.Integer({ minimum: 0, default: 0 }),
    limit: Type.Integer({ minimum: 1, maximum: 10_000, default: 5000 }),
  }),
  page: Type.Object({
    /** Pass back as `after` for the next page. */
    cursor: Type.Integer(),
    /** True when `after` is beyond anything recorded (the table was rebuilt): start over. */
    reset: Type.Boolean(),
    more: Type.Boolean(),
    /**
     * A signed-out token (jti), or with user_id and not_before, every token of
     * that subject issued at or before not_before (an account deleted, or a
     * subject of an external issuer signed out); `issuer` names the issuer of
     * the subject, our own when absent. exp: when the entry stops mattering
     * (epoch seconds).
     */
    revoked: Type.Array(RevocationEntry),
  }),
} as const
export type RevocationEntry = Static<typeof RevocationEntry>
export type RevocationPage = Static<typeof RevocationFeed.page>

/** POST: a service trades its credential for a short-lived service token (through the gateway's internal listener). */
export const ServiceTokenExchange = {
  method: 'POST',
  path: '/internal/service-token',
  body: Type.Object(
    { service: Type.String({ minLength: 1, maxLength: 64 }), secret: Type.String({ minLength: 1, maxLength: 512 }) },
    { additionalProperties: false },
  ),
  response: Type.Object({ token: Type.String(), expires_at: Type.String() }),
} as const
export type ServiceTokenRequest = Static<typeof ServiceTokenExchange.body>
export type ServiceTokenAnswer = Static<typeof ServiceTokenExchange.response>

/** Longest token lifetime a subject revocation may cover: one year. */
export const MAX_COVERED_LIFETIME_S = 31_536_000

/** POST, 204: every token of a subject of an issuer issued before a time is revoked (services, through the internal listener). */
export const SubjectRevocation = {
  method: 'POST',
  path: '/internal/subject-revocations',
  body: Type.Object(
    {
      issuer: Type.String({ minLength: 1, maxLength: 512 }),
      /** Subjects as the gateway accepts them in tokens (bounded, plain). */
      sub: Type.String({ pattern: '^[A-Za-z0-9._~:@-]{1,128}$' }),
      /** Epoch seconds; default now. Tokens issued at or before it are revoked. */
      issued_before: Type.Optional(Type.Integer({ minimum: 0 })),
      /** How long the issuer's tokens live at most; the revocation is kept that long. Default 30 days. */
      token_lifetime_s: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_COVERED_LIFETIME_S })),
    },
    { additionalProperties: false },
  ),
} as const
export type SubjectRevocationRequest = Static<typeof SubjectRevocation.body>

/**
 * DELETE, 204: the task-service drops every task of a deleted account (the
 * auth-service's outbox calls it through the gateway's internal listener).
 */
export const AccountPurge = {
  method: 'DELETE',
  /** The route as Fastify and the gateway's allowlist write it. */
  path: '/internal/users/:user_id/tasks',
  params: Type.Object({ user_id: Type.String({ minLength: 1, maxLength: 128 }) }),
  /** The path for one account. */
  pathFor: (userId: string) => `/internal/users/${encodeURIComponent(userId)}/tasks`,
} as const

// The auth-service's own keys: the serializer writes only these members, whatever the object holds.
const Ed25519PublicJwk = Type.Object({
  kty: Type.Literal('OKP'),
  crv: Type.Literal('Ed25519'),
  x: Type.String(),
  kid: Type.String(),
  alg: Type.Literal('EdDSA'),
  use: Type.Literal('sig'),
})

/**
 * GET: the public keys tokens are verified with. `published` is what the
 * auth-service serves; `keySet` is what a gateway accepts from any issuer
 * (RFC 7517: an object whose `keys` are JWKs, each with a `kty`), which every
 * set the auth-service publishes is.
 */
export const Jwks = {
  method: 'GET',
  path: '/.well-known/jwks.json',
  published: Type.Object({ keys: Type.Array(Ed25519PublicJwk) }),
  keySet: Type.Object({ keys: Type.Array(Type.Object({ kty: Type.String() })) }),
} as const
export type PublicJwk = Static<typeof Ed25519PublicJwk>
