/**
 * Live task updates: the task_events rows (migration 003) pushed to the
 * streams open on this replica.
 *
 * One dedicated connection LISTENs on `task_events`; a notification names a
 * user, and if that user has a stream here, the user's rows after the last
 * id seen are read and handed to each of their streams in id order. Event ids
 * of one user grow in commit order (the migration takes them under a per-user
 * lock), so a cursor per user never skips a row that commits late.
 *
 * Notifications are a shortcut, not the source of truth: the rows are. Where
 * LISTEN cannot be used or is not proven to work (the embedded PGlite shares
 * one session between connections and delivers a NOTIFY to the connection
 * that sent it; a pooler in transaction mode drops LISTEN), the same read runs
 * every TASK_EVENTS_POLL_MS. The LISTEN is proven by a probe: a notification
 * sent through the pool must come back on the listening connection. Even then
 * a slow poll (10 x TASK_EVENTS_POLL_MS) stays on as a backstop.
 */
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import type { FastifyBaseLogger } from 'fastify'
import { errors } from '@tollgate/common'
import { withDatabase } from '@tollgate/common/db'
import type { Task } from '../schemas.js'

export const TASK_EVENT_TYPES = ['created', 'updated', 'completed', 'deleted'] as const
export type TaskEventType = (typeof TASK_EVENT_TYPES)[number]

export interface TaskEvent {
  /** The event id as decimal text (a bigint): what SSE `id:` and WebSocket `id` carry. */
  id: string
  seq: bigint
  userId: string
  type: TaskEventType
  /** The task as the REST API returns it; for `deleted`, as it was. */
  task: Task
}

/** Where one stream's events go. Calls never overlap and come in id order. */
export interface EventSink {
  send(event: TaskEvent): void
  heartbeat(): void
  /** The server is shutting down: tell the client and end; resolve when it is over. */
  shutdown(): Promise<void>
  /** Too far behind, or the database failed mid-replay: drop the stream (the client resumes). */
  abort(reason: string): void
}

export interface Subscription {
  /**
   * Go live: first the user's events after `after` (within what is kept),
   * then the live ones, none twice and none missing. Without `after`, only
   * events committed after subscribe() resolved.
   */
  start(after?: bigint): Promise<void>
  unsubscribe(): void
}

export interface TaskEventsOptions {
  databaseUrl: string
  connectTimeoutMs: number
  listen: boolean
  pollMs: number
  heartbeatMs: number
  retentionS: number
  log: FastifyBaseLogger
}

/** Largest id a client may send back (PostgreSQL bigint). */
export const MAX_EVENT_ID = 2n ** 63n - 1n

const CHANNEL = 'task_events'
const READ_BATCH = 500
/** Events held for a stream that is still replaying; past this it is dropped and resumes. */
const MAX_PENDING = 10_000
const PRUNE_EVERY_MS = 60_000

interface EventRow {
  id: string
  user_id: string
  type: TaskEventType
  task: Record<string, unknown>
}

interface Subscriber {
  userId: string
  sink: EventSink
  /** Highest id handed to the sink (or below which nothing is wanted). */
  last: bigint
  /** False while the replay runs: live events wait in `pending`. */
  live: boolean
  pending: TaskEvent[]
  closed: boolean
}

interface UserEntry {
  subscribers: Set<Subscriber>
  /** Highest id read for this user; null until the first subscriber has set it. */
  cursor: bigint | null
}

/** The task as the REST API serialises it (same keys, same timestamp format). */
function toTask(json: Record<string, unknown>): Task {
  return {
    id: String(json.id),
    user_id: String(json.user_id),
    title: String(json.title),
    description: json.description === null || json.description === undefined ? null : String(json.description),
    completed: json.completed === true,
    // jsonb keeps microseconds and the session's offset; the API (pg -> Date) shows milliseconds in UTC.
    created_at: new Date(String(json.created_at)).toISOString(),
    updated_at: new Date(String(json.updated_at)).toISOString(),
  }
}

