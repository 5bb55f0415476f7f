/**
 * An upstream service with one or more targets, as one undici Dispatcher:
 * balancing over the members in rotation, passive outlier ejection, active
 * health checks, DNS re-resolution, and a circuit breaker (every member out:
 * the request fails at once, it never queues).
 *
 * Member: one Pool per resolved address of a target. A target given by IP
 * (or before its name first resolved) is one member that undici dials itself.
 * With a single member, a request goes straight to its Pool, as cheap as a
 * bare Pool; ejection needs a second member to send traffic to.
 */
import { isIP } from 'node:net'
import { lookup as dnsLookup } from 'node:dns/promises'
import { Dispatcher } from 'undici'
import { createMemberPool, Member, type EjectionReason } from './member.js'
import type { UpstreamMetrics } from './metrics.js'

export interface HealthCheckDef {
  /** GET this path; a 2xx is healthy. Default /health. */
  path: string
  intervalMs: number
  timeoutMs: number
  /** Passing checks in a row to come back (default 1: back within one interval). */
  healthyThreshold: number
  /** Failing checks in a row to go out (default 2). */
  unhealthyThreshold: number
}

export interface OutlierDef {
  /** Connection errors or 5xx answers in a row that eject a target (default 5, as Envoy). */
  consecutiveFailures: number
  /** First ejection lasts this long, the n-th n times as long (default 30 s, as Envoy)... */
  baseEjectionMs: number
  /** ...up to this (default 300 s, as Envoy). */
  maxEjectionMs: number
}

export interface UpstreamDef {
  name: string
  /** Base URLs, one scheme for all. */
  targets: string[]
  balancing?: 'round-robin' | 'least-busy'
  connections: number
  connectTimeoutMs: number
  /** Time to the first byte, then between body chunks (undici backstop; the forwarder keeps its own timer). */
  timeoutMs: number
  healthCheck?: Partial<HealthCheckDef>
  outlier?: Partial<OutlierDef>
  /** Re-resolve target names this often (default 5 s); 0 turns it off. */
  dnsRefreshMs?: number
  ca?: Buffer
}

export type Lookup = (host: string, opts: { all: true }) => Promise<Array<{ address: string; family: number }>>

export interface UpstreamDeps {
  metrics?: UpstreamMetrics
  /** Epoch ms; tests move it to expire ejections. */
  now?: () => number
  lookup?: Lookup
  log?: { warn: (obj: object, msg: string) => void }
  /** Start the health-check and DNS timers (default true); tests drive checkHealth/refreshDns themselves. */
  timers?: boolean
}

export const HEALTH_CHECK_DEFAULTS: HealthCheckDef = { path: '/health', intervalMs: 5000, timeoutMs: 1000, healthyThreshold: 1, unhealthyThreshold: 2 }
export const OUTLIER_DEFAULTS: OutlierDef = { consecutiveFailures: 5, baseEjectionMs: 30_000, maxEjectionMs: 300_000 }
export const DNS_REFRESH_DEFAULT_MS = 5000

/** A handler with a `target` field (the forwarder's exchange) learns the member each attempt went to (logs, latency). */
export interface TargetAware {
  target?: Member | null
}

/** Every member is out: answered 503 at once. */
export class NoHealthyTarget extends Error {
  code = 'UPSTREAM_NO_HEALTHY_TARGET'
}

/** Errors that count against a member: it could not be reached, or it broke or stalled mid-exchange. */
const FAILURE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ETIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
])
/**
 * Of those, the ones that say the connection or the process is gone (a passing health check brings it back):
 * a killed process first resets the exchanges in flight, then refuses, so resets count here too. Answers that
 * are 5xx or too slow come from a process that is there: those wait their ejection out.
 */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT'])

interface Target {
  origin: string
  hostname: string
  /** host:port, for labels. */
  host: string
  /** A name to resolve (not an IP literal). */
  resolvable: boolean
}

export class Upstream extends Dispatcher {
  readonly name: string
  /** The members in rotation order; replaced (never mutated) when DNS answers change. */
  members: Member[]
  private readonly targets: Target[]
  private readonly leastBusy: boolean
  private readonly health: HealthCheckDef | null
  private readonly outlier: OutlierDef
  private readonly now: () => number
  private readonly lookup: Lookup
  private readonly metrics: UpstreamMetrics | undefined
  private readonly poolOptions: { connections: number; connectTimeoutMs: number; timeoutMs: number; ca?: Buffer }
  private readonly timers: NodeJS.Timeout[] = []
  private next = 0
  /** The member a handler's last attempt failed on: its retry goes elsewhere. */
  private readonly failedOn = new WeakMap<object, Member>()
  private checking = false
  private closing = false

