/**
 * The `typ` header of each kind of token the project issues (RFC 8725 3.11,
 * RFC 9068): a verifier checks it, so a token minted for one purpose is never
 * taken for another. Service tokens have theirs in service-token.ts.
 */

/** The auth-service's access tokens (RFC 9068 2.1); the gateway and the auth-service refuse ours without it. */
export const ACCESS_TOKEN_TYP = 'at+jwt'
