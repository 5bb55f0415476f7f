/**
 * How a service knows a request came through the gateway: the gateway signs
 * (caller, user id, method, url, request id, timestamp) with a key only it and
 * the services hold, and services refuse anything unsigned, stale or altered.
 * A client cannot forge it, and a header the client sends cannot replace it:
 * the gateway strips every reserved header before adding its own.
 */
import { hkdfSync, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyRequest } from 'fastify'
import { Unauthorized } from './errors.js'
import { HmacSha256 } from './hmac.js'

import { IdentityHeader } from './contracts.js'

export { IdentityHeader }

/** Headers no client may send: identity and anything in our internal namespaces. */
const RESERVED = /^x[-_](?:user|tollgate|internal|service|forwarded[-_]user|auth[-_]request)(?:[-_]|$)/i
export function isReservedHeader(name: string): boolean {
  return RESERVED.test(name)
}

/** anonymous: signup/signin; user: a verified end user; service:<name>: internal traffic. */
export type Caller = 'anonymous' | 'user' | `service:${string}`

export interface Identity {
  caller: Caller
  /** The verified subject; empty for anonymous and service callers. */
  userId: string
}

/** The proof key: its own secret if configured, else derived (HKDF) from BETTER_AUTH_SECRET. */
export function proofKey(betterAuthSecret: string, explicit?: string): Buffer {
  const ikm = explicit ?? betterAuthSecret
  return Buffer.from(hkdfSync('sha256', ikm, 'tollgate', 'identity-proof-v1', 32))
}

/**
 * The proof binds the path, not the query: proxies may re-encode a query
 * string on the way, and the path is what decides whose data is touched.
 */
function mac(key: Buffer, id: Identity, method: string, url: string, requestId: string, ts: string): string {
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  return macOf(key).base64url(`v1\n${id.caller}\n${id.userId}\n${method.toUpperCase()}\n${path}\n${requestId}\n${ts}`)
}

/** Each key's padded HMAC state, made once (a process holds one or two keys: the proof key, a test's). */
const macs = new WeakMap<Buffer, HmacSha256>()
let lastKey: Buffer | null = null
let lastMac: HmacSha256 | null = null
function macOf(key: Buffer): HmacSha256 {
  if (key === lastKey) return lastMac!
  let m = macs.get(key)
  if (m === undefined) macs.set(key, (m = new HmacSha256(key)))
  lastKey = key
  lastMac = m
  return m
}

/** What the proof signs: the caller and user, the request's method, path and id, and the time (ms). */
type SignedRequest = [key: Buffer, id: Identity, method: string, url: string, requestId: string, now?: number]

export function signIdentity(...request: SignedRequest): Record<string, string> {
  return signIdentityInto({}, ...request)
}

/** signIdentity's headers written into `out` (a forwarded request's headers), in the same order: no object of their own. */
export function signIdentityInto<T extends Record<string, string | string[] | undefined>>(
  out: T,
  key: Buffer,
  id: Identity,
  method: string,
  url: string,
  requestId: string,
  now = Date.now(),
): T {
  const ts = String(now)
  const o = out as Record<string, string | string[] | undefined>
  o[IdentityHeader.caller] = id.caller
  o[IdentityHeader.userId] = id.userId
  o[IdentityHeader.timestamp] = ts
  o[IdentityHeader.signature] = `v1=${mac(key, id, method, url, requestId, ts)}`
  return out
}

function one(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name]
  return typeof v === 'string' ? v : undefined
}

export function verifyIdentity(
  key: Buffer,
  headers: IncomingHttpHeaders,
  method: string,
  url: string,
  requestId: string,
  windowMs: number,
  now = Date.now(),
): Identity | null {
  const caller = one(headers, IdentityHeader.caller)
  const userId = one(headers, IdentityHeader.userId) ?? ''
  const ts = one(headers, IdentityHeader.timestamp)
  const sig = one(headers, IdentityHeader.signature)
  if (!caller || !ts || !sig || !sig.startsWith('v1=')) return null
  if (caller !== 'anonymous' && caller !== 'user' && !/^service:[a-z0-9-]{1,64}$/.test(caller)) return null
  if (!/^\d{1,16}$/.test(ts) || Math.abs(now - Number(ts)) > windowMs) return null
  const expected = Buffer.from(mac(key, { caller: caller as Caller, userId }, method, url, requestId, ts))
  const given = Buffer.from(sig.slice(3))
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null
  if (caller === 'user' && !userId) return null
  return { caller: caller as Caller, userId }
}

declare module 'fastify' {
  interface FastifyRequest {
    identity: Identity | null
  }
}

const noProof = () =>
  new Unauthorized('Requests must come through the gateway')

/**
 * onRequest hook for a service's API routes: sets request.identity from a
 * valid gateway proof, or answers 401. `accept` limits which callers a route
 * group takes.
 */
export function requireGatewayIdentity(key: Buffer, windowMs: number, accept: (id: Identity) => boolean = () => true) {
  return async function gatewayIdentity(request: FastifyRequest): Promise<void> {
    const id = verifyIdentity(key, request.headers, request.method, request.url, request.id, windowMs)
    if (!id || !accept(id)) throw noProof()
    request.identity = id
  }
}
