/**
 * An embedded PostgreSQL for development and tests: PGlite (PostgreSQL 18
 * compiled to WASM) served over the wire protocol, so the services use `pg`
 * exactly as they would against a real server. It listens on a free loopback
 * port because 5432 may well be taken by a real PostgreSQL.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

export interface EmbeddedPostgres {
  url: string
  port: number
  stop(): Promise<void>
}

export interface EmbeddedOptions {
  /** Folder for the database files; omitted means in memory (gone at stop). */
  dataDir?: string
  host?: string
  port?: number
  /** pglite-socket defaults to one connection; pools need more. */
  maxConnections?: number
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * PGlite has no lock between processes, and two of them on one folder lose
 * writes silently: take a pid lock file and refuse a folder another live
 * process holds.
 */
function lockDataDir(dir: string): () => void {
  mkdirSync(dir, { recursive: true })
  const lockFile = join(dir, 'tollgate.lock')
  try {
    const pid = Number(readFileSync(lockFile, 'utf8'))
    if (pid && pid !== process.pid && isAlive(pid)) {
      throw new Error(`the embedded database in ${dir} is in use by process ${pid}; stop it first or set DATA_DIR`)
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  writeFileSync(lockFile, String(process.pid))
  return () => rmSync(lockFile, { force: true })
}

export async function startEmbeddedPostgres(opts: EmbeddedOptions = {}): Promise<EmbeddedPostgres> {
  const host = opts.host ?? '127.0.0.1'
  const unlock = opts.dataDir ? lockDataDir(opts.dataDir) : () => {}
  let db: PGlite | undefined
  try {
    db = await PGlite.create(opts.dataDir ? join(opts.dataDir, 'pgdata') : 'memory://')
    const server = new PGLiteSocketServer({ db, host, port: opts.port ?? 0, maxConnections: opts.maxConnections ?? 32 })
    server.addEventListener('error', () => {}) // a client's protocol error is not a reason to crash
    await server.start()
    const port = Number(server.getServerConn().split(':').pop())
    const url = `postgres://postgres:postgres@${host}:${port}/postgres`
    let stopped = false
    return {
      url,
      port,
      async stop() {
        if (stopped) return
        stopped = true
        await server.stop().catch(() => {})
        await db!.close().catch(() => {})
        unlock()
      },
    }
  } catch (err) {
    await db?.close().catch(() => {})
    unlock()
    throw err
  }
}
