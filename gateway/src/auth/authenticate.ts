/**
 * The gateway's access rules, as onRequest hooks: who may call a route
 * (anyone, a signed-in user, or only the user the path names).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { errors, HttpError } from '@tollgate/common'
import type { TokenVerifier, VerifiedToken } from './token-verifier.js'
import type { RevocationList } from './revocation-list.js'

export type Access = 'anonymous' | 'user' | 'owner'

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified token, set by the authenticate hook; null on anonymous routes. */
    auth: VerifiedToken | null
  }
}

const BEARER = /^Bearer +([^\s]+) *$/i

/** The token from `Authorization: Bearer <t>`; a missing or non-Bearer header is "no credentials". */
export function bearerToken(header: string | undefined): string | HttpError {
  if (!header) return errors.unauthorized()
  const m = BEARER.exec(header)
  if (!m) {
    // "Bearer" with no or a malformed token is a bad token; another scheme is no token for us.
    return /^bearer\b/i.test(header) ? errors.invalidToken() : errors.unauthorized()
  }
  return m[1]!
}

export function authenticate(
  verifier: TokenVerifier,
  revocations: RevocationList,
  access: Exclude<Access, 'anonymous'>,
  onFailure: (code: string) => void,
) {
  const refuse = (err: HttpError): never => {
    onFailure(err.errorCode)
    throw err
  }
  return async function authenticateHook(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const token = bearerToken(request.headers.authorization)
    if (token instanceof HttpError) refuse(token)
    const result = await verifier.verify(token as string)
    if (result instanceof HttpError) refuse(result)
    const verified = result as VerifiedToken
    const status = revocations.check(verified)
    if (status === 'revoked') refuse(errors.tokenRevoked())
    if (status === 'unavailable') refuse(errors.unavailable('Token revocation status unavailable'))
    if (access === 'owner') {
      const pathUser = (request.params as { user_id?: string }).user_id
      if (pathUser !== verified.sub) refuse(errors.forbidden())
    }
    request.auth = verified
  }
}
