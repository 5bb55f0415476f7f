/**
 * A PostgreSQL cluster of a test's own, for tests that stop and start the
 * database under a running service: `initdb` into a temp folder, `pg_ctl`
 * start, stop (fast or immediate) and restart on a free loopback port, and
 * everything removed at teardown (also if the test process exits early).
 *
 * It uses the server binaries of the machine (Debian: /usr/lib/postgresql/N/bin).
 * initdb refuses to run as root, so as root the binaries run as the `postgres`
 * OS user through `runuser`, in a temp folder owned by that user. When that is
 * not possible, `startThrowawayPostgres` rejects with PostgresUnavailableError
 * whose message says why, for the test to skip with.
 */
import { spawn, spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** The machine cannot run a throwaway cluster; the message is the reason to skip with. */
export class PostgresUnavailableError extends Error {
  constructor(reason: string) {
    super(reason)
    this.name = 'PostgresUnavailableError'
  }
}

export type StopMode = 'smart' | 'fast' | 'immediate'

export interface ThrowawayPostgres {
  /** Superuser URL of the `postgres` database (trust authentication, no password). */
  readonly url: string
  readonly port: number
  /** The same server, another database. */
  urlFor(database: string): string
  /** True between a start and a stop. */
  readonly running: boolean
  /** Starts and waits until it accepts connections. */
  start(): Promise<void>
  /** `fast` ends sessions cleanly (FATAL 57P01 to each); `immediate` drops them like a crash (recovery at next start). */
  stop(mode?: StopMode): Promise<void>
  restart(mode?: StopMode): Promise<void>
  /** The server log so far (for a failing test's diagnostics). */
  log(): string
  /** Stops it if running and removes every file. Idempotent. */
  destroy(): Promise<void>
}

export interface ThrowawayOptions {
  /** Folder holding initdb and pg_ctl; default the newest /usr/lib/postgresql/N/bin. */
  binDir?: string
  /** Extra server settings (`-c name=value`). */
  settings?: Record<string, string>
}

/** The newest Debian-layout server binaries, or null. */
export function findPostgresBinDir(root = '/usr/lib/postgresql'): string | null {
  if (!existsSync(root)) return null
  const versions = readdirSync(root)
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
  for (const v of versions) {
    const bin = join(root, v, 'bin')
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl'))) return bin
  }
  return null
}

interface RunAs {
  /** Wraps a command so it runs as the cluster's owner. */
  wrap(cmd: string, args: string[]): [string, string[]]
  /** Gives the owner a folder. */
  own(path: string): void
}

function runAsOwner(): RunAs {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
  if (!isRoot) return { wrap: (cmd, args) => [cmd, args], own: () => {} }
  const id = (flag: string) => {
    const r = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' })
    return r.status === 0 ? Number(r.stdout.trim()) : NaN
  }
  const uid = id('-u')
  const gid = id('-g')
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) {
    throw new PostgresUnavailableError('running as root and there is no `postgres` OS user to run initdb as')
  }
  const probe = spawnSync('runuser', ['-u', 'postgres', '--', 'true'], { encoding: 'utf8' })
  if (probe.status !== 0) {
    throw new PostgresUnavailableError(
      `running as root and \`runuser -u postgres\` does not work here: ${(probe.error?.message ?? probe.stderr).trim()}`,
    )
  }
  return {
    wrap: (cmd, args) => ['runuser', ['-u', 'postgres', '--', cmd, ...args]],
    own: (path) => chownSync(path, uid, gid),
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no free port'))))
    })
  })
}

interface Result {
  code: number | null
  output: string
}

/**
 * Runs a command to its exit. 'exit', not 'close': `pg_ctl start` leaves a
 * postmaster behind that could hold inherited pipes open.
 */
function run(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d) => (output += d))
    child.stderr.on('data', (d) => (output += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      resolve({ code: null, output: `${output}${err.message}` })
    })
    child.on('exit', (code) => {
      clearTimeout(timer)
      child.stdout.destroy()
      child.stderr.destroy()
      resolve({ code, output })
    })
  })
}

/**
 * initdb and start a new cluster. Rejects with PostgresUnavailableError when
 * the machine cannot (no binaries, root without a postgres user); any other
 * failure is a real error.
 */
