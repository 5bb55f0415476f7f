/**
 * The internal surface's default allowlist. The internal routes themselves are
 * declared in the gateway's file (`internal_routes:`); a route is reachable
 * only by the services the allowlist (INTERNAL_ALLOWLIST) names for it.
 */
import { AccountPurge } from '@tollgate/common/contracts'

/** Default allowlist: the auth-service purges a deleted account's tasks. */
export const DEFAULT_ALLOWLIST = JSON.stringify({ 'auth-service': [`${AccountPurge.method} ${AccountPurge.path}`] })
