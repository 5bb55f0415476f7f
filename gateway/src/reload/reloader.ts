/**
 * The running gateway: one runtime (runtime/runtime.ts), one shared server
 * per listener (shared-server.ts), and the current generation of instances
 * built from the file. SIGHUP (or a change of the file, with
 * GATEWAY_CONFIG_WATCH) loads and checks the file as start-up does, builds a
 * new generation, and swaps it in: new requests take it, requests in flight
 * finish on the one they started on, which closes once they are done. A file
 * that does not load keeps the running generation and is logged in one line.
 * Listener addresses are bound once: a change to them needs a restart.
 * SIGTERM/SIGINT: stop accepting, finish what is in flight, close.
 */
import { createHash } from 'node:crypto'
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { ServerResponse } from 'node:http'
import { basename, dirname } from 'node:path'
import closeWithGrace from 'close-with-grace'
import { Counter, Gauge } from 'prom-client'
import type { App } from '@tollgate/common'
import { tlsOptions, type Config } from '../config.js'
import { GatewayConfigError, parseGatewayConfig, readGatewayText, type GatewayDefinition, type Variables } from '../gateway-config/load.js'
import { createRuntime, type Runtime } from '../runtime/runtime.js'
import { buildGeneration } from '../runtime/generation.js'
import { buildAdminApp } from '../admin/admin-app.js'
import { createSharedServer, detachedServer, type Target } from './shared-server.js'
import { OpenHandles } from './open-handles.js'

/** Edits come in bursts (an editor's write, rename and chmod): one reload after the last. */
const WATCH_DEBOUNCE_MS = 300

export interface LoadedFile {
  definition: GatewayDefinition
  /** sha256 of the file's text, shown in gateway_config_info. */
  hash: string
}

/** Read and check the file, as `tollgate check` and start-up do. Throws GatewayConfigError. */
export function readGatewayFile(file: string, variables: Variables): LoadedFile {
  const text = readGatewayText(file)
  return { definition: parseGatewayConfig(text, file, variables), hash: createHash('sha256').update(text).digest('hex').slice(0, 16) }
}

interface Generation extends Target {
  id: number
  hash: string
  /** Requests (responses) and upgraded sockets in flight on it. */
  open: OpenHandles
  retired: boolean
  closed?: Promise<void>
}

export interface ReloadingOptions {
  file: string
  /** The variables `${VAR}` references read, at each load. */
  variables: () => Variables
}

export interface ReloadingGateway {
  runtime: Runtime
  /** Load, check and swap in the file; resolves true when the new generation serves. */
  reload(reason: string): Promise<boolean>
  close(): Promise<void>
}

