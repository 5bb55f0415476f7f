/**
 * Routes as configuration, reloaded without a restart (issue 15 item 5): a
 * real gateway process, its file rewritten, then SIGHUP (or, with
 * GATEWAY_CONFIG_WATCH, nothing but the write). New requests take the new
 * file; requests in flight finish on the old one; keep-alive connections carry
 * on; a bad file keeps the running one; limits are never reset.
 */
import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFileSync, renameSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { Pool } from 'undici'
import { startUpstream, tempDir } from './helper.js'
import { spawnGateway } from './gateway-process.js'

type Tap = Parameters<typeof startUpstream>[0]

// The file's bound is a liveness bound: eight gateway processes, one after another (over 100 s on a loaded 2-core machine).
t.setTimeout(300_000)

/** A file with the routes given (one per line of YAML flow mappings), in front of one upstream. */
function gatewayFile(routes: string[], internalRoutes: string[] = [], extra = ''): string {
  return `issuers:
  self: { issuer: tollgate, audience: tollgate-api, algorithms: [HS256], secret: "\${BETTER_AUTH_SECRET}" }
upstreams:
  auth: { targets: "\${AUTH_SERVICE_URL}" }
policies:
  ip: { key: address, limit: 1000000, window_s: 60 }
  tight: { key: address, limit: 3, window_s: 600 }
routes:
${routes.map((r) => `  - ${r}`).join('\n')}
${internalRoutes.length ? `internal_routes:\n${internalRoutes.map((r) => `  - ${r}`).join('\n')}\n` : ''}${extra}`
}

const route = (path: string, policy = 'ip') => `{ methods: [GET], path: ${path}, upstream: auth, access: anonymous, policies: [${policy}] }`

interface Gateway {
  url: string
  internalUrl: string
  file: string
  pid: number
  /** Log lines the process wrote (JSON). */
  lines: string[]
  /** The log lines that contain `text`, once there are at least `count` (logs are flushed in batches). */
  logged(text: string, count: number): Promise<string[]>
  write(text: string): void
  /** SIGHUP, then wait until the reload counters say it is done. */
  reload(expect: 'ok' | 'error'): Promise<void>
  reloads(): Promise<{ ok: number; error: number }>
  metrics(): Promise<string>
  /** Resolves with the process's exit code. */
  exited: Promise<number | null>
  kill(signal: NodeJS.Signals): void
}

async function startGateway(t: Tap, text: string, env: Record<string, string> = {}): Promise<Gateway> {
  const upstream = await startUpstream(t)
  const dir = tempDir(t, 'tollgate-reload-')
  const file = join(dir, 'gateway.yaml')
  // Written aside and renamed in: a reader (the watch) never sees half a file.
  const write = (body: string) => {
    writeFileSync(`${file}.tmp`, body)
    renameSync(`${file}.tmp`, file)
  }
  write(text)
  // Started once its internal listener answers (the file names no task-service: /ready would wait for one).
  const { proc, lines, exited, url, internalUrl, adminUrl } = await spawnGateway(
    t,
    { AUTH_SERVICE_URL: upstream.url, GATEWAY_CONFIG: file, ...env },
    { captureLog: true, ready: async (gw) => (await fetch(`${gw.internalUrl}/health`)).status === 200 },
  )
  // Metrics are on the admin listener, never the public one.
  const metrics = async () => (await fetch(`${adminUrl}/metrics`)).text()
  const reloads = async () => {
    const text = await metrics()
    const count = (result: string) => Number(new RegExp(`^gateway_config_reloads_total\\{result="${result}"[^}]*\\} (\\d+)`, 'm').exec(text)?.[1] ?? NaN)
    return { ok: count('ok'), error: count('error') }
  }
  return {
    url,
    internalUrl,
    file,
    pid: proc.pid!,
    lines,
    exited,
    kill: (signal) => proc.kill(signal),
    async logged(text, count) {
      const until = Date.now() + 10_000
      for (;;) {
        const found = lines.filter((l) => l.includes(text))
        if (found.length >= count || Date.now() > until) return found
        await new Promise((r) => setTimeout(r, 50))
      }
    },
    write,
    metrics,
    reloads,
    async reload(expect) {
      const before = await reloads()
      proc.kill('SIGHUP')
      const until = Date.now() + 30_000
      for (;;) {
        const now = await reloads()
        if (now[expect] > before[expect]) return
        const other = expect === 'ok' ? 'error' : 'ok'
        if (now[other] > before[other]) throw new Error(`reload ended with ${other}`)
        if (Date.now() > until) throw new Error('reload did not finish')
        await new Promise((r) => setTimeout(r, 50))
      }
    },
  }
}

const status = async (url: string) => (await fetch(url)).status

