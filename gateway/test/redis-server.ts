/** A private redis-server on a free loopback port, for tests that stop and start Redis. */
import { spawn, type ChildProcess } from 'node:child_process'
import { Redis } from 'ioredis'

type Tap = { teardown(fn: () => unknown): void }

import { freePort } from '../../infra/src/processes.js'

export { freePort }

export interface PrivateRedis {
  url: string
  stop(): Promise<void>
  start(): Promise<void>
  /** SIGSTOP / SIGCONT: the server stops answering but keeps its connections (commands time out). */
  pause(): void
  resume(): void
}

export async function startRedis(t: Tap): Promise<PrivateRedis> {
  const port = await freePort()
  let proc: ChildProcess | undefined
  const start = async () => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    probe.on('error', () => {}) // refused until the server is up
    const deadline = Date.now() + 5000
    for (;;) {
      try {
        await probe.connect()
        await probe.ping()
        probe.disconnect()
        return
      } catch {
        probe.disconnect()
        if (Date.now() > deadline) throw new Error('redis-server did not start')
        await new Promise((r) => setTimeout(r, 50))
      }
    }
  }
  const stop = async () => {
    if (!proc || proc.exitCode !== null) return
    const exited = new Promise((r) => proc!.once('exit', r))
    proc.kill('SIGKILL')
    await exited
  }
  await start()
  t.teardown(stop)
  return {
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    pause: () => proc?.kill('SIGSTOP'),
    resume: () => proc?.kill('SIGCONT'),
  }
}

/** The shared Redis for this run when CI names one, else a private one. */
export async function testRedisUrl(t: Tap): Promise<string> {
  return process.env.TEST_REDIS_URL || (await startRedis(t)).url
}
