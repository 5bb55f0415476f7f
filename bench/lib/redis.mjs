/**
 * A private redis-server for the gateway's Redis mode (never the machine's
 * shared one on 6379: the bench neither reads nor flushes other people's
 * keys), and the count of commands it has served, from INFO commandstats.
 */
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { freePort, startProgram } from './procs.mjs'
import { CPU_LOAD } from './stack.mjs'

const run = promisify(execFile)

/** Why the Redis rows cannot be measured here, or null when redis-server and redis-cli are installed. */
export function redisMissing() {
  for (const tool of ['redis-server', 'redis-cli']) {
    try {
      execFileSync(tool, ['--version'], { stdio: 'ignore' })
    } catch {
      return `${tool} not found (Debian/Ubuntu: apt-get install -y redis-server; it provides both)`
    }
  }
  return null
}

/** redis-server on a free loopback port, no persistence, on the load CPU (beside the upstream). */
export async function startRedis() {
  const port = await freePort()
  const proc = await startProgram({
    name: 'redis-server',
    command: ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'],
    cpu: CPU_LOAD,
  })
  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      const { stdout } = await run('redis-cli', ['-p', String(port), 'PING'])
      if (stdout.trim() === 'PONG') break
    } catch { /* not listening yet */ }
    if (proc.exited || Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start: ${proc.stderr.slice(-5).join(' ')}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return { proc, port, url: `redis://127.0.0.1:${port}` }
}

/**
 * Commands served so far by name, from INFO commandstats (`cmdstat_<cmd>:calls=N,...`). Redis counts the
 * commands a script runs as calls too (one EVALSHA of the rate-limit script shows as evalsha + incr + pttl).
 * INFO itself is left out: it is this counter's own call, not the gateway's.
 */
export async function redisCommandCounts(port) {
  const { stdout } = await run('redis-cli', ['-p', String(port), 'INFO', 'commandstats'])
  const calls = {}
  for (const m of stdout.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (m[1] !== 'info') calls[m[1]] = Number(m[2])
  }
  return calls
}
