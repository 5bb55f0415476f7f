/** Child processes for the launcher: start with inherited output, wait until healthy, stop by signal. */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, type Server } from 'node:net'

export interface Child {
  name: string
  proc: ChildProcess
  exited: Promise<number | null>
}

/** As in the Dockerfile's CMD and each workspace's `npm start` (why: there): V8 heap sizing, fewer collections per request, no re-warming after a pause. */
export const NODE_FLAGS = ['--min-semi-space-size=16', '--max-semi-space-size=16', '--heap-growing-percent=50', '--no-memory-reducer', '--enable-source-maps']

export function startProcess(
  name: string,
  entry: string,
  env: Record<string, string | undefined>,
  onExit: (code: number | null) => void,
): Child {
  const proc = spawn(process.execPath, [...NODE_FLAGS, entry], {
    env: env as NodeJS.ProcessEnv,
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  const exited = new Promise<number | null>((resolve) => {
    proc.on('exit', (code, signal) => {
      const c = code ?? (signal ? 128 : null)
      onExit(c)
      resolve(c)
    })
  })
  return { name, proc, exited }
}

/** SIGTERM, then SIGKILL if it has not exited within the grace period. */
export async function stopProcess(child: Child, graceMs: number): Promise<void> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return
  child.proc.kill('SIGTERM')
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), graceMs)
  await child.exited
  clearTimeout(timer)
}

/**
 * `count` distinct free ports, none of them in `avoid` (ports given to other processes): each socket stays
 * bound until all are chosen, so no two are the same port (one bound and released at a time may come back
 * from the next bind), and a port to avoid stays held meanwhile so the next bind cannot return it again.
 */
/**
 * Every port this process has handed out: a port bound and released comes back from a later bind often enough
 * (1,000 draws repeat with near certainty) that a test asking for a gateway's three ports in turn once gave its
 * public and admin listeners the same one. No port is handed out twice.
 */
const handedOut = new Set<number>()

export async function freePorts(count: number, host = '127.0.0.1', avoid: Iterable<number> = []): Promise<number[]> {
  const skip = new Set(avoid)
  const held: Server[] = []
  const ports: number[] = []
  try {
    while (ports.length < count) {
      const srv = createServer()
      held.push(srv)
      const port = await new Promise<number>((resolve, reject) => {
        srv.unref()
        srv.on('error', reject)
        srv.listen(0, host, () => {
          const addr = srv.address()
          if (addr && typeof addr === 'object') resolve(addr.port)
          else reject(new Error('no port'))
        })
      })
      if (!skip.has(port) && !handedOut.has(port)) ports.push(port)
    }
    for (const port of ports) handedOut.add(port)
    return ports
  } finally {
    await Promise.all(held.map((srv) => new Promise((r) => (srv.listening ? srv.close(r) : r(undefined)))))
  }
}

/** A start that failed because a port found free was bound by another process first (EADDRINUSE in its output). */
export class PortTaken extends Error {}

/** The error for a process that exited before it was up: PortTaken when its output says a port was taken. */
export function exitedEarly(message: string, output: string): Error {
  return /EADDRINUSE/.test(output) ? new PortTaken(message) : new Error(message)
}

/**
 * A free port can be taken by someone else (another test's process, an outgoing connection from the same
 * ephemeral range) before the process given it binds it: `start` (which takes new ports each time) is tried
 * again when it fails with PortTaken, `attempts` times in all.
 */
export async function retryWhilePortTaken<T>(start: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start()
    } catch (err) {
      if (!(err instanceof PortTaken) || attempt >= attempts) throw err
    }
  }
}

/** One free port, never one this process has handed out before. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const [port] = await freePorts(1, host)
  return port!
}

export async function waitForHealth(url: string, child: Child, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.proc.exitCode !== null) throw new Error(`${child.name} exited with code ${child.proc.exitCode}`)
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) })
      if (res.ok) return
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${child.name} did not become healthy within ${timeoutMs} ms`)
}
