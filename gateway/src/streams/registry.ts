/**
 * The open live streams (SSE answers and WebSockets) of this process, so the
 * edge can govern them after they opened: each is closed when its token
 * expires (a timer at its expiry), when the revocation list learns its token
 * or its user was cut off, or at shutdown, and each user holds at most
 * STREAMS_PER_USER of them.
 *
 * One registry per process, handed to every app built in it (a config
 * reload builds a new app; streams opened by the old one stay governed).
 */
import type { VerifiedToken } from '../auth/token-verifier.js'

/** Why the edge ends a stream: the SSE `revoked` event's reason, the WebSocket close reason. */
export type CloseReason = 'token_revoked' | 'token_expired' | 'user_revoked' | 'shutdown' | 'revocation_unavailable'

export type StreamKind = 'sse' | 'websocket'

/** What a revocation names: one token, or every token of a subject issued at or before notBefore (epoch s). */
export type Revocation = { jti: string } | { issuer: string; sub: string; notBeforeS: number }

/** The longest delay setTimeout takes; later expiries re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1

export class LiveStream {
  private closer: ((reason: CloseReason) => void) | null = null
  private pending: CloseReason | null = null
  private timer: NodeJS.Timeout | null = null
  released = false

  constructor(
    private readonly registry: StreamRegistry,
    readonly kind: StreamKind,
    readonly token: VerifiedToken,
    /** The app that opened it: its shutdown ends its own streams. */
    readonly owner: object,
    /** The token's `exp` (epoch ms, without the clock tolerance verification allows). */
    readonly expiresAt: number,
  ) {}

  /** How to end it, once the stream really flows; a close asked for before runs now. */
  bind(closer: (reason: CloseReason) => void): void {
    if (this.released) return
    this.closer = closer
    if (this.pending !== null) this.close(this.pending)
  }

  /** End the stream with a reason (once; later calls do nothing). */
  close(reason: CloseReason): void {
    if (this.released) return
    const closer = this.closer
    if (closer === null) {
      this.pending ??= reason
      return
    }
    this.closer = null
    this.release()
    closer(reason)
  }

  /** The stream ended (its client left, the upstream finished, or the edge closed it). */
  release(): void {
    if (this.released) return
    this.released = true
    if (this.timer) clearTimeout(this.timer)
    this.registry.forget(this)
  }

  /** @internal */
  armExpiry(now: () => number): void {
    const left = this.expiresAt - now()
    if (left <= 0) return this.close('token_expired')
    this.timer = setTimeout(() => (left > MAX_TIMER_MS ? this.armExpiry(now) : this.close('token_expired')), Math.min(left, MAX_TIMER_MS))
    this.timer.unref()
  }
}

export interface StreamRegistryOptions {
  /** Open streams per user (issuer and subject), on this process. */
  perUser: number
}

export class StreamRegistry {
  private readonly all = new Set<LiveStream>()
  private readonly byJti = new Map<string, Set<LiveStream>>()
  private readonly bySubject = new Map<string, Set<LiveStream>>()

  constructor(readonly opts: StreamRegistryOptions) {}

  get size(): number {
    return this.all.size
  }

  count(kind: StreamKind): number {
    let n = 0
    for (const s of this.all) if (s.kind === kind) n++
    return n
  }

  /**
   * A new stream for a verified token, counted at once (so the next open
   * already sees it), or null when its user holds the maximum already.
   * `now` is the app's clock: the stream ends at `expiresAt` by it.
   */
  open(kind: StreamKind, token: VerifiedToken, owner: object, expiresAt: number, now: () => number): LiveStream | null {
    const subject = subjectKey(token.iss, token.sub)
    const mine = this.bySubject.get(subject)
    if (mine !== undefined && mine.size >= this.opts.perUser) return null
    const stream = new LiveStream(this, kind, token, owner, expiresAt)
    this.all.add(stream)
    add(this.bySubject, subject, stream)
    if (token.jti !== undefined) add(this.byJti, token.jti, stream)
    stream.armExpiry(now)
    return stream
  }

  /** The revocation list learnt of a signed-out token or a cut-off user: end exactly their streams. */
  revoke(r: Revocation): void {
    if ('jti' in r) {
      for (const s of [...(this.byJti.get(r.jti) ?? [])]) s.close('token_revoked')
      return
    }
    for (const s of [...(this.bySubject.get(subjectKey(r.issuer, r.sub)) ?? [])]) {
      if (s.token.iat <= r.notBeforeS) s.close('user_revoked')
    }
  }

  /** Shutdown: end the streams an app opened (or all), each with its reason. */
  closeAll(reason: CloseReason, owner?: object): void {
    for (const s of [...this.all]) if (owner === undefined || s.owner === owner) s.close(reason)
  }

  /** @internal */
  forget(stream: LiveStream): void {
    this.all.delete(stream)
    remove(this.bySubject, subjectKey(stream.token.iss, stream.token.sub), stream)
    if (stream.token.jti !== undefined) remove(this.byJti, stream.token.jti, stream)
  }
}

function subjectKey(issuer: string, sub: string): string {
  return `${issuer} ${sub}`
}

function add(map: Map<string, Set<LiveStream>>, key: string, s: LiveStream): void {
  let set = map.get(key)
  if (!set) map.set(key, (set = new Set()))
  set.add(s)
}

function remove(map: Map<string, Set<LiveStream>>, key: string, s: LiveStream): void {
  const set = map.get(key)
  if (!set) return
  set.delete(s)
  if (set.size === 0) map.delete(key)
}
