/**
 * Wires the live streams into one app: revocations the list learns end the
 * affected streams, shutdown ends the app's own streams with a reason
 * (SSE `event: shutdown`, WebSocket 1001) before the server stops, and a
 * gauge counts the open ones.
 */
import { Gauge } from 'prom-client'
import type { FastifyInstance } from 'fastify'
import type { RevocationList } from '../auth/revocation-list.js'
import type { StreamRegistry } from './registry.js'
import type { LiveDeps } from './live-routes.js'

export function installLiveStreams(app: FastifyInstance, streams: StreamRegistry, revocations: RevocationList, now: () => number): LiveDeps {
  const owner = {}
  const unsubscribe = revocations.onRevoked((event) => streams.revoke(event))
  app.addHook('preClose', async () => {
    unsubscribe()
    streams.closeAll('shutdown', owner)
  })
  new Gauge({
    name: 'gateway_open_streams',
    help: 'Live streams open on this process (server-sent events and WebSockets)',
    labelNames: ['kind'] as const,
    registers: [app.metrics],
    collect() {
      this.set({ kind: 'sse' }, streams.count('sse'))
      this.set({ kind: 'websocket' }, streams.count('websocket'))
    },
  })
  return { streams, owner, now }
}