export function toEvent(row: EventRow): TaskEvent {
  return { id: row.id, seq: BigInt(row.id), userId: row.user_id, type: row.type, task: toTask(row.task) }
}

export class TaskEventHub {
  private readonly users = new Map<string, UserEntry>()
  private readonly dirty = new Set<string>()
  private dirtyAll = false
  private reading: Promise<void> | null = null
  private readAgain = false
  private listener: pg.Client | null = null
  private probe: string | null = null
  private listenProven = false
  /** The listening connection is connected (proven or not); losing it is worth a warning. */
  private listenerUp = true
  private reconnectDelayMs = 1000
  private timers: NodeJS.Timeout[] = []
  private pollTimer: NodeJS.Timeout | null = null
  private reconnectTimer: NodeJS.Timeout | null = null
  private closing = false
  private stopped = false
  private readFailing = false

  constructor(
    private readonly pool: pg.Pool,
    private readonly opts: TaskEventsOptions,
  ) {}

  /** True once a notification sent through the pool came back on the listening connection. */
  get listening(): boolean {
    return this.listenProven
  }

  /** Streams open on this replica. */
  get streams(): number {
    let n = 0
    for (const entry of this.users.values()) n += entry.subscribers.size
    return n
  }

  start(): void {
    if (this.opts.listen) void this.connectListener()
    this.schedulePoll()
    const heartbeat = setInterval(() => this.heartbeat(), this.opts.heartbeatMs)
    const prune = setInterval(() => void this.prune().catch((err) => this.opts.log.warn({ err: brief(err) }, 'task events prune failed')), PRUNE_EVERY_MS)
    heartbeat.unref()
    prune.unref()
    this.timers.push(heartbeat, prune)
  }

  /**
   * Register a stream for `userId` and fix where it starts: after the user's
   * newest committed event. Fails (503) when the database cannot be read;
   * nothing has been sent then.
   */
  async subscribe(userId: string, sink: EventSink): Promise<Subscription> {
    if (this.closing) throw errors.unavailable('Shutting down')
    const sub: Subscriber = { userId, sink, last: 0n, live: false, pending: [], closed: false }
    let entry = this.users.get(userId)
    if (!entry) {
      entry = { subscribers: new Set(), cursor: null }
      this.users.set(userId, entry)
    }
    entry.subscribers.add(sub)
    const unsubscribe = () => this.remove(sub)
    try {
      const floor = await this.newestId(userId)
      sub.last = floor
      // Several first subscribers may race: keep the lowest floor, so none misses a row
      // (a row read twice is dropped per stream by id).
      const current = this.users.get(userId)
      if (current && !sub.closed && (current.cursor === null || floor < current.cursor)) {
        current.cursor = floor
        this.wake(userId)
      }
    } catch (err) {
      unsubscribe()
      throw err
    }
    return {
      start: async (after?: bigint) => {
        try {
          if (after !== undefined) await this.replay(sub, after)
        } catch (err) {
          this.opts.log.warn({ err: brief(err) }, 'task events replay failed')
          unsubscribe()
          sub.sink.abort('replay failed')
          return
        }
        if (sub.closed) return
        // Live first (synchronously, so nothing interleaves), then what waited, minus the replayed.
        const waited = sub.pending
        sub.pending = []
        sub.live = true
        for (const event of waited) this.handOver(sub, event)
      },
      unsubscribe,
    }
  }

  /** End every stream (SSE: a shutdown event; WebSocket: close 1001) and stop reading. */
  async closeStreams(): Promise<void> {
    this.closing = true
    this.clearTimers()
    const subs = [...this.users.values()].flatMap((entry) => [...entry.subscribers])
    for (const sub of subs) this.remove(sub)
    await Promise.all(subs.map((sub) => sub.sink.shutdown().catch(() => {})))
  }

  /** Stop the listener and timers; waits for a read in flight. */
  async stop(): Promise<void> {
    this.closing = true
    this.stopped = true
    this.clearTimers()
    const listener = this.listener
    this.listener = null
    await listener?.end().catch(() => {})
    await this.reading?.catch(() => {})
  }

