/**
 * Live task updates, owner only (registered inside tasksRoutes, whose hooks
 * check the gateway's proof and the owner before anything here runs, the
 * WebSocket upgrade included):
 *
 * - GET /api/:user_id/tasks/events: Server-Sent Events. `: connected` at once,
 *   then per event `id: <event id>` and `data: {"type","task"}`; `: heartbeat`
 *   comments; `Last-Event-ID` resumes after that id; `event: shutdown` when the
 *   server stops.
 * - GET /api/:user_id/tasks/live: WebSocket; each message
 *   `{"id","type","task"}`; pings; close 1001 when the server stops.
 */
import { PassThrough } from 'node:stream'
import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { WebSocket } from 'ws'
import { Type } from '@tollgate/common/typebox'
import { errors, ErrorCode, HttpError } from '@tollgate/common'
import { errorResponses, TaskSchema, UserParams } from '../schemas.js'
import {
  MAX_EVENT_ID,
  TASK_EVENT_TYPES,
  type EventSink,
  type Subscription,
  type TaskEvent,
  type TaskEventHub,
} from '../events/task-events.js'

export interface TaskEventsRoutesOptions {
  hub: TaskEventHub
}

/** A stream whose client reads slower than its events come is dropped past this (it resumes). */
const MAX_BUFFERED_BYTES = 1024 * 1024
/** The WebSocket close handshake gets this long at shutdown before the socket is cut. */
const CLOSE_WAIT_MS = 1000

const EventData = Type.Object({ type: Type.Enum([...TASK_EVENT_TYPES]), task: TaskSchema })

const LastEventIdHeaders = Type.Object({
  'last-event-id': Type.Optional(
    Type.String({ pattern: '^[0-9]{1,19}$', description: 'Resume after this event id (the last `id:` received)' }),
  ),
})

export const sseEvent = (event: TaskEvent): string =>
  `id: ${event.id}\ndata: ${JSON.stringify({ type: event.type, task: event.task })}\n\n`

export const wsMessage = (event: TaskEvent): string => JSON.stringify({ id: event.id, type: event.type, task: event.task })

/**
 * A WebSocket's end of the hub. It exists before the socket does (the
 * subscription is taken before the upgrade); nothing is sent until the
 * subscription starts, which is after attach().
 */
class SocketSink implements EventSink {
  private socket: WebSocket | null = null
  private answered = true
  private gone = false

  constructor(private readonly request: FastifyRequest) {}

  attach(socket: WebSocket): void {
    this.socket = socket
    socket.on('pong', () => {
      this.answered = true
    })
    if (this.gone) socket.close(1001, 'server shutting down')
  }

  send(event: TaskEvent): void {
    const socket = this.socket
    if (!socket || socket.readyState !== socket.OPEN) return
    socket.send(wsMessage(event))
    if (socket.bufferedAmount > MAX_BUFFERED_BYTES) this.abort('client too slow')
  }

  heartbeat(): void {
    const socket = this.socket
    if (!socket || socket.readyState !== socket.OPEN) return
    // No pong since the last ping: the peer is gone.
    if (!this.answered) return this.abort('no pong')
    this.answered = false
    socket.ping()
  }

  shutdown(): Promise<void> {
    this.gone = true
    const socket = this.socket
    if (!socket || socket.readyState === socket.CLOSED) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        socket.terminate()
        resolve()
      }, CLOSE_WAIT_MS)
      socket.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
      socket.close(1001, 'server shutting down')
    })
  }

  abort(reason: string): void {
    this.request.log.info({ reason }, 'event socket dropped')
    this.gone = true
    if (this.socket) this.socket.terminate()
    else this.request.raw.socket.destroy()
  }
}

