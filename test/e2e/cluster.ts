/** Starts the real launcher (`npm start`'s entry) as a child process, for end-to-end tests. */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
export const SECRET = 'e2e-secret-0123456789-abcdefghijklmnopqrstuvwxyz'

type Tap = { teardown(fn: () => unknown): void }

export interface Cluster {
  url: string
  /** The gateway's admin listener (/ready, /metrics). */
  adminUrl: string
  proc: ChildProcess
  output(): string
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

import { exitedEarly, freePort, freePorts, retryWhilePortTaken } from '../../infra/src/processes.js'

export { freePort }

export function runLauncher(env: Record<string, string>): { proc: ChildProcess; output: () => string; exited: Promise<number | null> } {
  let out = ''
  const proc = spawn(process.execPath, ['infra/dist/cluster.js'], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  proc.stdout!.on('data', (d) => (out += d))
  proc.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  return { proc, output: () => out, exited }
}

/** Resolves once the launcher says Tollgate is up; the deadline is a liveness bound (a loaded 2-core machine). */
export function startCluster(t: Tap, env: Record<string, string>, timeoutMs = 180_000): Promise<Cluster> {
  // A free port can still be taken by another test's process before the launcher binds it: then new ports.
  return retryWhilePortTaken(() => startClusterOnce(t, env, timeoutMs))
}

async function startClusterOnce(t: Tap, env: Record<string, string>, timeoutMs: number): Promise<Cluster> {
  const [port, adminPort] = await freePorts(2)
  const { proc, output, exited } = runLauncher({
    BETTER_AUTH_SECRET: SECRET,
    LOG_LEVEL: 'warn',
    BCRYPT_COST: '10',
    PORT: String(port),
    GATEWAY_ADMIN_PORT: String(adminPort),
    ...env,
  })
  let stopped = false
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (!stopped) {
      stopped = true
      proc.kill(signal)
    }
    return exited
  }
  t.teardown(() => stop())
  const deadline = Date.now() + timeoutMs
  while (!/Tollgate is up at/.test(output())) {
    if (proc.exitCode !== null) {
      throw exitedEarly(`launcher exited early (${proc.exitCode}):\n${output()}`, output())
    }
    if (Date.now() > deadline) throw new Error(`launcher did not come up:\n${output()}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  return { url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}`, proc, output, stop }
}

export async function call(url: string, method: string, path: string, body?: unknown, token?: string) {
  const res = await fetch(url + path, {
    method,
    headers: {
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  })
  const text = await res.text()
  let json: any = undefined
  try {
    json = text ? JSON.parse(text) : undefined
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json }
}

/** Service URLs from a launcher started with LOG_LEVEL=info (it prints where each service listens). */
export function serviceUrls(output: string): { auth: string; tasks: string } {
  const auth = /auth-service ready at (http:\/\/[^\s]+)/.exec(output)?.[1]
  const tasks = /task-service ready at (http:\/\/[^\s]+)/.exec(output)?.[1]
  if (!auth || !tasks) throw new Error(`service URLs not found in launcher output:\n${output}`)
  return { auth, tasks }
}

/** One more gateway process in front of the same services: a second replica. */
export async function startGateway(t: Tap, env: Record<string, string>): Promise<Cluster> {
  const [port, adminPort] = await freePorts(2)
  let out = ''
  const proc = spawn(process.execPath, ['gateway/dist/server.js'], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', BETTER_AUTH_SECRET: SECRET, LOG_LEVEL: 'warn', HOST: '127.0.0.1', PORT: String(port), INTERNAL_PORT: '0', ADMIN_PORT: String(adminPort), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  proc.stdout!.on('data', (d) => (out += d))
  proc.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  let stopped = false
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (!stopped) {
      stopped = true
      proc.kill(signal)
    }
    return exited
  }
  t.teardown(() => stop())
  const url = `http://127.0.0.1:${port}`
  const adminUrl = `http://127.0.0.1:${adminPort}`
  const deadline = Date.now() + 20_000
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`gateway exited early (${proc.exitCode}):\n${out}`)
    try {
      if ((await fetch(`${adminUrl}/ready`)).status === 200) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`gateway did not become ready:\n${out}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  return { url, adminUrl, proc, output: () => out, stop }
}
