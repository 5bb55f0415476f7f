/**
 * A service as a real process, for tests where "the process stays up" is the
 * claim: start it, find the port it bound from its log, see whether it is
 * still alive, stop it. And a CLI run to its exit code and output.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { ACCESS_MESSAGE } from '../logging.js'

export interface ServiceProcess {
  /** e.g. http://127.0.0.1:41234 */
  url: string
  child: ChildProcess
  /** True until the process exits, for whatever reason. */
  alive(): boolean
  stdout(): string
  stderr(): string
  /** SIGTERM, SIGKILL after `graceMs`; resolves with the exit code (null after a signal). */
  stop(graceMs?: number): Promise<number | null>
}

export interface StartServiceOptions {
  /**
   * The built server file (dist/server.js). Not src/server.ts through a TypeScript loader: the tests themselves run
   * src/ through tap's (ts-node), another loader's transform of the same src/ file has other offsets, and c8 merges
   * the processes' coverage by file URL, so the mix made `npm run coverage` swing by 20 points with the order the
   * coverage files happened to be read in.
   */
  entry: string
  env: Record<string, string>
  timeoutMs?: number
}

const LISTENING = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/

/**
 * Starts `entry` with HOST=127.0.0.1, PORT=0 and LOG_LEVEL=info (the listen
 * line is how the port is found) over the given environment.
 */
export function startServiceProcess(opts: StartServiceOptions): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [opts.entry], {
    env: { ...process.env, LOG_LEVEL: 'info', HOST: '127.0.0.1', PORT: '0', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (err += d))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const alive = () => child.exitCode === null && child.signalCode === null

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${opts.entry} did not listen within ${opts.timeoutMs ?? 30_000} ms: ${out}${err}`))
    }, opts.timeoutMs ?? 30_000)
    const onData = () => {
      const m = LISTENING.exec(out)
      if (!m) return
      clearTimeout(timer)
      child.stdout!.off('data', onData)
      resolve({
        url: m[1]!,
        child,
        alive,
        stdout: () => out,
        stderr: () => err,
        async stop(graceMs = 10_000) {
          if (!alive()) return child.exitCode
          child.kill('SIGTERM')
          const kill = setTimeout(() => child.kill('SIGKILL'), graceMs)
          const code = await exited
          clearTimeout(kill)
          return code
        },
      })
    }
    child.stdout!.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${opts.entry} exited with ${code} before listening: ${err || out}`))
    })
  })
}

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
  ms: number
}

/** Runs `node <entry>` with `env` over the current environment, to its exit. */
export function runNodeScript(entry: string, env: Record<string, string>, timeoutMs = 60_000): Promise<CliResult> {
  const started = Date.now()
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [entry], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr, ms: Date.now() - started })
    })
  })
}

/** Every status a service answered, from its "request completed" log lines (LOG_LEVEL info). */
export function loggedStatuses(stdout: string): number[] {
  const statuses: number[] = []
  for (const line of stdout.split('\n')) {
    if (!line.includes(`"${ACCESS_MESSAGE}"`)) continue
    try {
      // The service's access line carries `status`; Fastify's own carries `res.statusCode`.
      const entry = JSON.parse(line) as { status?: number; res?: { statusCode?: number } }
      const status = entry.status ?? entry.res?.statusCode
      if (typeof status === 'number') statuses.push(status)
    } catch {
      // not a JSON line
    }
  }
  return statuses
}
