/** A Redis that cannot be reached when the gateway starts is said in the log (it used to be silent). */
import t from 'tap'
import { PassThrough } from 'node:stream'
import { buildApp } from '../src/app.js'
import { gatewayConfig, startUpstream } from './helper.js'

/** A port nothing listens on, ever: port 1 is privileged and outside the ephemeral range (see upstreams.test.ts). */
async function closedPort(): Promise<number> {
  return 1
}

t.test('an unreachable REDIS_URL at start is logged once, naming the address, and counting goes on in memory', async (t) => {
  const port = await closedPort()
  const logs = new PassThrough()
  const lines: Array<Record<string, unknown>> = []
  let seen: () => void = () => {}
  const logged = new Promise<void>((resolve) => (seen = resolve))
  logs.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      const entry = JSON.parse(line) as Record<string, unknown>
      lines.push(entry)
      if (/Redis unavailable/.test(String(entry.msg))) seen()
    }
  })
  const auth = await startUpstream(t)
  const app = await buildApp(gatewayConfig({ AUTH_SERVICE_URL: auth.url, REDIS_URL: `redis://127.0.0.1:${port}`, LOG_LEVEL: 'warn' }), { logStream: logs })
  t.teardown(() => app.close())
  await app.ready()
  await logged
  const warnings = lines.filter((l) => /Redis unavailable/.test(String(l.msg)))
  t.equal(warnings.length, 1, 'one line, not one per retry')
  t.equal(warnings[0]!.level, 40, 'at warn')
  t.match(String(warnings[0]!.reason), new RegExp(`127\\.0\\.0\\.1:${port}`), 'names the address it tried')
  t.equal((await app.admin.inject({ url: '/ready' })).json().checks['rate-limit-counters'], 'memory-fallback')
})
