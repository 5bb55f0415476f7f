/**
 * The gateway's rate limits, counted in fixed windows (fixed-window.ts: in
 * memory, or in Redis behind our failover, store.ts), or,
 * with Redis, for a policy whose mode is batched, in local counters synced to
 * Redis in batches (batched.ts). The policies are declared in the gateway's
 * file; pipeline/route-pipeline.ts applies each route's. The bundled file's:
 *
 *   ip                  every proxied request, per client address (before
 *                       auth, so garbage tokens count too)
 *   user                protected routes, per verified user (after auth)
 *   signin-ip           sign-in attempts per client address
 *   signin-email-ip     FAILED sign-ins per (email, address): the hard limit on
 *                       guessing one account's password from one place; it
 *                       never touches the owner at another address
 *   signin-ip-failures  FAILED sign-ins per address, whatever the email:
 *                       credential stuffing from one place
 *   signin-email        FAILED sign-ins per email, whatever the address: a much
 *                       higher ceiling with a shorter window, which slows a
 *                       distributed attack on one account without a long
 *                       lockout of its owner
 *   signup-ip           sign-ups per client address
 *
 * The failure limits reserve before the attempt and refund after it: one
 * count per budget is taken before the request goes to the auth-service (429
 * when a budget is spent), and given back unless the answer is 401. So at
 * most the limit is ever checked, also with attempts running at once on many
 * replicas, and correct passwords cost nothing.
 *
 * The stores are driven straight from callback-style hooks rather than
 * through @fastify/rate-limit's promise-based limiter: the same windows and
 * counts as its stores, without three promise hops per policy on every
 * request. Of the plugin only its public normalizeIP is used.
 *
 * Answers carry the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers):
 * `RateLimit-Policy: "user";q=600;w=60` and `RateLimit: "user";r=599;t=60`;
 * a 429 adds `Retry-After` and the envelope.
 */
import { normalizeIP } from '@fastify/rate-limit'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { RateLimited, type HttpError } from '@tollgate/common'
import type { CounterStore, CountingMode } from './store.js'
import type { Step } from '../hook-steps.js'

export interface Policy {
  name: string
  max: number
  windowMs: number
  /** How the count is shared with Redis (store.ts); exact when not said. */
  mode?: CountingMode
}

declare module 'fastify' {
  interface FastifyRequest {
    /** RateLimit field values gathered from every policy applied so far. */
    rateLimitFields: { policy: string; state: string } | null
  }
}

const IPV6_PREFIX = 64

/**
 * The client address as a key: IPv6 clients by their /64, so one host cannot rotate through its block.
 * Every textual IPv6 form has a colon; without one, normalizeIP only lower-cases, and its IPv6 test (Node's
 * isIPv6, a long regular expression) is skipped: about 0.5 % of the gateway's CPU per request in a profile.
 */
export function clientKey(req: FastifyRequest): string {
  const ip = req.ip
  return ip.includes(':') ? normalizeIP(ip, IPV6_PREFIX) : ip.toLowerCase()
}

export function emailOf(req: FastifyRequest): string | undefined {
  const email = (req.body as { email?: unknown } | undefined)?.email
  if (typeof email !== 'string') return undefined
  const normalised = email.trim().toLowerCase()
  return normalised.length > 0 && normalised.length <= 320 ? normalised : undefined
}

export function emailAtAddress(req: FastifyRequest): string | undefined {
  const email = emailOf(req)
  // The address goes first: an email may contain any character, the address key cannot contain a space.
  return email === undefined ? undefined : `${clientKey(req)} ${email}`
}

function addFields(req: FastifyRequest, reply: FastifyReply, policyField: string, state: string): void {
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

function tooMany(ttlS: number): HttpError {
  // A little jitter so refused clients do not all come back in the same second.
  const retryAfter = Math.max(1, ttlS) + Math.floor(Math.random() * 2)
  return new RateLimited('Rate limit exceeded, retry later', {
    'retry-after': String(retryAfter),
    'cache-control': 'no-store',
  })
}

const policyField = (policy: Policy) => `"${policy.name}";q=${policy.max};w=${Math.ceil(policy.windowMs / 1000)}`

/** One policy as a hook step: count this request, refuse it past the limit. Requests whose key is undefined are not counted. */
export function makeLimiter(
  store: CounterStore,
  policy: Policy,
  key: (req: FastifyRequest) => string | undefined,
  onRejected: (policy: string) => void,
): Step {
  const field = policyField(policy)
  const prefix = `${policy.name}:`

  return function limit(req, reply, done) {
    const k = key(req)
    if (k === undefined) return done()
    store.incr(
      prefix + k,
      (err, res) => {
        // Our stores never fail (Redis trouble falls back to memory); should one, let the request through.
        if (err || !res) return done()
        const ttlS = Math.ceil(res.ttl / 1000)
        addFields(req, reply, field, `"${policy.name}";r=${Math.max(0, policy.max - res.current)};t=${ttlS}`)
        if (res.current <= policy.max) return done()
        onRejected(policy.name)
        done(tooMany(ttlS))
      },
      policy.windowMs,
      policy.max,
    )
  }
}

export interface FailureBudget {
  store: CounterStore
  policy: Policy
  key: (req: FastifyRequest) => string | undefined
}

type Reservation = Array<{ store: CounterStore; key: string }>

function giveBack(taken: Reservation): void {
  for (const { store, key } of taken) store.refund(key, () => {})
}

/**
 * Failure budgets as two steps: reserve (preHandler) takes one count in each
 * budget, in order, and refuses with the first spent one (giving back what it
 * took); settle (onResponse) keeps the counts for a 401 and gives them back
 * for anything else. A request is admitted only if each counter, its own
 * reservation included, is within the limit, so concurrent attempts can never
 * pass more than the limit. A refund that lands after its window rolled over
 * frees one count in the next window: bounded by one per attempt in flight.
 */
export function makeFailureBudgets(budgets: FailureBudget[], onRejected: (policy: string) => void): { reserve: Step; settle: Step } {
  const prepared = budgets.map((b) => ({ ...b, prefix: `${b.policy.name}:`, field: policyField(b.policy) }))
  const reservations = new WeakMap<FastifyRequest, Reservation>()

  const reserve: Step = (req, reply, done) => {
    const taken: Reservation = []
    const next = (i: number): void => {
      if (i === prepared.length) {
        if (taken.length > 0) reservations.set(req, taken)
        return done()
      }
      const budget = prepared[i]!
      const k = budget.key(req)
      if (k === undefined) return next(i + 1)
      const key = budget.prefix + k
      budget.store.incr(
        key,
        (err, res) => {
          // Our stores never fail (Redis trouble falls back to memory); should one, let the request through.
          if (err || !res) return next(i + 1)
          taken.push({ store: budget.store, key })
          if (res.current <= budget.policy.max) return next(i + 1)
          giveBack(taken)
          const ttlS = Math.ceil(res.ttl / 1000)
          addFields(req, reply, budget.field, `"${budget.policy.name}";r=0;t=${ttlS}`)
          onRejected(budget.policy.name)
          done(tooMany(ttlS))
        },
        budget.policy.windowMs,
        budget.policy.max,
      )
    }
    next(0)
  }

  const settle: Step = (req, reply, done) => {
    const taken = reservations.get(req)
    if (taken) {
      reservations.delete(req)
      if (reply.statusCode !== 401) giveBack(taken)
    }
    done()
  }
  return { reserve, settle }
}
