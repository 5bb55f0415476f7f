/**
 * The public surface, as data: every (method, path) the gateway routes, which
 * service owns it, and who may call it. Anything not listed is a 404 at the
 * gateway and never reaches a service.
 */
import type { HTTPMethods } from 'fastify'
import { SigninBody, SignupBody } from '@tollgate/common'
import type { Access } from '../auth/authenticate.js'

export type UpstreamName = 'auth' | 'tasks'

export interface RouteGroup {
  upstream: UpstreamName
  access: Access
  methods: HTTPMethods[]
  urls: string[]
  /** Send the client's bearer token upstream (signout and account deletion revoke it). */
  forwardAuthorization?: boolean
  /** A 2xx answer here revokes the caller's token, or all of the user's tokens: apply it on this replica at once. */
  revokes?: 'token' | 'user'
  /** Extra limits on top of the per-address and per-user ones; these routes' JSON bodies are parsed here. */
  limits?: 'signin' | 'signup'
  /**
   * Who may cache the answers. 'private' (the default): they are about one
   * user, so `Cache-Control: no-store`. 'public': the same for everyone, so
   * the upstream's own cache headers pass.
   */
  cache?: 'private' | 'public'
  /** The service's own schema for the JSON body, checked here before the body is used or forwarded. */
  bodySchema?: object
  /** 'self': only tokens of our own auth-service (its accounts' routes); default: every trusted issuer. */
  issuers?: 'self'
}

export const publicRoutes: RouteGroup[] = [
  { upstream: 'auth', access: 'anonymous', methods: ['POST'], urls: ['/api/auth/signup'], limits: 'signup', bodySchema: SignupBody },
  { upstream: 'auth', access: 'anonymous', methods: ['POST'], urls: ['/api/auth/signin'], limits: 'signin', bodySchema: SigninBody },
  { upstream: 'auth', access: 'user', methods: ['GET'], urls: ['/api/auth/me'], issuers: 'self' },
  { upstream: 'auth', access: 'user', methods: ['DELETE'], urls: ['/api/auth/me'], revokes: 'user', issuers: 'self' },
  // Public keys (JWT_ALG=EdDSA), for anyone who wants to verify our tokens themselves.
  { upstream: 'auth', access: 'anonymous', methods: ['GET'], urls: ['/.well-known/jwks.json'], cache: 'public' },
  {
    upstream: 'auth',
    access: 'user',
    methods: ['POST'],
    urls: ['/api/auth/signout'],
    forwardAuthorization: true,
    revokes: 'token',
    issuers: 'self',
  },
  { upstream: 'tasks', access: 'owner', methods: ['GET', 'POST'], urls: ['/api/:user_id/tasks'] },
  { upstream: 'tasks', access: 'owner', methods: ['GET', 'PUT', 'DELETE'], urls: ['/api/:user_id/tasks/:id'] },
  { upstream: 'tasks', access: 'owner', methods: ['PATCH'], urls: ['/api/:user_id/tasks/:id/complete'] },
]
