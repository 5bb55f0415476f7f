/**
 * The gateway's rate limits, built on @fastify/rate-limit's limiter and store:
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
 * Answers carry the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers):
 * `RateLimit-Policy: "user";q=600;w=60` and `RateLimit: "user";r=599;t=60`;
 * a 429 adds `Retry-After` and the envelope.
 */
import rateLimit, { normalizeIP } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ErrorCode, HttpError } from '@tollgate/common'

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

type Check = (req: FastifyRequest, opts?: { increment?: boolean }) => Promise<
  | { isAllowed: true; key: string }
  | { isAllowed: false; key: string; max: number; remaining: number; ttlInSeconds: number; isExceeded: boolean }
>

declare module 'fastify' {
  interface FastifyRequest {
    /** RateLimit field values gathered from every policy applied so far. */
    rateLimitFields: { policy: string[]; state: string[] } | null
  }
}

export interface Limits {
  ip: (req: FastifyRequest, reply: FastifyReply) => Promise<void>
  user: (req: FastifyRequest, reply: FastifyReply) => Promise<void>
  signinIp: (req: FastifyRequest, reply: FastifyReply) => Promise<void>
  signupIp: (req: FastifyRequest, reply: FastifyReply) => Promise<void>
  /** preHandler on sign-in: refuse an email that has failed too often. */
  signinEmailGuard: (req: FastifyRequest, reply: FastifyReply) => Promise<void>
  /** onResponse on sign-in: count a failure against the email. */
  signinEmailCount: (req: FastifyRequest, reply: FastifyReply) => Promise<void>
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

/** @fastify/rate-limit on `app`, counting in `Store`; limiters are then made with `makeLimiter`. */
export async function registerRateLimitPlugin(app: FastifyInstance, Store: new (params: Record<string, unknown>) => unknown): Promise<void> {
  await app.register(rateLimit, { global: false, store: Store as never })
  app.decorateRequest('rateLimitFields', null)
}

export type Limiter = (req: FastifyRequest, reply: FastifyReply, mode?: 'enforce' | 'guard' | 'count') => Promise<void>

/**
 * One policy as a hook-ready function. Requests whose key is undefined are
 * not counted. Modes:
 *   enforce: count this request and refuse it past the limit;
 *   guard:   refuse if the limit is already reached, without counting;
 *   count:   count only (the answer is already on its way).
 */
export function makeLimiter(
  app: FastifyInstance,
  policy: Policy,
  key: (req: FastifyRequest) => string | undefined,
  onRejected: (policy: string) => void,
): Limiter {
  const check = app.createRateLimit({
    max: policy.max,
    timeWindow: policy.windowMs,
    keyGenerator: (req: FastifyRequest) => `${policy.name}:${key(req) ?? ''}`,
  }) as unknown as Check
  const windowS = Math.ceil(policy.windowMs / 1000)
  const policyField = `"${policy.name}";q=${policy.max};w=${windowS}`

  return async function apply(req, reply, mode = 'enforce') {
    if (key(req) === undefined) return
    const result = await check(req, mode === 'guard' ? { increment: false } : undefined)
    if (result.isAllowed || mode === 'count') return
    const remaining = result.isExceeded ? 0 : result.remaining
    const exceeded = mode === 'guard' ? result.remaining <= 0 && result.ttlInSeconds > 0 : result.isExceeded
    if (mode === 'enforce' || exceeded) {
      const fields = (req.rateLimitFields ??= { policy: [], state: [] })
      fields.policy.push(policyField)
      fields.state.push(`"${policy.name}";r=${exceeded ? 0 : remaining};t=${result.ttlInSeconds}`)
      reply.header('ratelimit-policy', fields.policy.join(', '))
      reply.header('ratelimit', fields.state.join(', '))
    }
    if (exceeded) {
      onRejected(policy.name)
      // A little jitter so refused clients do not all come back in the same second.
      const retryAfter = Math.max(1, result.ttlInSeconds) + Math.floor(Math.random() * 2)
      throw new HttpError(429, ErrorCode.RATE_LIMITED, 'Rate limit exceeded, retry later', {
        'retry-after': String(retryAfter),
        'cache-control': 'no-store',
      })
    }
  }
}

export async function registerRateLimits(
  app: FastifyInstance,
  config: LimitsConfig,
  Store: new (params: Record<string, unknown>) => unknown,
  onRejected: (policy: string) => void,
): Promise<Limits> {
  await registerRateLimitPlugin(app, Store)
  const limiter = (policy: Policy, key: (req: FastifyRequest) => string | undefined) => makeLimiter(app, policy, key, onRejected)

  const ip = limiter(config.ip, clientKey)
  const user = limiter(config.user, (req) => req.auth?.sub)
  const signinIp = limiter(config.signinIp, clientKey)
  const signupIp = limiter(config.signupIp, clientKey)
  const signinEmail = limiter(config.signinEmail, emailOf)

  return {
    ip: (req, reply) => ip(req, reply),
    user: (req, reply) => user(req, reply),
    signinIp: (req, reply) => signinIp(req, reply),
    signupIp: (req, reply) => signupIp(req, reply),
    signinEmailGuard: (req, reply) => signinEmail(req, reply, 'guard'),
    signinEmailCount: async (req, reply) => {
      if (reply.statusCode === 401) await signinEmail(req, reply, 'count')
    },
  }
}