export async function startReloadingGateway(config: Config, first: LoadedFile, opts: ReloadingOptions): Promise<ReloadingGateway> {
  const runtime = await createRuntime(config)
  const { log } = runtime
  const registry = runtime.metrics.registry
  const reloads = new Counter({
    name: 'gateway_config_reloads_total',
    help: 'Reloads of the gateway file, by result (error: the running configuration was kept)',
    labelNames: ['result'] as const,
    registers: [registry],
  })
  reloads.inc({ result: 'ok' }, 0)
  reloads.inc({ result: 'error' }, 0)
  const generationGauge = new Gauge({ name: 'gateway_config_generation', help: 'Generation of the configuration serving new requests (1 at start)', registers: [registry] })
  const info = new Gauge({ name: 'gateway_config_info', help: 'The loaded file (hash: first 16 hex digits of its sha256)', labelNames: ['file', 'hash'] as const, registers: [registry] })
  const lastSuccess = new Gauge({
    name: 'gateway_config_last_reload_success_timestamp_seconds',
    help: 'When the file was last loaded successfully (start-up included)',
    registers: [registry],
  })
  const lastOk = new Gauge({ name: 'gateway_config_last_reload_successful', help: '1 if the last load of the file succeeded, 0 if it was refused', registers: [registry] })

  let stopping = false
  /** While stopping: resolved once no plain request is in flight (upgraded sockets end when their generation closes). */
  let requestsDone: (() => void) | undefined
  const requestsOpen = () => [...generations].some((g) => [...g.open].some((h) => h instanceof ServerResponse))
  const onRequestDone = () => {
    if (requestsDone && !requestsOpen()) requestsDone()
  }
  const generations = new Set<Generation>()
  const close = (g: Generation) => {
    g.closed ??= g.app.close().then(
      () => {
        generations.delete(g)
        log.info({ generation: g.id }, 'configuration generation closed')
      },
      (err: Error) => log.error({ err, generation: g.id }, 'closing a configuration generation failed'),
    )
    return g.closed
  }
  let nextId = 1
  const build = async (loaded: LoadedFile): Promise<Generation> => {
    const app: App = await buildGeneration(config, runtime, loaded.definition, { fastify: { serverFactory: detachedServer } })
    try {
      await app.ready()
      await app.internal.ready()
    } catch (err) {
      await app.close().catch(() => undefined)
      throw err
    }
    const g: Generation = {
      id: nextId++,
      hash: loaded.hash,
      app,
      open: new OpenHandles(),
      retired: false,
      draining: false,
      enter: (handle) => {
        g.open.add(handle)
      },
      leave: (handle) => {
        g.open.delete(handle)
        if (g.open.size === 0 && g.retired) void close(g)
        if (stopping) onRequestDone()
      },
    }
    generations.add(g)
    return g
  }

  let current = await build(first).catch(async (err) => {
    await runtime.close()
    throw err
  })
  const applied = (g: Generation) => {
    runtime.setRevocationFeed(g.app.revocationFeed)
    generationGauge.set(g.id)
    info.reset()
    info.set({ file: opts.file, hash: g.hash }, 1)
    lastSuccess.set(Date.now() / 1000)
    lastOk.set(1)
  }
  applied(current)
  await runtime.start()

  const publicServer = createSharedServer(
    { tls: tlsOptions(config), headersTimeoutMs: config.HEADERS_TIMEOUT_MS, requestTimeoutMs: config.REQUEST_TIMEOUT_MS },
    () => current,
  )
  const internalServer = createSharedServer({}, () => ({ app: current.app.internal, enter: current.enter, leave: current.leave, draining: current.draining }))
  publicServer.follow()
  internalServer.follow()
  const listeners = first.definition.listeners
  const listen = (server: import('node:net').Server, host: string, port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host, port }, () => {
        server.removeListener('error', reject)
        resolve()
      })
    })
  // Public first: the launcher (and a probe on the internal port) takes the internal listener's /health as "up".
  const publicAt = { host: listeners.public?.host ?? config.HOST, port: listeners.public?.port ?? config.PORT }
  const internalAt = { host: listeners.internal?.host ?? config.INTERNAL_HOST, port: listeners.internal?.port ?? config.INTERNAL_PORT }
  await listen(publicServer.server, publicAt.host, publicAt.port)
  log.info({ address: publicServer.server.address() }, 'public listener up')
  // The admin listener is the process's, not a generation's: /metrics of the runtime's registry, /ready of the current file.
  const admin = buildAdminApp(config, { registry, readiness: () => current.app.readiness })
  const adminAt = { host: listeners.admin?.host ?? config.ADMIN_HOST, port: listeners.admin?.port ?? config.ADMIN_PORT }
  await admin.listen(adminAt)
  await listen(internalServer.server, internalAt.host, internalAt.port)
  log.info({ address: internalServer.server.address() }, 'internal listener up')

  let running: Promise<boolean> | undefined
  let again = false
  const reloadOnce = async (reason: string): Promise<boolean> => {
    let loaded: LoadedFile
    let next: Generation
    try {
      loaded = readGatewayFile(opts.file, opts.variables())
      next = await build(loaded)
    } catch (err) {
      reloads.inc({ result: 'error' })
      lastOk.set(0)
      const problems = err instanceof GatewayConfigError ? err.lines : [(err as Error).message]
      log.error(
        { file: opts.file, reason, problems, generation: current.id },
        `configuration reload refused, still serving generation ${current.id}: ${problems.join('; ')}`,
      )
      return false
    }
    if (stopping) {
      void close(next)
      return false
    }
    const previous = current
    current = next
    publicServer.follow()
    internalServer.follow()
    applied(next)
    reloads.inc({ result: 'ok' })
    previous.retired = true
    if (previous.open.size === 0) void close(previous)
    else {
      // Long-lived answers (streams, WebSockets) keep their generation until they end or the process stops.
      setTimeout(() => {
        if (!previous.closed) log.info({ generation: previous.id, inflight: previous.open.size }, 'an older configuration generation still serves long-lived requests')
      }, config.SHUTDOWN_GRACE_MS).unref()
    }
    const moved = JSON.stringify(loaded.definition.listeners) !== JSON.stringify(listeners)
    if (moved) log.warn({ file: opts.file, listeners: loaded.definition.listeners }, 'listeners changed in the file: a restart is needed to apply them (kept as they are)')
    log.info({ file: opts.file, reason, generation: next.id, hash: next.hash, routes: loaded.definition.routes.length }, 'configuration reloaded')
    return true
  }
  /** One reload at a time; a request during one runs once after it (with the file as it is then). */
  const reload = (reason: string): Promise<boolean> => {
    if (stopping) return Promise.resolve(false)
    if (running) {
      again = true
      return running
    }
    running = (async () => {
      let ok = await reloadOnce(reason)
      while (again && !stopping) {
        again = false
        ok = await reloadOnce(reason)
      }
      running = undefined
      return ok
    })()
    return running
  }

  const onHangup = () => void reload('SIGHUP')
  process.on('SIGHUP', onHangup)
  let watcher: FSWatcher | undefined
  if (config.GATEWAY_CONFIG_WATCH) {
    // The directory, not the file: editors and Kubernetes ConfigMaps replace the file rather than write it.
    let timer: NodeJS.Timeout | undefined
    const name = basename(opts.file)
    watcher = watch(dirname(opts.file), (_event, changed) => {
      if (changed && changed !== name && !changed.startsWith('..')) return
      clearTimeout(timer)
      timer = setTimeout(() => {
        let text: string
        try {
          text = readFileSync(opts.file, 'utf8')
        } catch {
          text = ''
        }
        // Unchanged content (a touch, a save without edits) is no reload.
        if (createHash('sha256').update(text).digest('hex').slice(0, 16) === current.hash) return
        void reload('file changed')
      }, WATCH_DEBOUNCE_MS)
    })
    watcher.on('error', (err) => log.warn({ err: { message: err.message } }, 'watching the gateway file failed'))
  }

  const shutdown = async () => {
    stopping = true
    process.removeListener('SIGHUP', onHangup)
    watcher?.close()
    const servers = [publicServer.server, internalServer.server]
    // Answers not yet started close their connection (keep-alive sockets do not hold the exit open).
    for (const g of generations) {
      g.draining = true
      for (const h of g.open) if (h instanceof ServerResponse && !h.headersSent) h.setHeader('connection', 'close')
    }
    // Live streams never end by themselves: each gets its reason (SSE `event: shutdown`, WebSocket 1001) now.
    runtime.streams.closeAll('shutdown')
    // Stop accepting; idle keep-alive connections close now, busy ones after their answer.
    const closed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))
    for (const s of servers) s.closeIdleConnections()
    await running?.catch(() => undefined)
    if (requestsOpen()) await new Promise<void>((resolve) => (requestsDone = resolve))
    for (const s of servers) s.closeIdleConnections()
    // Then the instances (their plugins close upgraded sockets, e.g. WebSockets), the connections, the runtime.
    await Promise.all([...generations].map(close))
    await Promise.all(closed)
    await admin.close()
    await runtime.close()
  }
  closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS, skip: ['SIGHUP'] }, async ({ signal, err }) => {
    if (err) log.error({ err }, 'fatal error, closing')
    else log.info({ signal }, 'shutting down')
    await shutdown()
  })

  return { runtime, reload, close: shutdown }
}
