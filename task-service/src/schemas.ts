/**
 * Request and response shapes of the task routes (docs/API.md), plus the few text
 * rules a JSON schema cannot state: a trimmed title length and characters
 * PostgreSQL cannot store.
 */
import { Type, type Static } from '@tollgate/common/typebox'
import { errors } from '@tollgate/common'

export const TITLE_MAX = 200
export const DESCRIPTION_MAX = 1000
export const USER_ID_MAX = 128

/**
 * `type: [string, null]`, not anyOf: with ajv's type coercion an anyOf would
 * turn null into "" (string branch first) or "" into null (null branch first).
 */
const NullableDescription = Type.Unsafe<string | null>({ type: ['string', 'null'], maxLength: DESCRIPTION_MAX })

const Title = Type.String({ description: `1 to ${TITLE_MAX} characters after trimming` })

export const TaskSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    user_id: Type.String(),
    title: Type.String(),
    description: Type.Union([Type.String(), Type.Null()]),
    completed: Type.Boolean(),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
)
export type Task = Static<typeof TaskSchema>

/** The envelope, without common's $id so it can be inlined in every route. */
export const ErrorBody = Type.Object({
  detail: Type.String(),
  error_code: Type.String(),
  status_code: Type.Integer(),
})
export const errorResponses = { '4xx': ErrorBody, '5xx': ErrorBody }

export const UserParams = Type.Object({
  user_id: Type.String({ minLength: 1, maxLength: USER_ID_MAX }),
})

/** `id` is any string here: a malformed id is a 404 (docs/API.md), decided in the handler. */
export const TaskParams = Type.Object({
  user_id: Type.String({ minLength: 1, maxLength: USER_ID_MAX }),
  id: Type.String(),
})

export const ListQuery = Type.Object(
  {
    status: Type.Enum(['all', 'pending', 'completed'], { default: 'all' }),
    sort: Type.Enum(['created_at', 'updated_at', 'title'], { default: 'created_at' }),
    order: Type.Enum(['asc', 'desc'], { default: 'desc' }),
    limit: Type.Integer({ minimum: 1, maximum: 100, default: 50 }),
    offset: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 0 }),
  },
  { additionalProperties: false },
)
export type ListQuery = Static<typeof ListQuery>

// additionalProperties: false makes ajv (removeAdditional) drop id, user_id,
// completed, created_at... before the handler sees the body: no mass assignment.
export const CreateTaskBody = Type.Object(
  { title: Title, description: Type.Optional(NullableDescription) },
  { additionalProperties: false },
)
export type CreateTaskBody = Static<typeof CreateTaskBody>

export const UpdateTaskBody = Type.Object(
  { title: Title, description: Type.Optional(NullableDescription), completed: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
)
export type UpdateTaskBody = Static<typeof UpdateTaskBody>

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
export function isUuid(value: string): boolean {
  return UUID.test(value)
}

// A lone surrogate cannot be encoded as UTF-8: pg would store U+FFFD instead of what was sent.
const LONE_SURROGATE = /\p{Surrogate}/u

/** PostgreSQL text cannot hold NUL, and text must round-trip exactly: refuse what would not. */
export function checkText(field: string, value: string): void {
  if (value.includes('\u0000')) throw errors.validation(`${field} must not contain NUL characters`)
  if (LONE_SURROGATE.test(value)) throw errors.validation(`${field} must be valid Unicode`)
}

/** The stored title: trimmed, then 1..200 characters counted as PostgreSQL counts them (code points). */
export function cleanTitle(raw: string): string {
  const title = raw.trim()
  checkText('body/title', title)
  const length = [...title].length
  if (length < 1) throw errors.validation('body/title must not be empty or only whitespace')
  if (length > TITLE_MAX) throw errors.validation(`body/title must NOT have more than ${TITLE_MAX} characters`)
  return title
}

