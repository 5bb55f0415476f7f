/**
 * One listening server for the life of the process, whose requests go to the
 * current generation's Fastify instance (Fastify cannot remove routes, so a
 * reload builds a new instance; the socket and its keep-alive connections
 * stay). Each request is counted on the generation it started on, so a
 * retired generation closes only when its last request (or WebSocket) ends.
 * Upgrades and client errors go to the current instance's own (unlistened)
 * server, where its plugins (@fastify/websocket, the envelope handler) listen.
 */
import http from 'node:http'
import https from 'node:https'
import type { Duplex } from 'node:stream'
import type { App } from '@tollgate/common'

export interface Target {
  app: App
  /** A request (its response) or an upgraded socket started on this generation, and ended. */
  enter(handle: http.ServerResponse | Duplex): void
  leave(handle: http.ServerResponse | Duplex): void
  /** Shutting down: answers close their connection. */
  draining: boolean
}

export interface SharedServerOptions {
  tls?: { cert: Buffer; key: Buffer }
  headersTimeoutMs?: number
  requestTimeoutMs?: number
}

/** An instance to give Fastify's serverFactory: never listened on; it carries the instance's 'upgrade' and 'clientError' listeners. */
export const detachedServer = () => http.createServer()

export function createSharedServer(opts: SharedServerOptions, target: () => Target) {
  // The limits createService gives a server it listens on itself (common/src/service.ts).
  const headersTimeout = opts.headersTimeoutMs ?? 10_000
  const options: http.ServerOptions = {
    headersTimeout,
    requestTimeout: opts.requestTimeoutMs ?? 30_000,
    keepAliveTimeout: 72_000,
    connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(headersTimeout / 2))),
  }
  const server = opts.tls ? https.createServer({ ...opts.tls, ...options }) : http.createServer(options)
  server.keepAliveTimeout = 72_000

  // One 'close' listener per generation, not a closure (and once()'s wrapper) per request: a response closes once.
  const closers = new WeakMap<Target, (this: http.ServerResponse) => void>()
  const closerOf = (t: Target) => {
    let onClose = closers.get(t)
    if (onClose === undefined) {
      onClose = function (this: http.ServerResponse) {
        t.leave(this)
      }
      closers.set(t, onClose)
    }
    return onClose
  }
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const t = target()
    t.enter(res)
    res.on('close', closerOf(t))
    if (t.draining) res.setHeader('connection', 'close')
    t.app.routing(req, res)
  })
  server.on('clientError', (err: Error, socket: Duplex) => {
    target().app.server.emit('clientError', err, socket)
  })
  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const t = target()
    t.enter(socket)
    socket.once('close', () => t.leave(socket))
    t.app.server.emit('upgrade', req, socket, head)
  }
  return {
    server,
    /**
     * Node answers an upgrade as a plain request when nobody listens for 'upgrade': listen on the shared
     * server only while the current instance does (call after each swap).
     */
    follow() {
      const wanted = target().app.server.listenerCount('upgrade') > 0
      const has = server.listeners('upgrade').includes(onUpgrade)
      if (wanted && !has) server.on('upgrade', onUpgrade)
      if (!wanted && has) server.removeListener('upgrade', onUpgrade)
    },
  }
}