  /** Delete events past the resumption window; returns how many. */
  async prune(): Promise<number> {
    const { rowCount } = await this.pool.query(
      `DELETE FROM task_events WHERE created_at < now() - make_interval(secs => $1)`,
      [this.opts.retentionS],
    )
    return rowCount ?? 0
  }

  /** Resolves when no read is in flight (tests). */
  async idle(): Promise<void> {
    while (this.reading) await this.reading.catch(() => {})
  }

  /** Read now for every user with a stream here (tests, and the poll). */
  wakeAll(): void {
    if (this.users.size === 0) return
    this.dirtyAll = true
    this.kick()
  }

  private wake(userId: string): void {
    this.dirty.add(userId)
    this.kick()
  }

  private clearTimers(): void {
    for (const timer of this.timers) clearInterval(timer)
    this.timers = []
    if (this.pollTimer) clearTimeout(this.pollTimer)
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer)
    this.pollTimer = null
    this.reconnectTimer = null
  }

  private remove(sub: Subscriber): void {
    if (sub.closed) return
    sub.closed = true
    sub.pending = []
    const entry = this.users.get(sub.userId)
    if (!entry) return
    entry.subscribers.delete(sub)
    if (entry.subscribers.size === 0) this.users.delete(sub.userId)
  }

  private async newestId(userId: string): Promise<bigint> {
    const { rows } = await withDatabase(() =>
      this.pool.query<{ id: string }>('SELECT coalesce(max(id), 0)::text AS id FROM task_events WHERE user_id = $1', [userId]),
    )
    return BigInt(rows[0]!.id)
  }

  /** The user's events after `after`, straight from the table, then the ones that arrived meanwhile. */
  private async replay(sub: Subscriber, after: bigint): Promise<void> {
    // Nothing of this user exists between their newest event and any larger id:
    // a Last-Event-ID from the future (or from before a database reset) starts at the newest.
    let last = after < sub.last ? after : sub.last
    sub.last = last
    for (;;) {
      const { rows } = await this.pool.query<EventRow>(
        // e.id, not id: a bare name in ORDER BY is the output column, the id as text ('100' < '99').
        `SELECT e.id::text AS id, e.user_id, e.type, e.task FROM task_events e
          WHERE e.user_id = $1 AND e.id > $2 ORDER BY e.id LIMIT ${READ_BATCH}`,
        [sub.userId, last.toString()],
      )
      for (const row of rows) {
        if (sub.closed) return
        const event = toEvent(row)
        sub.last = event.seq
        sub.sink.send(event)
        last = event.seq
      }
      if (rows.length < READ_BATCH || sub.closed) return
    }
  }

  private handOver(sub: Subscriber, event: TaskEvent): void {
    if (sub.closed) return
    if (!sub.live) {
      sub.pending.push(event)
      if (sub.pending.length > MAX_PENDING) {
        this.remove(sub)
        sub.sink.abort('too far behind')
      }
      return
    }
    if (event.seq <= sub.last) return
    sub.last = event.seq
    sub.sink.send(event)
  }

  private heartbeat(): void {
    for (const entry of this.users.values()) for (const sub of entry.subscribers) if (sub.live) sub.sink.heartbeat()
  }

  /** One read at a time; wakes during a read make one more. */
  private kick(): void {
    if (this.stopped) return
    if (this.reading) {
      this.readAgain = true
      return
    }
    this.reading = this.read()
      .catch((err: unknown) => {
        // Keep everything dirty: the next wake or poll reads again.
        this.dirtyAll = true
        if (!this.readFailing) this.opts.log.warn({ err: brief(err) }, 'task events read failing')
        this.readFailing = true
      })
      .finally(() => {
        this.reading = null
        if (this.readAgain) {
          this.readAgain = false
          this.kick()
        }
      })
  }

  private async read(): Promise<void> {
    const names = this.dirtyAll ? [...this.users.keys()] : [...this.dirty]
    this.dirtyAll = false
    this.dirty.clear()
    let batch = this.cursors(names)
    while (batch.users.length > 0) {
      const { rows } = await this.pool.query<EventRow>(
        `SELECT e.id::text AS id, e.user_id, e.type, e.task
           FROM unnest($1::text[], $2::bigint[]) AS c(user_id, after)
           JOIN task_events e ON e.user_id = c.user_id AND e.id > c.after
          ORDER BY e.id LIMIT ${READ_BATCH}`,
        [batch.users, batch.after],
      )
      if (this.readFailing) this.opts.log.info('task events read again')
      this.readFailing = false
      for (const row of rows) {
        const entry = this.users.get(row.user_id)
        if (!entry || entry.cursor === null) continue
        const event = toEvent(row)
        if (event.seq <= entry.cursor) continue
        entry.cursor = event.seq
        for (const sub of [...entry.subscribers]) this.handOver(sub, event)
      }
      if (rows.length < READ_BATCH) return
      batch = this.cursors(names)
    }
  }

  private cursors(names: string[]): { users: string[]; after: string[] } {
    const users: string[] = []
    const after: string[] = []
    for (const name of names) {
      const cursor = this.users.get(name)?.cursor
      if (cursor === null || cursor === undefined) continue
      users.push(name)
      after.push(cursor.toString())
    }
    return { users, after }
  }

  private schedulePoll(): void {
    if (this.stopped || this.closing) return
    const every = this.listenProven ? this.opts.pollMs * 10 : this.opts.pollMs
    this.pollTimer = setTimeout(() => {
      this.wakeAll()
      this.schedulePoll()
    }, every)
    this.pollTimer.unref()
  }

  private async connectListener(): Promise<void> {
    if (this.stopped) return
    const client = new pg.Client({
      connectionString: this.opts.databaseUrl,
      connectionTimeoutMillis: this.opts.connectTimeoutMs,
      keepAlive: true,
      application_name: 'task-service-events',
    })
    this.listener = client
    let lost = false
    const onLost = (err?: Error) => {
      if (lost) return
      lost = true
      if (this.listener === client) this.listener = null
      this.listenProven = false
      if (this.stopped) return
      // Said once per outage, not once per reconnect attempt.
      if (this.listenerUp) this.opts.log.warn({ err: err ? brief(err) : undefined }, 'task events listener lost; polling until it is back')
      this.listenerUp = false
      client.end().catch(() => {})
      // Back to the fast poll at once, not after a backstop period.
      if (this.pollTimer) clearTimeout(this.pollTimer)
      this.schedulePoll()
      this.reconnectTimer = setTimeout(() => void this.connectListener(), this.reconnectDelayMs)
      this.reconnectTimer.unref()
      this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, 30_000)
    }
    client.on('error', onLost)
    client.on('end', () => onLost())
    client.on('notification', (message) => {
      if (message.channel !== CHANNEL || !message.payload) return
      if (message.payload.startsWith('u:')) {
        const userId = message.payload.slice(2)
        if (this.users.has(userId)) this.wake(userId)
      } else if (this.probe !== null && message.payload === `p:${this.probe}`) {
        this.probe = null
        this.listenProven = true
        this.opts.log.debug('task events: LISTEN works, notifications drive delivery')
      }
    })
    try {
      await client.connect()
      await client.query(`LISTEN ${CHANNEL}`)
      if (this.stopped) return void client.end().catch(() => {})
      this.listenerUp = true
      this.reconnectDelayMs = 1000
      // Rows committed while nobody listened: read them now.
      this.wakeAll()
      this.probe = randomUUID()
      await this.pool.query('SELECT pg_notify($1, $2)', [CHANNEL, `p:${this.probe}`])
    } catch (err) {
      onLost(err as Error)
    }
  }
}

/** Errors as log fields without anything a driver might attach (queries, parameters). */
function brief(err: unknown): { message: string; code?: string } {
  const e = err as { message?: unknown; code?: unknown }
  return {
    message: typeof e?.message === 'string' ? e.message : String(err),
    ...(typeof e?.code === 'string' ? { code: e.code } : {}),
  }
}
