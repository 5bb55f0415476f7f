/**
 * The internal surface: what services may call through the gateway's second
 * listener. Deny by default: a route is reachable only by the services the
 * allowlist (INTERNAL_ALLOWLIST) names for it.
 */
import type { HTTPMethods } from 'fastify'
import type { UpstreamName } from '../routes/public-api.js'

export interface InternalRouteGroup {
  upstream: UpstreamName
  methods: HTTPMethods[]
  urls: string[]
  /** credential: the caller proves itself in the body (getting a token); service: a service token. */
  access: 'credential' | 'service'
}

export const internalRoutes: InternalRouteGroup[] = [
  { upstream: 'auth', methods: ['POST'], urls: ['/internal/service-token'], access: 'credential' },
  { upstream: 'tasks', methods: ['DELETE'], urls: ['/internal/users/:user_id/tasks'], access: 'service' },
  // Revoke every token of a subject of an issuer issued before a time (a Better Auth app's sign-out).
  { upstream: 'auth', methods: ['POST'], urls: ['/internal/subject-revocations'], access: 'service' },
]

/** Default allowlist: the auth-service purges a deleted account's tasks. */
export const DEFAULT_ALLOWLIST = JSON.stringify({ 'auth-service': ['DELETE /internal/users/:user_id/tasks'] })
