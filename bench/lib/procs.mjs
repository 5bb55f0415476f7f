/**
 * Child processes of the bench: started pinned to a CPU with taskset, tracked
 * by PID, stopped by PID only, and all killed when the bench exits or is
 * interrupted, so a failed run never leaves a server behind.
 */
import { spawn, execFileSync } from 'node:child_process'
import { availableParallelism } from 'node:os'
import net from 'node:net'

const live = new Map() // pid -> Proc

/** Pinning needs taskset and two CPUs; otherwise everything shares what there is. */
export const pinning = (() => {
  if (availableParallelism() < 2) return { enabled: false, why: 'fewer than 2 CPUs' }
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' })
    return { enabled: true, why: 'proxy under test on CPU 1; load generator and upstreams on CPU 0' }
  } catch {
    return { enabled: false, why: 'taskset not found' }
  }
})()

/** Pins this process (every thread: autocannon runs in-process) to CPU 0; children inherit it. */
export function pinSelf() {
  if (!pinning.enabled) return
  execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' })
}

/**
 * Start `node args...` on `cpu`. stdout goes to /dev/null unless `readyLine`
 * is given (then the promise waits for a stdout line containing it); stderr
 * is kept (last lines) to explain a failure.
 */
export function startNode({ args, ...opts }) {
  return startProgram({ ...opts, command: [process.execPath, ...args] })
}

/** Start any program (`command`: file and arguments) the way startNode does. */
export async function startProgram({ name, command, env = {}, cpu, readyLine, readyTimeoutMs = 15_000 }) {
  const [file, ...rest] = pinning.enabled && cpu !== undefined ? ['taskset', '-c', String(cpu), ...command] : command
  const child = spawn(file, rest, {
    env: { ...process.env, ...env },
    stdio: ['ignore', readyLine ? 'pipe' : 'ignore', 'pipe'],
  })
  const proc = { name, child, pid: child.pid, stderr: [], exited: null }
  live.set(child.pid, proc)
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk) => {
    proc.stderr.push(...chunk.split('\n').filter(Boolean))
    if (proc.stderr.length > 40) proc.stderr.splice(0, proc.stderr.length - 40)
  })
  proc.exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      proc.exited = { code, signal }
      live.delete(proc.pid)
      resolve(proc.exited)
    })
  })
  if (readyLine) {
    child.stdout.setEncoding('utf8')
    let buffered = ''
    await bounded(readyTimeoutMs, `${name} did not print "${readyLine}"`, (resolve, reject) => {
      child.stdout.on('data', (chunk) => {
        buffered += chunk
        if (buffered.includes(readyLine)) resolve()
      })
      proc.exitPromise.then(() => reject(failure(proc, 'exited before it was ready')))
    })
    child.stdout.resume()
  }
  return proc
}

function failure(proc, what) {
  return new Error(`${proc.name} (pid ${proc.pid}) ${what}${proc.exited ? ` (${JSON.stringify(proc.exited)})` : ''}\n  ${proc.stderr.slice(-10).join('\n  ')}`)
}

function bounded(ms, message, executor) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(message)), ms)
    executor(
      (v) => (clearTimeout(timer), resolve(v)),
      (e) => (clearTimeout(timer), reject(e)),
    )
  })
}

/** Poll `url` until it answers `status` (bounded); used for servers whose stdout is /dev/null. */
export async function waitHttp(proc, url, { status = 200, timeoutMs = 15_000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs
  let last = 'no answer'
  while (Date.now() < deadline) {
    if (proc?.exited) throw failure(proc, 'exited while starting')
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) })
      await res.arrayBuffer()
      if (res.status === status) return
      last = `status ${res.status}`
    } catch (err) {
      last = err.cause?.code ?? err.message
    }
    await sleep(intervalMs)
  }
  throw proc ? failure(proc, `not ready at ${url}: ${last}`) : new Error(`${url} not ready: ${last}`)
}

/** SIGTERM (or `signal`), then SIGKILL if it is still there after `graceMs`. */
export async function stop(proc, { signal = 'SIGTERM', graceMs = 10_000 } = {}) {
  if (!proc || proc.exited) return proc?.exited
  tryKill(proc.pid, signal)
  const timer = setTimeout(() => !proc.exited && tryKill(proc.pid, 'SIGKILL'), graceMs)
  const exited = await proc.exitPromise
  clearTimeout(timer)
  return exited
}

export async function stopAll() {
  await Promise.all([...live.values()].map((p) => stop(p, { graceMs: 3000 })))
}

export function liveCount() {
  return live.size
}

/** Last resort on exit: nothing we started may survive us. */
function killLeftovers() {
  for (const proc of live.values()) tryKill(proc.pid, 'SIGKILL')
}

function tryKill(pid, signal) {
  try {
    process.kill(pid, signal)
  } catch { /* already gone */ }
}
process.on('exit', killLeftovers)
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping ${live.size} child process(es)\n`)
    stopAll().finally(() => process.exit(130))
  })
}

/** A port free right now on 127.0.0.1 (the OS picks it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
