/**
 * Request and response schemas of /api/auth. Response schemas are per status
 * and list every field, so nothing else (a password hash) can be serialised.
 */
import { Type } from '@tollgate/common/typebox'

// The request bodies are shared with the gateway, which checks them first.
export { SigninBody, SignupBody } from '@tollgate/common'

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
