/**
 * One place requests can go: one undici Pool to one address of one target,
 * with what balancing, outlier ejection and health checks know about it.
 */
import { poolOptions } from '../proxy/upstream.js'
import { buildConnector, Pool } from 'undici'

export interface PoolOptions {
  connections: number
  connectTimeoutMs: number
  timeoutMs: number
  ca?: Buffer
}

/** Why a member was ejected: a process that refused connections is back as soon as a health check passes. */
export type EjectionReason = 'connect' | '5xx'

export class Member {
  /** Requests handed to this member and not settled yet (least-busy balancing). */
  inflight = 0
  /** Failures in a row (connection errors and 5xx answers); a success resets it. */
  failures = 0
  /** Ejections so far: each one lasts longer (base x count, up to the max). */
  ejections = 0
  /** 0, or the time (epoch ms) until which passive ejection keeps it out. */
  ejectedUntil = 0
  lastEjectedAt = 0
  ejectionReason: EjectionReason = 'connect'
  /** Ejected with health checks on: out until a check passes. */
  awaitingCheck = false
  /** The active health check's verdict (true until checks say otherwise). */
  healthy = true
  checkSuccesses = 0
  checkFailures = 0
  closed = false
  /** Its request counter (prom-client child, labels hashed once), or null without metrics. */
  counter: { inc(): void } | null = null
  /** Its latency histogram (time to response headers), or null without metrics. */
  latency: { observe(seconds: number): void } | null = null
  /** Its health gauge (1 in rotation, 0 out), or null without metrics. */
  gauge: { set(value: number): void } | null = null

  constructor(
    /** "host:port" of the target, with "@address" when DNS spread it over several addresses. */
    readonly label: string,
    /** The address this member dials, or null: undici resolves the target's name itself. */
    readonly address: string | null,
    readonly pool: Pool,
    /** Its base URL as dialled: the target's origin, at `address` when there is one. */
    readonly url: string = '',
  ) {}

  /** In the rotation now (ejection expiry is checked lazily here). */
  available(now: number): boolean {
    if (!this.healthy || this.awaitingCheck) return false
    if (this.ejectedUntil === 0) return true
    if (now < this.ejectedUntil) return false
    this.ejectedUntil = 0
    this.gauge?.set(1) // the ejection ran out: back in rotation
    return true
  }
}

/**
 * A keep-alive Pool to `origin`. With an address, it dials that address while
 * the origin (Host header, TLS server name) stays the target's name.
 */
export function createMemberPool(origin: string, address: string | null, opts: PoolOptions): Pool {
  const options = poolOptions(opts)
  if (address !== null) {
    // Dial the resolved address; the origin (Host, TLS server name) stays the name.
    const connector = buildConnector({ rejectUnauthorized: true, ...(opts.ca ? { ca: opts.ca } : {}), timeout: opts.connectTimeoutMs })
    const servername = new URL(origin).hostname
    options.connect = (connectOpts, callback) =>
      connector({ ...connectOpts, hostname: address, servername: connectOpts.servername || servername }, callback)
  }
  return new Pool(origin, options)
}