t.test('a reload adds and removes routes, public and internal, without a restart', async (t) => {
  const gw = await startGateway(t, gatewayFile([route('/kept'), route('/removed')]))
  t.equal(await status(`${gw.url}/kept`), 200)
  t.equal(await status(`${gw.url}/removed`), 200)
  t.equal(await status(`${gw.url}/added`), 404, 'not declared yet')
  t.equal(await status(`${gw.internalUrl}/internal/added`), 404)
  t.same(await gw.reloads(), { ok: 0, error: 0 }, 'both results are exported from the start')

  gw.write(gatewayFile([route('/kept'), route('/added')], ['{ methods: [GET], path: /internal/added, upstream: auth, access: credential }']))
  await gw.reload('ok')
  t.equal(await status(`${gw.url}/added`), 200, 'the new route answers')
  t.equal(await status(`${gw.url}/removed`), 404, 'the removed route is gone')
  t.equal(await status(`${gw.url}/kept`), 200)
  t.equal(await status(`${gw.internalUrl}/internal/added`), 200, 'the internal listener is reloaded from the same file')
  const metrics = await gw.metrics()
  t.match(metrics, /^gateway_config_generation\{[^}]*\} 2$/m, 'generation 2 serves')
  t.match(metrics, /^gateway_config_info\{file="[^"]+",hash="[0-9a-f]{16}"[^}]*\} 1$/m)
  t.match(metrics, /^gateway_config_last_reload_success_timestamp_seconds\{[^}]*\} \d/m)
  t.match(metrics, /^http_requests_total\{method="GET",route="\/kept",status="200"[^}]*\} 2$/m, 'request counters survive the reload')
})

t.test('a bad file keeps the running configuration: one log line, result="error"', async (t) => {
  const gw = await startGateway(t, gatewayFile([route('/kept')]))
  t.equal(await status(`${gw.url}/kept`), 200)

  gw.write(`${gatewayFile([route('/kept')])}routes: [\n`)
  await gw.reload('error')
  t.equal(await status(`${gw.url}/kept`), 200, 'a YAML syntax error: the old routes still serve')
  let refused = await gw.logged('configuration reload refused', 1)
  t.equal(refused.length, 1, 'one line')
  t.match(refused[0], new RegExp(`${gw.file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+: `), 'naming the file and the line')

  gw.write(gatewayFile([route('/kept'), '{ methods: [GET], path: /new, upstream: nowhere, access: anonymous }']))
  await gw.reload('error')
  t.equal(await status(`${gw.url}/kept`), 200, 'a schema error: the old routes still serve')
  t.equal(await status(`${gw.url}/new`), 404, 'nothing of the bad file is applied')
  refused = await gw.logged('configuration reload refused', 2)
  t.equal(refused.length, 2, 'one more line')
  t.match(refused[1], /gateway\.yaml:10: routes\.1\.upstream: no upstream named \\"nowhere\\"/, 'file, line and field path, as tollgate check prints them')
  t.same(await gw.reloads(), { ok: 0, error: 2 })
  t.match(await gw.metrics(), /^gateway_config_last_reload_successful\{[^}]*\} 0$/m)

  gw.write(gatewayFile([route('/kept'), route('/new')]))
  await gw.reload('ok')
  t.equal(await status(`${gw.url}/new`), 200, 'a fixed file loads')
})

/** An upstream that holds every proxied answer until released (the revocation feed answers at once). */
async function heldUpstream(t: Tap) {
  let release!: () => void
  const held = new Promise<void>((r) => (release = r))
  let arrived!: () => void
  const arrival = new Promise<void>((r) => (arrived = r))
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/internal/revocations')) {
      res.setHeader('content-type', 'application/json')
      return res.end(JSON.stringify({ cursor: 0, reset: false, more: false, revoked: [] }))
    }
    arrived()
    void held.then(() => res.end('{"late":true}'))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, arrival, release }
}

const withSlowRoute = (text: string, slowUrl: string) =>
  text.replace('upstreams:\n', `upstreams:\n  slow: { targets: "${slowUrl}" }\n`).replace('routes:\n', 'routes:\n  - { methods: [GET], path: /slow, upstream: slow, access: anonymous }\n')

t.test('a request in flight finishes on the generation it started on', async (t) => {
  // The upstream holds the answer until the reload is done: no timing involved.
  const slow = await heldUpstream(t)
  const gw = await startGateway(t, withSlowRoute(gatewayFile([route('/kept')]), slow.url))
  const inFlight = fetch(`${gw.url}/slow`)
  await slow.arrival
  gw.write(gatewayFile([route('/kept')]))
  await gw.reload('ok')
  t.equal(await status(`${gw.url}/slow`), 404, 'new requests take the new file')
  slow.release()
  const res = await inFlight
  t.equal(res.status, 200, 'the request started before the reload completes')
  t.same(await res.json(), { late: true })
})

