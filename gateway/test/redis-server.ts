/** A private redis-server on a free loopback port, for tests that stop and start Redis. */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'

type Tap = { teardown(fn: () => unknown): void }

import { exitedEarly, freePort, freePorts, retryWhilePortTaken } from '../../infra/src/processes.js'

export { exitedEarly, freePort, freePorts, retryWhilePortTaken }

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
    await untilAnswers(port)
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

export interface PrivateRedisCluster {
  /** Seed URLs of every node, comma-separated (REDIS_URL with REDIS_CLUSTER=true). */
  url: string
  ports: number[]
  /** SIGKILL one node; start brings it back with its cluster config (same id, same slots). */
  stop(node: number): Promise<void>
  start(node: number): Promise<void>
}

/** A Redis Cluster of `nodes` masters (no replicas) on free loopback ports, its files in a temp dir. */
export async function startRedisCluster(t: Tap, nodes = 3): Promise<PrivateRedisCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-redis-cluster-'))
  const ports: number[] = []
  const procs: ChildProcess[] = []
  t.teardown(async () => {
    await Promise.all(
      procs.map((proc) => {
        if (proc.exitCode !== null) return undefined
        const exited = new Promise((r) => proc.once('exit', r))
        proc.kill('SIGKILL')
        return exited
      }),
    )
    await rm(dir, { recursive: true, force: true })
  })
  const spawnNode = (port: number) =>
    spawn(
      'redis-server',
      [
        ...['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
        ...['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '1000'],
      ],
      { stdio: 'ignore' },
    )
  for (let i = 0; i < nodes; i++) {
    const port = await freePort()
    ports.push(port)
    procs.push(spawnNode(port))
  }
  for (const port of ports) await untilAnswers(port)
  await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'])
  // Every node must agree the slots are covered before a client can route.
  for (const port of ports) {
    const node = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0 })
    try {
      const deadline = Date.now() + 30_000 // liveness bounds here: a loaded 2-core machine is slow to start servers
      while (!/cluster_state:ok/.test(String(await node.call('CLUSTER', 'INFO')))) {
        if (Date.now() > deadline) throw new Error('redis cluster did not reach cluster_state:ok')
        await new Promise((r) => setTimeout(r, 50))
      }
    } finally {
      node.disconnect()
    }
  }
  return {
    url: ports.map((p) => `redis://127.0.0.1:${p}`).join(','),
    ports,
    stop: async (i) => {
      const proc = procs[i]!
      if (proc.exitCode !== null) return
      const exited = new Promise((r) => proc.once('exit', r))
      proc.kill('SIGKILL')
      await exited
    },
    start: async (i) => {
      procs[i] = spawnNode(ports[i]!)
      await untilAnswers(ports[i]!)
    },
  }
}

/** Resolves once a redis-server on this port answers PING (refused until it is up). */
async function untilAnswers(port: number): Promise<void> {
  const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  probe.on('error', () => {}) // refused until the server is up
  const deadline = Date.now() + 30_000
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

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, _stdout, stderr) => (err ? reject(new Error(`${cmd} failed: ${stderr || err.message}`)) : resolve()))
  })
}
