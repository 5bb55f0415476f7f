/**
 * The sign-up and sign-in request bodies: the auth-service validates them,
 * and the gateway checks the same schemas before it reads or forwards a body,
 * so both refuse exactly the same inputs.
 */
import type { FastifyRequest } from 'fastify'
import { Type } from './typebox.js'

// Emails arrive trimmed and lower-cased (normaliseEmail, a preValidation hook) before this runs.
const Email = Type.String({ format: 'email', maxLength: 255 })

// `type: [string, null]` rather than anyOf: with ajv's type coercion an anyOf
// would turn null into "" (or "" into null) depending on the branch order.
const NullableName = Type.Unsafe<string | null>({ type: ['string', 'null'], maxLength: 100 })

export const SignupBody = Type.Object(
  {
    email: Email,
    // Characters here; the 72-byte bcrypt bound and NUL are checked after validation.
    password: Type.String({ minLength: 8, maxLength: 72 }),
    name: Type.Optional(NullableName),
  },
  { additionalProperties: false },
)

export const SigninBody = Type.Object(
  {
    email: Email,
    // Only an input bound: a password that could never have been stored fails as a wrong one.
    password: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { additionalProperties: false },
)

/** preValidation: trim and lower-case the email, so " A@B.io " is valid and equals "a@b.io". */
export async function normaliseEmail(request: FastifyRequest): Promise<void> {
  const body = request.body as { email?: unknown } | null | undefined
  if (body && typeof body === 'object' && typeof body.email === 'string') {
    body.email = body.email.trim().toLowerCase()
  }
}
