/**
 * The task-service app factory: common's Fastify base (envelope, request ids,
 * logs, /health, /ready, /metrics), a database pool, and the task routes.
 * It never listens; server.ts does, and tests use app.inject.
 */
import websocket from '@fastify/websocket'
import { createService, proofKey, startTracing, type App } from '@tollgate/common'
import { attachDatabase } from '@tollgate/common/db'
import type { Config } from './config.js'
import { createTasksRepository } from './repositories/tasks-repository.js'
import { TaskEventHub } from './events/task-events.js'
import { tasksRoutes } from './routes/tasks.js'
import { internalRoutes } from './routes/internal.js'

export interface BuildOptions {
  /** Capture logs (tests); default stdout. */
  logStream?: NodeJS.WritableStream
}

export async function buildApp(config: Config, opts: BuildOptions = {}): Promise<App> {
  const app = createService({
    name: 'task-service',
    logLevel: config.LOG_LEVEL,
    ...(opts.logStream ? { logStream: opts.logStream } : {}),
    readiness: { database: () => pool.query('select 1') },
    tracing: await startTracing(config, 'task-service'),
  })

  // Metrics on /metrics; closed with the app, after in-flight requests.
  const pool = attachDatabase(app as never, config, 'task-service')

  // Every answer is per user (or about this instance): no cache may keep one.
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
  })

  // The API speaks JSON only: a text/plain body is 415, not a string for the schema to puzzle over.
  app.removeContentTypeParser('text/plain')

  // Declared up front so every request object has the same shape; set by the identity hook.
  if (!app.hasRequestDecorator('identity')) app.decorateRequest('identity', null)

  const repo = createTasksRepository(pool)
  const key = proofKey(config.BETTER_AUTH_SECRET, config.INTERNAL_PROOF_SECRET)
  const proofWindowMs = config.INTERNAL_PROOF_WINDOW_S * 1000

  // Live task updates (SSE and WebSocket): streams end before the server waits for
  // its connections (preClose), the listener stops before the pool closes.
  const events = new TaskEventHub(pool, {
    databaseUrl: config.DATABASE_URL,
    connectTimeoutMs: config.DB_CONNECT_TIMEOUT_MS,
    listen: config.TASK_EVENTS_LISTEN,
    pollMs: config.TASK_EVENTS_POLL_MS,
    heartbeatMs: config.TASK_EVENTS_HEARTBEAT_MS,
    retentionS: config.TASK_EVENTS_RETENTION_S,
    log: app.log,
  })
  app.decorate('taskEvents', events)
  app.addHook('onReady', async () => events.start())
  app.addHook('preClose', async () => events.closeStreams())
  app.addHook('onClose', async () => events.stop())
  await app.register(websocket, {
    // Clients say nothing on this socket; the gateway forwards `bearer, <token>` as the subprotocol.
    options: { maxPayload: 4096, handleProtocols: (offered: Set<string>) => (offered.has('bearer') ? 'bearer' : false) },
    // Sockets are closed by the hub (1001) in its own preClose; only stop accepting here.
    preClose: async function (this: { websocketServer: { close(): void } }) {
      this.websocketServer.close()
    },
  })

  await app.register(tasksRoutes, { repo, proofKey: key, proofWindowMs, events })
  await app.register(internalRoutes, { repo, proofKey: key, proofWindowMs })

  return app
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Live task updates of this replica (tests read its state). */
    taskEvents: TaskEventHub
  }
}
