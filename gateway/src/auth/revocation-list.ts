/**
 * Signed-out tokens, known to every gateway replica within a poll interval.
 * The auth-service owns the list (in its database, so it survives restarts);
 * each replica keeps a copy in memory, refreshed by polling its feed, so the
 * per-request check is a Map lookup. Entries leave with their tokens' expiry.
 *
 * If the copy cannot be refreshed for longer than the staleness bound, the
 * gateway fails closed (503) unless told to fail open.
 */
import type { FastifyBaseLogger } from 'fastify'

import type { RevocationPage } from '@tollgate/common/contracts'

/** The feed's page, as the auth-service's contract defines it. */
export type { RevocationPage }

export interface RevocationListOptions {
  fetchPage: (after: number) => Promise<RevocationPage>
  pollMs: number
  maxStalenessMs: number
  failOpen: boolean
  /** Our auth-service's issuer: the feed's subject cutoffs without an issuer are its users. */
  ownIssuer: string
  log: FastifyBaseLogger
  /** Epoch milliseconds (default Date.now): staleness and expiry; tests move it instead of sleeping. */
  now?: () => number
}

export type RevocationStatus = 'ok' | 'revoked' | 'unavailable'

/** A revocation as it is learnt (applied here, or read from the feed): one token, or a subject's tokens up to a time. */
export type RevocationEvent = { jti: string } | { issuer: string; sub: string; notBeforeS: number }

export class RevocationList {
  private readonly revoked = new Map<string, number>()
  /** issuer + ' ' + subject -> [not_before, exp], epoch seconds */
  private readonly userCutoffs = new Map<string, [number, number]>()
  private cursor = 0
  private lastSyncAt = 0
  private readonly now: () => number
  private readonly createdAt: number
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  private failing = false
  private readonly listeners = new Set<(event: RevocationEvent) => void>()

  constructor(private readonly opts: RevocationListOptions) {
    this.now = opts.now ?? Date.now
    this.createdAt = this.now()
  }

  get size(): number {
    return this.revoked.size + this.userCutoffs.size
  }

  /** Milliseconds since the list was last refreshed (since it was created, before the first refresh). */
  get staleMs(): number {
    return this.now() - (this.lastSyncAt || this.createdAt)
  }

  get fresh(): boolean {
    return this.now() - this.lastSyncAt <= this.opts.maxStalenessMs
  }

  /** The per-request check: token revoked (by jti, or by its user's cutoff), or the list too stale to trust. */
  check(token: { jti: string | undefined; iss: string; sub: string; iat: number }): RevocationStatus {
    if (!this.fresh && !this.opts.failOpen) return 'unavailable'
    if (token.jti !== undefined && this.revoked.has(token.jti)) return 'revoked'
    if (this.userCutoffs.size > 0) {
      const cutoff = this.userCutoffs.get(subjectKey(token.iss, token.sub))
      if (cutoff && token.iat <= cutoff[0]) return 'revoked'
    }
    return 'ok'
  }

  /** Be told of each revocation as it is learnt (open streams end at once); returns the unsubscribe. */
  onRevoked(listener: (event: RevocationEvent) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private emit(event: RevocationEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event)
      } catch (err) {
        this.opts.log.error({ err }, 'revocation listener failed')
      }
    }
  }

  /**
   * What this replica just saw succeed (a signout, an account deletion),
   * applied at once here; the feed brings it to the other replicas.
   */
  revokeToken(jti: string, expS: number): void {
    this.revoked.set(jti, expS)
    this.emit({ jti })
  }

  /** Every token of one of our users issued at or before notBeforeS. */
  revokeUser(userId: string, notBeforeS: number, expS: number): void {
    this.cutSubject(this.opts.ownIssuer, userId, notBeforeS, expS)
  }

  private cutSubject(issuer: string, sub: string, notBeforeS: number, expS: number): void {
    const key = subjectKey(issuer, sub)
    const known = this.userCutoffs.get(key)
    this.userCutoffs.set(key, known ? [Math.max(known[0], notBeforeS), Math.max(known[1], expS)] : [notBeforeS, expS])
    if (this.listeners.size > 0 && (!known || notBeforeS > known[0])) this.emit({ issuer, sub, notBeforeS })
  }

  /** One round of the feed, all pages. */
  async sync(): Promise<void> {
    let page: RevocationPage
    do {
      page = await this.opts.fetchPage(this.cursor)
      if (page.reset) {
        this.revoked.clear()
        this.userCutoffs.clear()
      }
      const nowS = this.now() / 1000
      for (const entry of page.revoked) {
        if (entry.exp <= nowS) continue
        if (entry.user_id && typeof entry.not_before === 'number') this.cutSubject(entry.issuer ?? this.opts.ownIssuer, entry.user_id, entry.not_before, entry.exp)
        else {
          const known = this.revoked.has(entry.jti)
          this.revoked.set(entry.jti, entry.exp)
          if (!known && this.listeners.size > 0) this.emit({ jti: entry.jti })
        }
      }
      this.cursor = page.cursor
    } while (page.more && !this.stopped)
    this.lastSyncAt = this.now()
    this.prune()
  }

  start(): void {
    const tick = async () => {
      try {
        await this.sync()
        if (this.failing) this.opts.log.info('revocation list is in sync again')
        this.failing = false
      } catch (err) {
        if (!this.failing) {
          this.opts.log.warn({ err: { message: (err as Error).message } }, 'revocation list sync failing')
          this.failing = true
        }
      }
      if (!this.stopped) {
        this.timer = setTimeout(tick, this.opts.pollMs)
        this.timer.unref()
      }
    }
    void tick()
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
  }

  private prune(): void {
    const nowS = this.now() / 1000
    for (const [jti, exp] of this.revoked) if (exp <= nowS) this.revoked.delete(jti)
    for (const [user, [, exp]] of this.userCutoffs) if (exp <= nowS) this.userCutoffs.delete(user)
  }
}

/** Subjects never contain a space (SAFE_SUBJECT), so the last space splits the pair unambiguously. */
function subjectKey(issuer: string, sub: string): string {
  return `${issuer} ${sub}`
}
