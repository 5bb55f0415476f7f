/**
 * The gateway's rate limits, counted in @fastify/rate-limit's stores (its
 * LocalStore, or its RedisStore and Lua script behind our failover):
 *
 *   ip            every proxied request, per client address (before auth, so
 *                 garbage tokens count too)
 *   user          protected routes, per verified user (after auth)
 *   signin-ip     sign-in attempts per client address
 *   signin-email  FAILED sign-ins per email, whatever the address: after a
 *                 handful in the window, that email gets 429 (brute force,
 *                 credential stuffing)
 *   signup-ip     sign-ups per client address
 *
 * The stores are driven straight from callback-style hooks rather than
 * through the plugin's promise-based limiter: same windows and counts,
 * without three promise hops per policy on every request.
 *
 * Answers carry the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers):
 * `RateLimit-Policy: "user";q=600;w=60` and `RateLimit: "user";r=599;t=60`;
 * a 429 adds `Retry-After` and the envelope.
 */
import { normalizeIP } from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import { ErrorCode, HttpError } from '@tollgate/common'
import type { CounterStore } from './store.js'
import type { Step } from '../hook-steps.js'

export interface Policy {
  name: string
  max: number
  windowMs: number
}

export interface LimitsConfig {
  ip: Policy
  user: Policy
  signinIp: Policy
  signinEmail: Policy
  signupIp: Policy
}

declare module 'fastify' {
  interface FastifyRequest {
    /** RateLimit field values gathered from every policy applied so far. */
    rateLimitFields: { policy: string; state: string } | null
  }
}

export interface Limits {
  ip: Step
  user: Step
  signinIp: Step
  signupIp: Step
  /** preHandler on sign-in: refuse an email that has failed too often. */
  signinEmailGuard: Step
  /** onResponse on sign-in: count a failure against the email. */
  signinEmailCount: Step
}

const IPV6_PREFIX = 64

/** The client address as a key: IPv6 clients by their /64, so one host cannot rotate through its block. */
export function clientKey(req: FastifyRequest): string {
  return normalizeIP(req.ip, IPV6_PREFIX)
}

function emailOf(req: FastifyRequest): string | undefined {
  const email = (req.body as { email?: unknown } | undefined)?.email
  if (typeof email !== 'string') return undefined
  const normalised = email.trim().toLowerCase()
  return normalised.length > 0 && normalised.length <= 320 ? normalised : undefined
}

/**
 * enforce: count this request and refuse it past the limit;
 * guard:   refuse if the limit is already reached, without counting;
 * count:   count only (the answer is already on its way).
 */
export type LimitMode = 'enforce' | 'guard' | 'count'

/** One policy as a hook step. Requests whose key is undefined are not counted. */
export function makeLimiter(
  store: CounterStore,
  policy: Policy,
  key: (req: FastifyRequest) => string | undefined,
  onRejected: (policy: string) => void,
  mode: LimitMode = 'enforce',
): Step {
  const windowS = Math.ceil(policy.windowMs / 1000)
  const policyField = `"${policy.name}";q=${policy.max};w=${windowS}`
  const prefix = `${policy.name}:`
  const op = mode === 'guard' ? 'read' : 'incr'

  return function limit(req, reply, done) {
    const k = key(req)
    if (k === undefined) return done()
    store[op](
      prefix + k,
      (err, res) => {
        // Our stores never fail (Redis trouble falls back to memory); should one, let the request through.
        if (err || !res || mode === 'count') return done()
        const ttlS = Math.ceil(res.ttl / 1000)
        const remaining = Math.max(0, policy.max - res.current)
        const exceeded = mode === 'guard' ? remaining <= 0 && ttlS > 0 : res.current > policy.max
        if (mode === 'enforce' || exceeded) {
          const state = `"${policy.name}";r=${remaining};t=${ttlS}`
          const fields = req.rateLimitFields
          if (fields === null) {
            req.rateLimitFields = { policy: policyField, state }
          } else {
            fields.policy += `, ${policyField}`
            fields.state += `, ${state}`
          }
          reply.header('ratelimit-policy', req.rateLimitFields!.policy)
          reply.header('ratelimit', req.rateLimitFields!.state)
        }
        if (!exceeded) return done()
        onRejected(policy.name)
        // A little jitter so refused clients do not all come back in the same second.
        const retryAfter = Math.max(1, ttlS) + Math.floor(Math.random() * 2)
        done(
          new HttpError(429, ErrorCode.RATE_LIMITED, 'Rate limit exceeded, retry later', {
            'retry-after': String(retryAfter),
            'cache-control': 'no-store',
          }),
        )
      },
      policy.windowMs,
      policy.max,
    )
  }
}

export function createLimits(config: LimitsConfig, newStore: () => CounterStore, onRejected: (policy: string) => void): Limits {
  const limiter = (policy: Policy, key: (req: FastifyRequest) => string | undefined, mode?: LimitMode) =>
    makeLimiter(newStore(), policy, key, onRejected, mode)
  // One store per policy; guard and count of the failed-sign-in policy share theirs.
  const emailStore = newStore()
  const countFailure = makeLimiter(emailStore, config.signinEmail, emailOf, onRejected, 'count')
  return {
    ip: limiter(config.ip, clientKey),
    user: limiter(config.user, (req) => req.auth?.sub),
    signinIp: limiter(config.signinIp, clientKey),
    signupIp: limiter(config.signupIp, clientKey),
    signinEmailGuard: makeLimiter(emailStore, config.signinEmail, emailOf, onRejected, 'guard'),
    signinEmailCount: (req, reply, done) => (reply.statusCode === 401 ? countFailure(req, reply, done) : done()),
  }
}