export async function startThrowawayPostgres(opts: ThrowawayOptions = {}): Promise<ThrowawayPostgres> {
  const bin = opts.binDir ?? findPostgresBinDir()
  if (!bin) throw new PostgresUnavailableError('no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin')
  for (const tool of ['initdb', 'pg_ctl']) {
    if (!existsSync(join(bin, tool))) throw new PostgresUnavailableError(`no ${tool} in ${bin}`)
  }
  const as = runAsOwner()

  // Short path: the unix socket lives here too, and socket paths are limited to ~107 bytes.
  const dir = mkdtempSync(join(tmpdir(), 'tg-pg-'))
  const dataDir = join(dir, 'data')
  const logFile = join(dir, 'server.log')
  let running = false
  let destroyed = false

  const removeNow = () => {
    // Synchronous: also used from the 'exit' handler. The pid file, not our
    // flag, says whether a server may be up (a start that timed out may have).
    if (existsSync(join(dataDir, 'postmaster.pid'))) spawnSync(...as.wrap(join(bin, 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', 'stop']), { cwd: dir, stdio: 'ignore' })
    running = false
    rmSync(dir, { recursive: true, force: true })
  }
  const onExit = () => removeNow()
  process.once('exit', onExit)

  const pgCtl = async (args: string[], what: string) => {
    const [cmd, argv] = as.wrap(join(bin, 'pg_ctl'), ['-D', dataDir, ...args])
    const r = await run(cmd, argv, dir, 90_000)
    if (r.code !== 0) {
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : ''
      throw new Error(`pg_ctl ${what} failed (${r.code}): ${r.output.trim()}\n${log}`)
    }
  }

  try {
    as.own(dir)
    const [cmd, argv] = as.wrap(join(bin, 'initdb'), [
      '-D', dataDir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync',
    ])
    const init = await run(cmd, argv, dir, 120_000)
    if (init.code !== 0) throw new Error(`initdb failed (${init.code}): ${init.output.trim()}`)

    let port = 0
    const settings = { listen_addresses: '127.0.0.1', ...opts.settings }
    const start = async () => {
      const options = [`-p ${port}`, `-k ${dir}`, ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)].join(' ')
      await pgCtl(['-l', logFile, '-w', '-t', '60', '-o', options, 'start'], 'start')
      running = true
    }
    // The free port may be taken between the probe and the bind: try a few.
    for (let attempt = 1; ; attempt++) {
      port = await freePort()
      try {
        await start()
        break
      } catch (err) {
        if (attempt >= 3) throw err
      }
    }

    const url = `postgres://postgres@127.0.0.1:${port}/postgres`
    const stop = async (mode: StopMode = 'fast') => {
      if (!running) return
      await pgCtl(['-m', mode, '-w', '-t', '60', 'stop'], `stop -m ${mode}`)
      running = false
    }
    return {
      url,
      port,
      urlFor: (database) => `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(database)}`,
      get running() {
        return running
      },
      async start() {
        if (!running) await start()
      },
      stop,
      async restart(mode: StopMode = 'fast') {
        await stop(mode)
        await start()
      },
      log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
      async destroy() {
        if (destroyed) return
        destroyed = true
        process.removeListener('exit', onExit)
        removeNow()
      },
    }
  } catch (err) {
    process.removeListener('exit', onExit)
    removeNow()
    throw err
  }
}

/** The little of a tap test that the helper below needs. */
export interface SkippableTest {
  teardown(fn: () => unknown): void
  /** tap's: a subtest named `name`, reported as skipped. */
  skip(name: string, cb: () => unknown): unknown
}

/**
 * A throwaway cluster destroyed at the test's teardown, or null after marking
 * the test skipped with the reason the machine cannot run one.
 */
export async function throwawayPostgresOrSkip(t: SkippableTest, opts?: ThrowawayOptions): Promise<ThrowawayPostgres | null> {
  try {
    const cluster = await startThrowawayPostgres(opts)
    t.teardown(() => cluster.destroy())
    return cluster
  } catch (err) {
    if (err instanceof PostgresUnavailableError) {
      t.skip(`cannot run a throwaway PostgreSQL here: ${err.message}`, () => {})
      return null
    }
    throw err
  }
}