  constructor(def: UpstreamDef, private readonly deps: UpstreamDeps = {}) {
    super()
    if (def.targets.length === 0) throw new Error(`upstream ${def.name}: no targets`)
    this.name = def.name
    this.targets = def.targets.map((url) => {
      const u = new URL(url)
      const hostname = u.hostname.replace(/^\[|\]$/g, '')
      return { origin: u.origin, hostname, host: u.host, resolvable: isIP(hostname) === 0 }
    })
    const schemes = new Set(def.targets.map((url) => new URL(url).protocol))
    if (schemes.size > 1) throw new Error(`upstream ${def.name}: targets mix ${[...schemes].join(' and ')}`)
    this.leastBusy = def.balancing === 'least-busy'
    this.health = def.healthCheck ? { ...HEALTH_CHECK_DEFAULTS, ...def.healthCheck } : null
    this.outlier = { ...OUTLIER_DEFAULTS, ...def.outlier }
    this.now = deps.now ?? Date.now
    this.lookup = deps.lookup ?? (dnsLookup as Lookup)
    this.metrics = deps.metrics
    this.poolOptions = { connections: def.connections, connectTimeoutMs: def.connectTimeoutMs, timeoutMs: def.timeoutMs, ca: def.ca }
    this.members = this.targets.map((t) => this.newMember(t, null))
    for (const m of this.members) this.metrics?.healthy.set({ upstream: this.name, target: m.label }, 1)

    if (deps.timers !== false) {
      if (this.health) this.timers.push(setInterval(() => void this.checkHealth(), this.health.intervalMs).unref())
      const dnsMs = def.dnsRefreshMs ?? DNS_REFRESH_DEFAULT_MS
      if (dnsMs > 0 && this.targets.some((t) => t.resolvable)) {
        void this.refreshDns()
        this.timers.push(setInterval(() => void this.refreshDns(), dnsMs).unref())
      }
    }
  }

  private newMember(target: Target, address: string | null): Member {
    const label = address === null ? target.host : `${target.host}@${address}`
    const member = new Member(label, address, createMemberPool(target.origin, address, this.poolOptions), dialUrl(target.origin, address))
    member.counter = this.metrics?.requests.series({ upstream: this.name, target: label }) ?? null
    member.gauge = this.metrics?.healthy.labels({ upstream: this.name, target: label }) ?? null
    member.latency = this.metrics?.duration.labels({ upstream: this.name, target: label }) ?? null
    return member
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const members = this.members
    if (members.length === 1) {
      // One member: its Pool, untouched, unless active health checks took it out.
      const only = members[0]!
      if (!only.healthy) return this.unavailable(handler)
      only.counter?.inc()
      if ((handler as TargetAware).target !== undefined) (handler as TargetAware).target = only
      return only.pool.dispatch(opts, handler)
    }
    const member = this.pick(members, this.failedOn.get(handler))
    if (member === null) return this.unavailable(handler)
    member.counter?.inc()
    if ((handler as TargetAware).target !== undefined) (handler as TargetAware).target = member
    // A handler of undici's newer API (none in the gateway): balanced, not tracked.
    if ((handler as { onRequestStart?: unknown }).onRequestStart !== undefined) return member.pool.dispatch(opts, handler)
    member.inflight++
    return member.pool.dispatch(opts, new Tracked(this, member, handler))
  }

  /**
   * The base URL of the next target in rotation (healthy, not ejected), for a connection that does not go
   * through the pools (a WebSocket, proxied by @fastify/http-proxy); null when every target is out. A name
   * that DNS spread over several addresses is dialled at the member's address.
   */
  pickUrl(): string | null {
    const members = this.members
    const member = members.length === 1 ? (members[0]!.available(this.now()) ? members[0]! : null) : this.pick(members, undefined)
    return member === null ? null : member.url
  }

  private unavailable(handler: Dispatcher.DispatchHandler): boolean {
    handler.onError?.(new NoHealthyTarget(`${this.name}: no target in rotation`))
    return true
  }

