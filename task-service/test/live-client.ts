/**
 * Clients of the live task routes as the gateway reaches them: a listening
 * app, requests with the identity proof, an SSE reader (fetch, parsing the
 * stream frame by frame) and a WebSocket (ws) that queues its messages.
 */
import { randomUUID } from 'node:crypto'
import WebSocket from 'ws'
import { signIdentity, type App } from '@tollgate/common'
import { KEY } from './helper.js'

type Tap = { teardown(fn: () => unknown): void }

/** The app listening on a free loopback port; its base URL. */
export async function listening(app: App): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (!address || typeof address === 'string') throw new Error('no address')
  return `http://127.0.0.1:${address.port}`
}

/** The gateway's headers for a GET of `path` by `userId` (no userId: no proof). */
export function proofHeaders(path: string, userId?: string): Record<string, string> {
  const requestId = randomUUID()
  return {
    'x-request-id': requestId,
    ...(userId === undefined ? {} : signIdentity(KEY, { caller: 'user', userId }, 'GET', path, requestId)),
  }
}

/** One SSE frame: a comment (`: text`) or an event with its fields. */
export interface Frame {
  comment?: string
  id?: string
  event?: string
  data?: string
  raw: string
}

export interface EventData {
  type: string
  task: Record<string, unknown> & { id: string }
}

/** Frames in arrival order; next() waits for the next one (or the end of the stream: null). */
class Queue<T> {
  private items: T[] = []
  private waiters: Array<(item: T | null) => void> = []
  private ended = false

  push(item: T): void {
    const waiter = this.waiters.shift()
    if (waiter) waiter(item)
    else this.items.push(item)
  }

  end(): void {
    this.ended = true
    for (const waiter of this.waiters.splice(0)) waiter(null)
  }

  next(): Promise<T | null> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift()!)
    if (this.ended) return Promise.resolve(null)
    return new Promise((resolve) => this.waiters.push(resolve))
  }
}

export interface SseStream {
  status: number
  headers: Headers
  /** The next frame, or null when the stream ended. */
  next(): Promise<Frame | null>
  /** The next event frame (skipping comments), parsed; null at the end. */
  nextEvent(): Promise<(EventData & { id: string }) | null>
  close(): void
}

function parseFrame(raw: string): Frame {
  const frame: Frame = { raw }
  for (const line of raw.split('\n')) {
    if (line.startsWith(':')) frame.comment = line.slice(1).trim()
    else {
      const colon = line.indexOf(':')
      const field = colon === -1 ? line : line.slice(0, colon)
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '')
      if (field === 'id' || field === 'event') frame[field] = value
      else if (field === 'data') frame.data = frame.data === undefined ? value : `${frame.data}\n${value}`
    }
  }
  return frame
}

/** GET /api/:user_id/tasks/events as `asUser` (default: the owner). */
export async function openEvents(
  t: Tap,
  baseUrl: string,
  userId: string,
  opts: { asUser?: string; lastEventId?: string } = {},
): Promise<SseStream> {
  const path = `/api/${userId}/tasks/events`
  const controller = new AbortController()
  const headers = proofHeaders(path, opts.asUser ?? userId)
  if (opts.lastEventId !== undefined) headers['last-event-id'] = opts.lastEventId
  const res = await fetch(`${baseUrl}${path}`, { headers, signal: controller.signal })
  const frames = new Queue<Frame>()
  const close = () => controller.abort()
  t.teardown(close)
  void (async () => {
    let buffer = ''
    try {
      const decoder = new TextDecoder()
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true })
        let end: number
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          frames.push(parseFrame(buffer.slice(0, end)))
          buffer = buffer.slice(end + 2)
        }
      }
    } catch {
      // aborted by close(), or the server cut the stream
    }
    frames.end()
  })()
  const next = () => frames.next()
  return {
    status: res.status,
    headers: res.headers,
    next,
    async nextEvent() {
      for (;;) {
        const frame = await next()
        if (frame === null) return null
        if (frame.comment !== undefined) continue
        return { id: frame.id!, ...(JSON.parse(frame.data!) as EventData) }
      }
    },
    close,
  }
}

export interface LiveSocket {
  socket: WebSocket
  /** The next message, parsed; null once the socket closed. */
  next(): Promise<(EventData & { id: string }) | null>
  /** Resolves with the close code and reason. */
  closed: Promise<{ code: number; reason: string }>
}

/** A WebSocket to /api/:user_id/tasks/live, open (rejects with the HTTP answer when refused). */
export async function openLive(
  t: Tap,
  baseUrl: string,
  userId: string,
  opts: { asUser?: string; protocols?: string[] } = {},
): Promise<LiveSocket> {
  const path = `/api/${userId}/tasks/live`
  const socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}${path}`, opts.protocols ?? [], {
    headers: proofHeaders(path, opts.asUser ?? userId),
  })
  t.teardown(() => socket.terminate())
  socket.on('error', () => {}) // a refused or cut connection is reported by open or closed
  const messages = new Queue<EventData & { id: string }>()
  socket.on('message', (data) => messages.push(JSON.parse(String(data))))
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on('close', (code, reason) => {
      messages.end()
      resolve({ code, reason: String(reason) })
    }),
  )
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve())
    socket.once('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c))
      res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, body })))
    })
    socket.once('error', reject)
  })
  return { socket, next: () => messages.next(), closed }
}
