/**
 * The live routes' pieces (a route declared `stream: sse` or
 * `stream: websocket` in tollgate.yaml): a token in the query is refused,
 * each open is counted against STREAMS_PER_USER, and a WebSocket is proxied
 * with @fastify/http-proxy, its token taken from `Sec-WebSocket-Protocol:
 * bearer, <token>` and never passed on (the upstream gets the subprotocol
 * `bearer` and the signed identity, as every proxied route does).
 */
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import proxy from '@fastify/http-proxy'
import { WebSocket } from 'ws'
import { ErrorCode, errors, HttpError, RateLimited, REQUEST_ID_HEADER, ServiceUnavailable, signIdentity, ValidationError, type Identity } from '@tollgate/common'
import type { Step } from '../hook-steps.js'
import { upstreamPath } from '../proxy/forwarded-headers.js'
import { hasDotSegment } from '../proxy/proxy-routes.js'
import type { CloseReason, LiveStream, StreamKind, StreamRegistry } from './registry.js'
import { invalidRequest } from '../auth/authenticate.js'

export interface LiveDeps {
  streams: StreamRegistry
  /** The app that opens them (its shutdown closes them). */
  owner: object
  /** The app's clock: a stream ends when its token expires by it. */
  now: () => number
  /** The clock tolerance of verification (ms): a stream ends at the token's own `exp`, without it. */
  clockToleranceMs: number
}

/** WebSocket close codes: 4401 the token no longer holds (expired, signed out, account deleted); 1001 going away; 1013 try again later. */
export const WS_CLOSE = { unauthorized: 4401, goingAway: 1001, tryAgainLater: 1013 } as const

/** Query parameters that look like a credential: a live route refuses them rather than risk one being used or logged. */
const TOKEN_PARAMS = /[?&](?:access_token|token|bearer|jwt|id_token|auth|authorization)(?:=|&|$)/i

/** Before any other step of a live route: a token in the query string is refused (400), never read. */
export const refuseQueryToken: Step = (request, _reply, done) => {
  const q = request.url.indexOf('?')
  if (q !== -1 && TOKEN_PARAMS.test(request.url.slice(q))) return done(invalidRequest())
  done()
}

export function tooManyStreams(perUser: number): HttpError {
  return new RateLimited(`At most ${perUser} open live streams per user`, { 'retry-after': '5' })
}

/** Count a new stream for the request's verified token, or refuse it (429). */
export function openStream(kind: StreamKind, deps: LiveDeps): (request: FastifyRequest) => LiveStream {
  return (request) => {
    const token = request.auth!
    const expiresAt = token.expiresAt - deps.clockToleranceMs
    // Within the tolerance a request is still served, but a stream would end at once: refused instead.
    if (expiresAt <= deps.now()) throw errors.tokenExpired()
    const stream = deps.streams.open(kind, token, deps.owner, expiresAt, deps.now)
    if (stream === null) throw tooManyStreams(deps.streams.opts.perUser)
    return stream
  }
}

export interface WebSocketRouteOptions {
  paths: string[]
  /**
   * The base URL (http(s), made ws(s) by the proxy) of the target this open goes to: the upstream's next
   * target in rotation, as its HTTP requests are balanced; null when every target is out (503).
   */
  target: () => string | null
  proofKey: Buffer
  identity: (request: FastifyRequest) => Identity
  /** Time the upstream has to complete its handshake. */
  timeoutMs: number
  open: (request: FastifyRequest) => LiveStream
}

/** Where a WebSocket open goes, picked before the upgrade (the proxy asks for it with the raw request). */
const kTarget = Symbol('tollgate.websocketTarget')
type RawWithTarget = { [kTarget]?: string }

/** The client side of each proxied WebSocket, by its connection: how the stream opened by a request is closed. */
const clientSockets = new WeakMap<Socket, WebSocket>()

/**
 * The class ws makes the client side with (its `WebSocket` server option):
 * the same, remembered by its connection as soon as the upgrade completes.
 */
class GovernedWebSocket extends WebSocket {
  setSocket(socket: Socket, head: Buffer, options: object): void {
    clientSockets.set(socket, this)
    ;(WebSocket.prototype as unknown as { setSocket: (s: Socket, h: Buffer, o: object) => void }).setSocket.call(this, socket, head, options)
  }
}

/** End a governed WebSocket: 4401 when its token no longer holds, 1001 at shutdown; before the upgrade, drop the connection. */
function closeSocket(socket: Socket, reason: CloseReason): void {
  const ws = clientSockets.get(socket)
  if (ws === undefined) return void socket.destroy()
  ws.close(reason === 'shutdown' ? WS_CLOSE.goingAway : reason === 'revocation_unavailable' ? WS_CLOSE.tryAgainLater : WS_CLOSE.unauthorized, reason)
}

/**
 * Proxy WebSocket opens at `paths` with @fastify/http-proxy, in the route's
 * scope (its onRequest steps, the token check among them, run first). Each
 * open stream is registered: the edge closes it with 4401 when its token
 * stops holding, 1001 at shutdown.
 */
export async function registerWebSocketRoutes(scope: FastifyInstance, o: WebSocketRouteOptions): Promise<void> {
  for (const path of o.paths) {
    await scope.register(proxy, {
      prefix: path,
      routes: [''],
      rewritePrefix: path,
      // No fixed upstream: each open goes to the target its preHandler picked (balanced, healthy ones only).
      upstream: '',
      replyOptions: { getUpstream: (request: FastifyRequest) => (request.raw as RawWithTarget)[kTarget]! },
      httpMethods: ['GET'],
      websocket: true,
      proxyPayloads: false, // a GET upgrade has no body to parse
      // Only `bearer` is ever chosen (the token, offered second, is never echoed).
      wsServerOptions: {
        handleProtocols: (protocols: Set<string>) => (protocols.has('bearer') ? 'bearer' : false),
        maxPayload: 64 * 1024,
        WebSocket: GovernedWebSocket,
      },
      wsClientOptions: {
        handshakeTimeout: o.timeoutMs,
        // What the upstream gets: the signed identity and the request id, never the client's headers (its token is in one).
        rewriteRequestHeaders: (_headers: Record<string, string>, request: FastifyRequest) => {
          const proof = signIdentity(o.proofKey, o.identity(request), 'GET', upstreamPath(request.url), request.id)
          return { ...proof, [REQUEST_ID_HEADER]: request.id, 'x-forwarded-for': request.ip, 'x-forwarded-proto': request.protocol }
        },
      },
      preHandler: (request: FastifyRequest, _reply: unknown, done: (err?: Error) => void) => {
        // A plain GET here is no WebSocket open: nothing to proxy.
        if (request.headers.upgrade?.toLowerCase() !== 'websocket') {
          return done(new HttpError(426, ErrorCode.VALIDATION_ERROR, 'This route is a WebSocket: open it with Upgrade: websocket', { upgrade: 'websocket' }))
        }
        if (hasDotSegment(request.url)) return done(new ValidationError('Invalid path'))
        const target = o.target()
        if (target === null) return done(new ServiceUnavailable('Upstream service unavailable'))
        ;(request.raw as RawWithTarget)[kTarget] = target
        let stream: LiveStream
        try {
          stream = o.open(request)
        } catch (err) {
          return done(err as Error)
        }
        const socket = request.raw.socket
        stream.bind((reason) => closeSocket(socket, reason))
        // It ends with its connection, whoever closes it.
        socket.once('close', () => stream.release())
        done()
      },
    } as never)
  }
}