  /** The next member in rotation (least-busy: the one with the fewest requests in flight), not `avoid` if another is in. */
  private pick(members: Member[], avoid: Member | undefined): Member | null {
    const now = this.now()
    const n = members.length
    const start = this.next++ % n
    if (this.next >= n) this.next = 0
    let best: Member | null = null
    for (let i = 0; i < n; i++) {
      const m = members[(start + i) % n]!
      if (m === avoid || !m.available(now)) continue
      if (!this.leastBusy) return m
      if (best === null || m.inflight < best.inflight) best = m
    }
    if (best === null && avoid !== undefined && members.includes(avoid) && avoid.available(now)) return avoid
    return best
  }

  /**
   * Called by Tracked when an exchange on `member` settled: `failed` is the
   * failure ('5xx' or an error code), null for an answer, undefined when it
   * says nothing about the member (the client left, the request was dropped unsent).
   */
  settled(member: Member, handler: object, failed: string | null | undefined): void {
    member.inflight--
    if (failed === undefined) return
    if (failed === null) {
      member.failures = 0
      return
    }
    this.failedOn.set(handler, member)
    this.metrics?.failures.inc({ upstream: this.name, target: member.label })
    member.failures++
    if (member.failures >= this.outlier.consecutiveFailures && member.ejectedUntil === 0 && !member.awaitingCheck) {
      this.eject(member, failed === '5xx' ? '5xx' : CONNECT_CODES.has(failed) ? 'connect' : '5xx')
    }
  }

  private eject(member: Member, reason: EjectionReason): void {
    const now = this.now()
    // Envoy's rule: the n-th ejection lasts n x base, up to the max; a member that stayed in for the max starts over.
    if (member.lastEjectedAt !== 0 && now - member.lastEjectedAt > this.outlier.maxEjectionMs + member.ejections * this.outlier.baseEjectionMs) {
      member.ejections = 0
    }
    member.ejections++
    member.lastEjectedAt = now
    member.failures = 0
    member.ejectionReason = reason
    member.ejectedUntil = now + Math.min(this.outlier.baseEjectionMs * member.ejections, this.outlier.maxEjectionMs)
    if (this.health) member.awaitingCheck = true
    this.metrics?.ejections.inc({ upstream: this.name, target: member.label })
    this.metrics?.healthy.set({ upstream: this.name, target: member.label }, 0)
    this.deps.log?.warn({ upstream: this.name, target: member.label, reason, ejectedForMs: member.ejectedUntil - now }, 'upstream target ejected')
  }

  /** One round of active health checks on every member (the timer calls it every interval). */
  async checkHealth(): Promise<void> {
    const health = this.health
    if (health === null || this.checking) return
    this.checking = true
    try {
      await Promise.all(this.members.map((m) => this.checkOne(m, health)))
    } finally {
      this.checking = false
    }
  }

  private async checkOne(member: Member, health: HealthCheckDef): Promise<void> {
    let ok = false
    try {
      const res = await member.pool.request({ method: 'GET', path: health.path, headersTimeout: health.timeoutMs, bodyTimeout: health.timeoutMs })
      await res.body.dump()
      ok = res.statusCode >= 200 && res.statusCode < 300
    } catch {
      ok = false
    }
    if (member.closed) return
    if (ok) {
      member.checkFailures = 0
      member.checkSuccesses++
      if (!member.healthy && member.checkSuccesses >= health.healthyThreshold) member.healthy = true
      // Ejected because it could not be reached: answering again brings it back; a 5xx ejection waits its time out too.
      if (member.awaitingCheck && (member.ejectionReason === 'connect' || this.now() >= member.ejectedUntil)) {
        member.awaitingCheck = false
        member.ejectedUntil = 0
      }
    } else {
      member.checkSuccesses = 0
      member.checkFailures++
      if (member.healthy && member.checkFailures >= health.unhealthyThreshold) member.healthy = false
    }
    this.metrics?.healthy.set({ upstream: this.name, target: member.label }, member.available(this.now()) ? 1 : 0)
  }

