/**
 * Request and response schemas of /api/auth. Response schemas are per status
 * and list every field, so nothing else (a password hash) can be serialised.
 */
import { Type } from 'typebox'

// Emails arrive trimmed and lower-cased (a preValidation hook) before this runs.
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

const Id = Type.String()
const Name = Type.Union([Type.String(), Type.Null()])
const Timestamp = Type.String({ format: 'date-time' })

export const CreatedUser = Type.Object(
  { id: Id, email: Type.String(), name: Name, created_at: Timestamp },
  { additionalProperties: false },
)

export const Me = Type.Object(
  { id: Id, email: Type.String(), name: Name, created_at: Timestamp, updated_at: Timestamp },
  { additionalProperties: false },
)

export const SigninResult = Type.Object(
  {
    user: Type.Object({ id: Id, email: Type.String(), name: Name }, { additionalProperties: false }),
    token: Type.String(),
    expires_at: Timestamp,
  },
  { additionalProperties: false },
)

/** The envelope from @tollgate/common, without its $id so routes can embed it. */
export const ErrorBody = Type.Object({
  detail: Type.String(),
  error_code: Type.String(),
  status_code: Type.Integer(),
})