t.test('SIGTERM still drains: the request in flight is answered (connection: close), then exit 0', async (t) => {
  const slow = await heldUpstream(t)
  const gw = await startGateway(t, withSlowRoute(gatewayFile([route('/kept')]), slow.url))
  const inFlight = fetch(`${gw.url}/slow`)
  await slow.arrival
  gw.kill('SIGTERM')
  // Accepting stops at once: a new connection is refused while the old request is still held.
  for (let i = 0; i < 400; i++) {
    const refused = await fetch(`${gw.url}/kept`, { headers: { connection: 'close' } }).then(
      () => false,
      () => true,
    )
    if (refused) break
    await new Promise((r) => setTimeout(r, 50))
  }
  slow.release()
  const res = await inFlight
  t.equal(res.status, 200)
  t.equal(res.headers.get('connection'), 'close')
  t.equal(await gw.exited, 0)
})

t.test('a reload never resets a limit', async (t) => {
  const gw = await startGateway(t, gatewayFile([route('/limited', 'tight')]))
  for (let i = 0; i < 3; i++) t.equal(await status(`${gw.url}/limited`), 200)
  t.equal(await status(`${gw.url}/limited`), 429, 'past the limit')
  gw.write(gatewayFile([route('/limited', 'tight'), route('/other')]))
  await gw.reload('ok')
  t.equal(await status(`${gw.url}/other`), 200, 'the new file serves')
  t.equal(await status(`${gw.url}/limited`), 429, 'still limited after the reload')
})

t.test('10 reloads during a load run over keep-alive connections: no error, no dropped connection', async (t) => {
  const gw = await startGateway(t, gatewayFile([route('/load'), route('/a')]))
  const connections = 8
  const pool = new Pool(gw.url, { connections, pipelining: 1 })
  t.teardown(() => pool.close())
  let connects = 0
  let disconnects = 0
  pool.on('connect', () => connects++)
  pool.on('disconnect', () => disconnects++)
  let ok = 0
  const failures: string[] = []
  let running = true
  const worker = async () => {
    while (running) {
      try {
        const res = await pool.request({ path: '/load', method: 'GET' })
        await res.body.dump()
        if (res.statusCode === 200) ok++
        else failures.push(`status ${res.statusCode}`)
      } catch (err) {
        failures.push((err as Error).message)
      }
    }
  }
  const workers = Array.from({ length: connections * 2 }, worker)
  const okBefore = async () => {
    const start = ok
    while (ok < start + 50 && failures.length === 0) await new Promise((r) => setTimeout(r, 10))
  }
  await okBefore()
  for (let i = 0; i < 10; i++) {
    gw.write(gatewayFile([route('/load'), route(i % 2 ? '/a' : '/b')]))
    await gw.reload('ok')
    await okBefore() // traffic on the new generation before the next reload
  }
  running = false
  await Promise.all(workers)
  t.same(failures, [], 'every request answered 200')
  t.ok(ok > 500, `requests served: ${ok}`)
  t.equal(connects, connections, 'the connections opened at the start')
  t.equal(disconnects, 0, 'no connection dropped')
  t.same(await gw.reloads(), { ok: 10, error: 0 })
  t.equal(await status(`${gw.url}/a`), 200, 'the last file serves')
  t.equal(await status(`${gw.url}/b`), 404)
})

t.test('GATEWAY_CONFIG_WATCH: a change of the file is reloaded without a signal; the file removed keeps the running one', async (t) => {
  const gw = await startGateway(t, gatewayFile([route('/kept')]), { GATEWAY_CONFIG_WATCH: 'true' })
  t.equal(await status(`${gw.url}/watched`), 404)
  gw.write(gatewayFile([route('/kept'), route('/watched')]))
  const until = Date.now() + 20_000
  while ((await gw.reloads()).ok < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
  t.equal(await status(`${gw.url}/watched`), 200, 'the written file serves')
  t.same(await gw.reloads(), { ok: 1, error: 0 }, 'one reload for one write')

  // The file removed (an rm, a ConfigMap swap gone wrong): a refused reload, the running configuration kept.
  unlinkSync(gw.file)
  const removed = Date.now() + 20_000
  while ((await gw.reloads()).error < 1 && Date.now() < removed) await new Promise((r) => setTimeout(r, 50))
  t.same(await gw.reloads(), { ok: 1, error: 1 }, 'the file gone: one refused reload')
  t.equal(await status(`${gw.url}/watched`), 200, 'the running configuration still serves')
  t.equal((await gw.logged(`${gw.file}: cannot be read`, 1)).length, 1, 'said in one line, naming the file')
})

t.test('a listener address changed in the file needs a restart: said once, the rest applies', async (t) => {
  const gw = await startGateway(t, gatewayFile([route('/kept')]))
  gw.write(gatewayFile([route('/kept'), route('/added')], [], 'listeners:\n  public: { host: 127.0.0.1, port: 1 }\n'))
  await gw.reload('ok')
  t.equal(await status(`${gw.url}/added`), 200, 'routes reloaded, on the listener bound at start')
  t.equal((await gw.logged('a restart is needed', 1)).length, 1)
})