  /** Re-resolve the target names: one member per address; gone addresses drain and close. */
  async refreshDns(): Promise<void> {
    const next: Member[] = []
    const current = new Map(this.members.map((m) => [m.label, m]))
    for (const target of this.targets) {
      let addresses: string[] | null = null
      if (target.resolvable) {
        try {
          const answers = await this.lookup(target.hostname, { all: true })
          // One family, the first answer's (what a plain connect would use): "localhost" is 127.0.0.1 and ::1, one of which may not listen.
          const family = answers[0]?.family
          addresses = answers.filter((a) => a.family === family).map((a) => a.address)
        } catch (err) {
          this.deps.log?.warn({ upstream: this.name, target: target.host, err: { message: (err as Error).message } }, 'upstream target name did not resolve: keeping its addresses')
        }
      }
      if (addresses === null || addresses.length === 0) {
        // Not a name, or no answer: keep what this target had.
        for (const m of this.members) if (m.label === target.host || m.label.startsWith(`${target.host}@`)) next.push(m)
        continue
      }
      for (const address of [...new Set(addresses)]) {
        const label = `${target.host}@${address}`
        next.push(current.get(label) ?? this.newMember(target, address))
      }
    }
    if (this.closing) {
      for (const m of next) if (!this.members.includes(m)) void m.pool.close()
      return
    }
    const gone = this.members.filter((m) => !next.includes(m))
    const added = next.filter((m) => !this.members.includes(m))
    if (gone.length === 0 && added.length === 0) return
    this.members = next
    for (const m of added) this.metrics?.healthy.set({ upstream: this.name, target: m.label }, 1)
    for (const m of gone) {
      m.closed = true
      this.metrics?.healthy.remove({ upstream: this.name, target: m.label })
      void m.pool.close().catch(() => undefined) // in-flight requests finish first
    }
  }

  /** Readiness: "ok" / "unavailable" for one member; with several, each member's state. */
  async readiness(): Promise<string> {
    const health = this.health ?? HEALTH_CHECK_DEFAULTS
    const members = this.members
    const now = this.now()
    const states = await Promise.all(
      members.map(async (m) => {
        if (!m.available(now)) return 'out'
        try {
          const res = await m.pool.request({ method: 'GET', path: health.path, headersTimeout: 1500, bodyTimeout: 1500 })
          await res.body.dump()
          return res.statusCode === 200 ? 'ok' : 'unavailable'
        } catch {
          return 'unavailable'
        }
      }),
    )
    if (members.length === 1) return states[0] === 'ok' ? 'ok' : 'unavailable'
    const up = states.filter((s) => s === 'ok').length
    const detail = members.map((m, i) => `${m.label} ${states[i]}`).join(', ')
    return `${up === 0 ? 'unavailable' : up === members.length ? 'ok' : 'degraded'} (${detail})`
  }

  override async close(): Promise<void> {
    this.closing = true
    for (const t of this.timers) clearInterval(t)
    await Promise.all(this.members.map((m) => m.pool.close()))
  }

  override async destroy(): Promise<void> {
    this.closing = true
    for (const t of this.timers) clearInterval(t)
    await Promise.all(this.members.map((m) => m.pool.destroy()))
  }
}

/**
 * Watches one exchange for its member: a 5xx answer or a connection-level
 * error counts against it, any other answer resets its count.
 */
class Tracked implements Dispatcher.DispatchHandler {
  private settledYet = false
  constructor(
    private readonly upstream: Upstream,
    private readonly member: Member,
    private readonly handler: Dispatcher.DispatchHandler,
  ) {}

  private settle(failed: string | null | undefined): void {
    if (this.settledYet) return
    this.settledYet = true
    this.upstream.settled(this.member, this.handler, failed)
  }

  onConnect(abort: (err?: Error) => void): void {
    this.handler.onConnect?.(abort)
  }
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode >= 200) this.settle(statusCode >= 500 ? '5xx' : null)
    return this.handler.onHeaders?.(statusCode, rawHeaders, resume, statusText) ?? true
  }
  onData(chunk: Buffer): boolean {
    return this.handler.onData?.(chunk) ?? true
  }
  onComplete(trailers: string[] | null): void {
    this.settle(null)
    this.handler.onComplete?.(trailers)
  }
  onError(err: Error): void {
    const code = (err as { code?: string }).code ?? ''
    this.settle(FAILURE_CODES.has(code) ? code : undefined)
    this.handler.onError?.(err)
  }
  onUpgrade(statusCode: number, headers: Buffer[] | string[] | null, socket: import('node:stream').Duplex): void {
    this.settle(null)
    this.handler.onUpgrade?.(statusCode, headers, socket)
  }
  onResponseStarted(): void {
    this.handler.onResponseStarted?.()
  }
}

/** The origin with its host replaced by the address a member dials (IPv6 in brackets). */
function dialUrl(origin: string, address: string | null): string {
  if (address === null) return origin
  const u = new URL(origin)
  u.hostname = isIP(address) === 6 ? `[${address}]` : address
  return u.origin
}