export const taskEventsRoutes: FastifyPluginAsyncTypebox<TaskEventsRoutesOptions> = async (app, opts) => {
  const { hub } = opts
  const pendingSockets = new WeakMap<FastifyRequest, { sink: SocketSink; subscription: Subscription }>()

  app.get(
    '/api/:user_id/tasks/events',
    {
      schema: {
        summary: 'Live updates of the user’s tasks (Server-Sent Events)',
        description:
          'One event per create, update, completion or deletion of the user’s tasks: `id: <event id>` and ' +
          '`data: {"type":"created"|"updated"|"completed"|"deleted","task":{...}}` (the task as the REST API ' +
          'returns it; for `deleted`, as it was). `: heartbeat` comments keep the stream open. Send ' +
          '`Last-Event-ID` to receive the events after that id first (within the retention window).',
        params: UserParams,
        headers: LastEventIdHeaders,
        response: {
          200: {
            description: 'An endless text/event-stream; each event\'s data is this JSON',
            content: { 'text/event-stream': { schema: EventData } },
          },
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const header = request.headers['last-event-id']
      let after: bigint | undefined
      if (typeof header === 'string') {
        after = BigInt(header)
        if (after > MAX_EVENT_ID) throw errors.validation('headers/last-event-id must be an event id')
      }
      reply
        .code(200)
        .header('content-type', 'text/event-stream')
        .header('cache-control', 'no-store')
        .header('x-accel-buffering', 'no')
      if (request.method === 'HEAD') return reply.send(undefined as never)

      const stream = new PassThrough()
      const write = (text: string) => {
        if (stream.destroyed || stream.writableEnded) return
        stream.write(text)
        // The client does not keep up: drop it, it resumes with Last-Event-ID.
        if (stream.writableLength + stream.readableLength > MAX_BUFFERED_BYTES) sink.abort('client too slow')
      }
      const sink: EventSink = {
        send: (event) => write(sseEvent(event)),
        heartbeat: () => write(': heartbeat\n\n'),
        shutdown: () =>
          new Promise<void>((resolve) => {
            if (stream.destroyed || stream.writableEnded) return resolve()
            reply.raw.once('close', () => resolve())
            reply.raw.once('finish', () => resolve())
            stream.end('event: shutdown\ndata: {}\n\n')
          }),
        abort: (reason) => {
          request.log.info({ reason }, 'event stream dropped')
          stream.destroy()
        },
      }

      // Registered before the first byte: a failure here is still a 503 in the envelope.
      const subscription = await hub.subscribe(request.params.user_id, sink)
      stream.once('close', () => subscription.unsubscribe())
      stream.write(': connected\n\n')
      void subscription.start(after)
      return reply.send(stream as never)
    },
  )

  app.route({
    method: 'GET',
    url: '/api/:user_id/tasks/live',
    schema: {
      summary: 'Live updates of the user’s tasks (WebSocket)',
      description:
        'Upgrade to a WebSocket; each message is `{"id":"<event id>","type":"created"|"updated"|"completed"|"deleted",' +
        '"task":{...}}`. If `Sec-WebSocket-Protocol` offers `bearer`, the answer selects `bearer`. The server pings ' +
        'at the heartbeat interval and closes with 1001 when it shuts down. A plain GET is 426.',
      params: UserParams,
      response: { 101: { description: 'Switching to the WebSocket protocol' }, ...errorResponses },
    },
    handler: async () => {
      throw new HttpError(426, ErrorCode.VALIDATION_ERROR, 'This endpoint speaks WebSocket only: send an Upgrade request')
    },
    // Subscribed before the upgrade: a failure is still an HTTP 503 in the envelope,
    // and once the client sees the socket open, every later write reaches it.
    preHandler: async (request) => {
      if (!request.ws) return
      const { user_id: userId } = request.params as { user_id: string }
      const sink = new SocketSink(request)
      const subscription = await hub.subscribe(userId, sink)
      // Whatever happens to the upgrade, the subscription ends with the connection.
      request.raw.socket.once('close', () => subscription.unsubscribe())
      pendingSockets.set(request, { sink, subscription })
    },
    wsHandler: async (socket: WebSocket, request: FastifyRequest) => {
      const pending = pendingSockets.get(request)
      pendingSockets.delete(request)
      if (!pending) return socket.close(1011, 'unavailable, retry later')
      // Messages from the client mean nothing here (maxPayload keeps them small).
      socket.on('message', () => {})
      socket.once('close', () => pending.subscription.unsubscribe())
      pending.sink.attach(socket)
      await pending.subscription.start()
    },
  })
}
