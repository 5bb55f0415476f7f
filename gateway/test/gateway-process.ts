/** A gateway as a real process (dist/server.js) on free loopback ports, stopped when the test ends. */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { SECRET } from './helper.js'
import { exitedEarly, freePorts, retryWhilePortTaken } from './redis-server.js'

const gatewayEntry = fileURLToPath(new URL('../dist/server.js', import.meta.url))

type Tap = { teardown(fn: () => unknown): void }

export interface GatewayProcess {
  url: string
  adminUrl: string
  internalUrl: string
  proc: ChildProcess
  /** Its stdout's log lines (JSON), when started with `captureLog`. */
  lines: string[]
  /** Resolves with the process's exit code. */
  exited: Promise<number | null>
}

export interface GatewayProcessOptions {
  /** When the process counts as started (default: the admin /ready answers 200). */
  ready?: (gw: GatewayProcess) => Promise<boolean>
  /** Keep stdout in `lines` (default: ignored). */
  captureLog?: boolean
}

const adminReady = async (gw: GatewayProcess) => (await fetch(`${gw.adminUrl}/ready`)).status === 200

/**
 * Starts the process and waits for `ready`. The deadline is a liveness bound
 * only: a loaded 2-core machine starts several gateway processes at once in 10-30 s.
 * A free port can be taken by someone else (another test's outgoing
 * connection, from the same ephemeral range) before the process binds it: a
 * start that fails with EADDRINUSE is tried again on new ports, twice at most.
 */
export function spawnGateway(t: Tap, env: Record<string, string>, opts: GatewayProcessOptions = {}): Promise<GatewayProcess> {
  return retryWhilePortTaken(() => spawnOnce(t, env, opts))
}

async function spawnOnce(t: Tap, env: Record<string, string>, opts: GatewayProcessOptions): Promise<GatewayProcess> {
  const [port, internalPort, adminPort] = await freePorts(3)
  const proc = spawn(process.execPath, [gatewayEntry], {
    env: {
      PATH: process.env.PATH ?? '',
      BETTER_AUTH_SECRET: SECRET,
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: String(port),
      INTERNAL_HOST: '127.0.0.1',
      INTERNAL_PORT: String(internalPort),
      ADMIN_HOST: '127.0.0.1',
      ADMIN_PORT: String(adminPort),
      ...env,
    },
    stdio: ['ignore', opts.captureLog ? 'pipe' : 'ignore', 'pipe'],
  })
  // Passed on as it comes; its tail kept to tell a taken port from any other failure.
  let stderr = ''
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    process.stderr.write(chunk)
    stderr = (stderr + chunk).slice(-4000)
  })
  const lines: string[] = []
  if (opts.captureLog) {
    let rest = ''
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (rest + chunk).split('\n')
      rest = parts.pop()!
      lines.push(...parts.filter(Boolean))
    })
  }
  // On close, not exit: by then its stderr has been read whole.
  const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)))
  t.teardown(async () => {
    proc.kill('SIGTERM')
    await exited
  })
  const gw: GatewayProcess = {
    url: `http://127.0.0.1:${port}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    internalUrl: `http://127.0.0.1:${internalPort}`,
    proc,
    lines,
    exited,
  }
  const ready = opts.ready ?? adminReady
  let gone = false
  void exited.then(() => (gone = true))
  const deadline = Date.now() + 90_000
  for (;;) {
    if (await ready(gw).catch(() => false)) return gw
    if (gone) {
      const message = `gateway process exited before it was ready (code ${proc.exitCode})`
      throw exitedEarly(message, stderr)
    }
    if (Date.now() > deadline) throw new Error('gateway process did not become ready')
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** A gateway process ready once it counts in Redis; resolves with its public URL. */
export async function startGatewayProcess(t: Tap, env: Record<string, string>): Promise<string> {
  const gw = await spawnGateway(t, env, {
    ready: async ({ adminUrl }) => {
      const res = await fetch(`${adminUrl}/ready`)
      return res.status === 200 && ((await res.json()) as { checks: Record<string, string> }).checks['rate-limit-counters'] === 'redis'
    },
  })
  return gw.url
}
