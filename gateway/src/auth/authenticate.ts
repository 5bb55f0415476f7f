/**
 * The gateway's access rules, as a hook step: who may call a route (anyone,
 * a signed-in user, or only the user the path names).
 */
import type { FastifyRequest } from 'fastify'
import { BEARER_REALM, challenge, errors, HttpError, InvalidToken, ValidationError } from '@tollgate/common'
import { isRefusal, refusalError, type TokenResult, type TokenVerifier, type VerifiedToken } from './token-verifier.js'
import type { RevocationList } from './revocation-list.js'
import type { Step } from '../hook-steps.js'

export type Access = 'anonymous' | 'user' | 'owner'

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified token, set by the authenticate step; null on anonymous routes. */
    auth: VerifiedToken | null
  }
}

const BEARER = /^Bearer +([^\s]+) *$/i

/** The token from `Authorization: Bearer <t>`; a missing or non-Bearer header is "no credentials". */
export function bearerToken(header: string | undefined): string | HttpError {
  if (!header) return errors.unauthorized()
  // "Bearer <visible ASCII>", what nearly every request sends, is the regex's own answer without a regex run (about
  // 4,500 of a proxied request's ~330,000 instructions under callgrind); anything else takes the full rule.
  if (header.startsWith('Bearer ') && visibleAsciiFrom(header, 7)) return header.slice(7)
  const m = BEARER.exec(header)
  if (!m) {
    // "Bearer" with no or a malformed token is a bad token; another scheme is no token for us.
    return /^bearer\b/i.test(header) ? errors.invalidToken() : errors.unauthorized()
  }
  return m[1]!
}

/** Whether `s` has at least one character from `from` on, each visible ASCII (0x21-0x7e: none is whitespace). */
function visibleAsciiFrom(s: string, from: number): boolean {
  if (s.length <= from) return false
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x21 || c > 0x7e) return false
  }
  return true
}

/**
 * More than one credential: a second Authorization header (Node keeps only
 * the first, so it is looked for in the raw headers), or the header and an
 * access_token parameter (RFC 6750 section 2: one method per request).
 */
export function secondCredential(rawHeaders: string[], url: string): boolean {
  let seen = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!
    if (name.length === 13 && name.toLowerCase() === 'authorization' && ++seen === 2) return true
  }
  return seen === 1 && url.includes('access_token=')
}

/**
 * The token of a WebSocket open: browsers cannot set Authorization there, so
 * it comes as the second of the offered subprotocols, `bearer, <token>`.
 * An Authorization header as well is two credentials.
 */
export function subprotocolToken(protocols: string | undefined, authorization: string | undefined): string | HttpError {
  if (authorization !== undefined) return invalidRequest()
  if (!protocols) return errors.unauthorized()
  const offered = protocols.split(',').map((p) => p.trim())
  if (offered[0]?.toLowerCase() !== 'bearer') return errors.unauthorized()
  if (offered.length !== 2 || !offered[1]) return errors.invalidToken()
  return offered[1]
}

export function invalidRequest(): HttpError {
  return new ValidationError('Send one bearer token, in the Authorization header only', {
    'www-authenticate': `Bearer realm="${BEARER_REALM}", error="invalid_request"`,
  })
}

/** A valid token of a trusted external issuer on a route of our own accounts (docs/API.md has no closer code). */
export function otherIssuer(): HttpError {
  return new InvalidToken("This route is for this service's accounts; tokens of other issuers are not accepted here", {
    'www-authenticate': challenge.invalidToken('Token issuer not accepted on this route'),
  })
}

/**
 * Verify the bearer token (a token verified before is answered from the
 * cache without a promise), check that its issuer is one the route
 * accepts (`accepts.issuers`, e.g. our own for the account routes), check
 * revocation and, for `owner`, that the path parameter `accepts.ownerParam`
 * is the token's subject.
 */
export function authenticate(
  verifier: TokenVerifier,
  revocations: RevocationList,
  access: Exclude<Access, 'anonymous'>,
  onFailure: (code: string) => void,
  accepts: { issuers?: ReadonlySet<string>; ownerParam?: string; tokenFrom?: 'authorization' | 'subprotocol'; onCache?: (hit: boolean) => void } = {},
): Step {
  const onlyIssuers = accepts.issuers
  const fromSubprotocol = accepts.tokenFrom === 'subprotocol'
  const onCache = accepts.onCache
  const ownerParam = accepts.ownerParam ?? 'user_id'
  const decide = (request: FastifyRequest, result: TokenResult): HttpError | undefined => {
    if (isRefusal(result)) return refusalError(result)
    if (onlyIssuers !== undefined && !onlyIssuers.has(result.iss)) return otherIssuer()
    const status = revocations.check(result)
    if (status === 'revoked') return errors.tokenRevoked()
    if (status === 'unavailable') return errors.unavailable('Token revocation status unavailable')
    if (access === 'owner' && (request.params as Record<string, string | undefined>)[ownerParam] !== result.sub) return errors.forbidden()
    request.auth = result
    return undefined
  }
  const refuse = (err: HttpError): HttpError => {
    onFailure(err.errorCode)
    return err
  }
  return function authenticateStep(request, _reply, done) {
    if (secondCredential(request.raw.rawHeaders, request.url)) return done(refuse(invalidRequest()))
    const token = fromSubprotocol
      ? subprotocolToken(request.headers['sec-websocket-protocol'], request.headers.authorization)
      : bearerToken(request.headers.authorization)
    if (token instanceof HttpError) return done(refuse(token))
    const hit = verifier.cached(token)
    if (onCache !== undefined) onCache(hit !== undefined)
    if (hit !== undefined) {
      const err = decide(request, hit)
      return done(err && refuse(err))
    }
    verifier.verify(token).then(
      (result) => {
        const err = decide(request, result)
        done(err && refuse(err))
      },
      (err: Error) => done(err),
    )
  }
}
