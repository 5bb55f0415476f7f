/**
 * Wires the live streams into the process and into each app: revocations the
 * list learns end the affected streams, shutdown ends an app's own streams
 * with a reason (SSE `event: shutdown`, WebSocket 1001) before the server
 * stops, a revocation list gone stale (fail closed, as requests get 503) ends
 * them too (`revocation_unavailable`, WebSocket 1013), and a gauge counts them.
 */
import { Gauge, type Registry } from 'prom-client'
import type { FastifyInstance } from 'fastify'
import type { RevocationList } from '../auth/revocation-list.js'
import type { StreamRegistry } from './registry.js'
import type { LiveDeps } from './live-routes.js'
import type { ResolvedUpstream } from '../gateway-config/load.js'
import type { Config } from '../config.js'
import { createUpstream, type Upstream } from '../upstreams/index.js'

/**
 * For the process (the runtime: one registry whatever the generation): revocations the list learns end
 * the affected streams, a list gone stale (fail closed, as requests get 503) ends them all, a gauge counts
 * them. Returns the stop function.
 */
export function watchStreams(
  streams: StreamRegistry,
  revocations: RevocationList,
  registry: Registry,
  revocationPolicy: { failOpen: boolean; checkMs: number },
): () => void {
  const unsubscribe = revocations.onRevoked((event) => streams.revoke(event))
  // Requests fail closed on a stale list; streams opened before must not outlive it either.
  const staleness = revocationPolicy.failOpen
    ? undefined
    : setInterval(() => {
        if (!revocations.fresh) streams.closeAll('revocation_unavailable')
      }, revocationPolicy.checkMs).unref()
  new Gauge({
    name: 'gateway_open_streams',
    help: 'Live streams open on this process (server-sent events and WebSockets)',
    labelNames: ['kind'] as const,
    registers: [registry],
    collect() {
      this.set({ kind: 'sse' }, streams.count('sse'))
      this.set({ kind: 'websocket' }, streams.count('websocket'))
    },
  })
  return () => {
    unsubscribe()
    clearInterval(staleness)
  }
}

/** For one app (a generation): its shutdown ends its own streams with a reason (SSE `event: shutdown`, WebSocket 1001) before the server stops. */
export function installLiveStreams(app: FastifyInstance, streams: StreamRegistry, clock: { now: () => number; clockToleranceMs: number }): LiveDeps {
  const owner = {}
  app.addHook('preClose', async () => {
    streams.closeAll('shutdown', owner)
  })
  return { streams, owner, ...clock }
}

/**
 * A live route's own connections to its upstream: each open stream holds one
 * for as long as it lasts, so they never come out of the pool the API's
 * requests share (UPSTREAM_CONNECTIONS). No cap here: STREAMS_PER_USER and
 * the address limits bound them. Passive outlier ejection still applies.
 */
export function liveUpstream(
  def: ResolvedUpstream,
  config: Pick<Config, 'UPSTREAM_BALANCING' | 'UPSTREAM_CONNECT_TIMEOUT_MS' | 'UPSTREAM_TIMEOUT_MS' | 'UPSTREAM_DNS_REFRESH_MS'>,
  ca: Buffer | undefined,
  deps: Parameters<typeof createUpstream>[1],
): Upstream {
  return createUpstream(
    {
      name: `${def.name}-live`, // its own metrics' label
      targets: def.targets,
      balancing: def.balance ?? config.UPSTREAM_BALANCING,
      connections: LIVE_CONNECTIONS,
      connectTimeoutMs: def.connectTimeoutMs ?? config.UPSTREAM_CONNECT_TIMEOUT_MS,
      timeoutMs: def.timeoutMs ?? config.UPSTREAM_TIMEOUT_MS,
      ca,
      dnsRefreshMs: config.UPSTREAM_DNS_REFRESH_MS,
    },
    deps,
  )
}

/** Per target: far above what the per-user and per-address limits let through. */
const LIVE_CONNECTIONS = 1_000_000
