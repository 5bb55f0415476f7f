/** A gateway as a real process (dist/server.js), ready once it counts in Redis. */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { SECRET } from './helper.js'
import { freePort } from './redis-server.js'

const gatewayEntry = fileURLToPath(new URL('../dist/server.js', import.meta.url))

export async function startGatewayProcess(t: { teardown(fn: () => unknown): void }, env: Record<string, string>): Promise<string> {
  const port = await freePort()
  const adminPort = await freePort()
  const proc = spawn(process.execPath, [gatewayEntry], {
    env: { PATH: process.env.PATH ?? '', BETTER_AUTH_SECRET: SECRET, LOG_LEVEL: 'warn', HOST: '127.0.0.1', PORT: String(port), INTERNAL_PORT: '0', ADMIN_PORT: String(adminPort), ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  t.teardown(() => {
    proc.kill('SIGTERM')
  })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 60_000 // a loaded 2-core machine starts three gateway processes at once
  for (;;) {
    try {
      const ready = await fetch(`http://127.0.0.1:${adminPort}/ready`) // the admin listener
      if (ready.status === 200 && (await ready.json()).checks['rate-limit-counters'] === 'redis') return url
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error('gateway process did not become ready on Redis')
    await new Promise((r) => setTimeout(r, 100))
  }
}
