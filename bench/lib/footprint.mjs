/**
 * A process's footprint now (RSS, open fds by kind) and whether it came back
 * near a baseline. Sockets to an upstream are a keep-alive pool bounded by
 * UPSTREAM_CONNECTIONS that idles out on its own; everything else (client
 * sockets, files, other sockets) must return to the baseline.
 */
import { fdBreakdown, round, rssMB } from './proc-stats.mjs'

export const POOL_MAX = 128 // the gateway's UPSTREAM_CONNECTIONS default, per upstream

/** `ports`: { listenPort, upstreamPorts: { tasks: n, auth: n } } */
export function footprint(pid, ports) {
  const kinds = fdBreakdown(pid, ports)
  const pooled = Object.keys(ports.upstreamPorts ?? {}).reduce((sum, k) => sum + (kinds?.[k] ?? 0), 0)
  return { rssMB: round(rssMB(pid), 1), fds: kinds?.total ?? null, fdsOutsidePools: kinds ? kinds.total - pooled : null, fdKinds: kinds }
}

/** Non-pool fds within `fdSlack` of the baseline, every pool within its bound, RSS within `rssFraction`. */
export function backNear(baseline, after, { fdSlack = 10, rssFraction = 0.1 } = {}) {
  const fdDelta = after.fdsOutsidePools - baseline.fdsOutsidePools
  const rssDelta = round(after.rssMB / baseline.rssMB - 1, 3)
  const pools = Object.entries(after.fdKinds ?? {}).filter(([k]) => !['total', 'clients', 'otherSockets', 'other'].includes(k))
  return {
    fdDelta,
    rssDelta,
    fdsOk: fdDelta <= fdSlack && pools.every(([, n]) => n <= POOL_MAX),
    rssOk: rssDelta <= rssFraction,
  }
}

export const pct = (fraction) => `${fraction >= 0 ? '+' : ''}${Math.round(fraction * 1000) / 10} %`
export const signed = (n) => `${n >= 0 ? '+' : ''}${n}`
