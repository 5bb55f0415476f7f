/**
 * Upstreams with several targets (issue 15 item 4), on real sockets:
 * balancing, outlier ejection with growing backoff on a test clock, the
 * circuit breaker's 503, the retry of a bodiless GET on another target, active
 * health checks, and DNS re-resolution with an injected lookup.
 */
import t, { type Test } from 'tap'
import http from 'node:http'
import type net from 'node:net'
import Fastify from 'fastify'
import { installErrorEnvelope } from '@tollgate/common'
import { Registry } from 'prom-client'
import { createUpstream, createUpstreamMetrics, type Lookup, type UpstreamDef, type UpstreamDeps } from '../src/upstreams/index.js'
import { createForwarder } from '../src/proxy/forwarder.js'
import { buildGateway, gatewayConfig, startUpstream, token, subOf } from './helper.js'

type Tap = Test

interface Target {
  url: string
  port: number
  /** Requests answered (health checks not counted). */
  hits: number
  hosts: string[]
  /** What the next answers are. */
  behave: { status: number; hold: boolean; healthStatus: number; reset: boolean }
  held: http.ServerResponse[]
  release(): void
  close(): Promise<void>
}

async function startTarget(t: Tap, host = '127.0.0.1', port = 0): Promise<Target> {
  const target: Target = {
    url: '',
    port: 0,
    hits: 0,
    hosts: [],
    behave: { status: 200, hold: false, healthStatus: 200, reset: false },
    held: [],
    release() {
      for (const res of target.held.splice(0)) res.end('{"held":true}')
    },
    close: async () => {
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    },
  }
  const server = http.createServer((req, res) => {
    if (req.url === '/health') {
      res.statusCode = target.behave.healthStatus
      return res.end('{}')
    }
    target.hits++
    target.hosts.push(req.headers.host ?? '')
    if (target.behave.reset) return req.socket.destroy()
    if (target.behave.hold) return void target.held.push(res)
    res.statusCode = target.behave.status
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ port: target.port, host }))
  })
  await new Promise<void>((r) => server.listen(port, host, r))
  target.port = (server.address() as net.AddressInfo).port
  target.url = `http://${host}:${target.port}`
  t.teardown(() => {
    target.release()
    return target.close()
  })
  return target
}

/**
 * A target that refuses every connection. Port 1 on loopback: privileged and outside the ephemeral
 * range, so no later `listen(0)` (another target of the test) and no outgoing connection's own port
 * (a TCP self-connect) can ever land on it, as they could on a port bound and then released.
 */
function closedPort(): string {
  return 'http://127.0.0.1:1'
}

function upstreamOf(t: Tap, def: Partial<UpstreamDef> & { targets: string[] }, deps: UpstreamDeps = {}) {
  // Timeouts far out of the way (no test here is about them): a loaded machine must not turn a held request into a 504.
  const up = createUpstream({ name: 'tasks', connections: 4, connectTimeoutMs: 10_000, timeoutMs: 30_000, ...def }, { timers: false, ...deps })
  t.teardown(() => up.destroy())
  return up
}

async function get(up: { request: (o: { method: 'GET'; path: string }) => Promise<{ statusCode: number; body: { dump(): Promise<void> } }> }) {
  const res = await up.request({ method: 'GET', path: '/x' })
  await res.body.dump()
  return res.statusCode
}

/** A gateway route in front of `pool` through the real forwarder: what clients see. */
async function gatewayOf(t: Tap, pool: Parameters<typeof createForwarder>[0]['pool']) {
  const forward = createForwarder({ name: 'tasks', pool, timeoutMs: 30_000, countError: () => {} })
  const app = Fastify()
  // As every app of ours: the one error handler on the root, before the routes (the forwarder's failures go to it).
  installErrorEnvelope(app)
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body))
  app.all('/*', (request, reply) => {
    forward(reply, { method: request.method, path: request.url, headers: {}, body: (request.body as string | undefined) ?? null, publicCache: false })
    return reply
  })
  t.teardown(() => app.close())
  return app
}

t.test('round-robin spreads requests evenly over the targets', async (t) => {
  const targets = await Promise.all([startTarget(t), startTarget(t), startTarget(t)])
  const up = upstreamOf(t, { targets: targets.map((x) => x.url) })
  for (let i = 0; i < 30; i++) t.equal(await get(up), 200)
  t.same(
    targets.map((x) => x.hits),
    [10, 10, 10],
  )
})

t.test('least-busy sends requests to the idle target while the other one holds a request', async (t) => {
  const [slow, fast] = await Promise.all([startTarget(t), startTarget(t)])
  slow.behave.hold = true
  const up = upstreamOf(t, { targets: [slow.url, fast.url], balancing: 'least-busy' })
  // One request at a time until one is held on the slow target (the first pick may be either): never two in
  // flight, however slowly they arrive, so the slow target gets exactly one.
  const pending: Array<Promise<number>> = []
  while (slow.held.length === 0) {
    let answered = false
    pending.push(get(up).finally(() => (answered = true)))
    while (!answered && slow.held.length === 0) await new Promise((r) => setTimeout(r, 5))
  }
  const fastBefore = fast.hits
  for (let i = 0; i < 10; i++) t.equal(await get(up), 200)
  t.equal(fast.hits - fastBefore, 10, 'every request went to the idle target')
  t.equal(slow.hits, 1, 'the busy one got nothing more')
  slow.release()
  await Promise.all(pending)
})

t.test('consecutive 5xx eject a target; it returns after the ejection, and the next ejection lasts longer', async (t) => {
  const [bad, good] = await Promise.all([startTarget(t), startTarget(t)])
  bad.behave.status = 500
  let now = 1_000_000
  const registry = new Registry()
  const up = upstreamOf(t, { targets: [bad.url, good.url], outlier: { consecutiveFailures: 3, baseEjectionMs: 1000, maxEjectionMs: 5000 } }, { now: () => now, metrics: createUpstreamMetrics(registry) })
  while (bad.hits < 3) await get(up)
  t.equal(bad.hits, 3, 'ejected after the third 5xx in a row')
  for (let i = 0; i < 10; i++) t.equal(await get(up), 200)
  t.equal(bad.hits, 3, 'while ejected it gets nothing')
  now += 999
  await get(up)
  await get(up)
  t.equal(bad.hits, 3, 'still out 1 ms before the base ejection ends')
  now += 1
  while (bad.hits < 6) await get(up)
  t.pass('back after the base ejection; three more 5xx eject it again')
  now += 1999
  for (let i = 0; i < 4; i++) await get(up)
  t.equal(bad.hits, 6, 'the second ejection lasts twice the base')
  now += 1
  await get(up)
  await get(up)
  t.equal(bad.hits, 7, 'back after 2 x base')
  const metrics = await registry.getMetricsAsJSON()
  const ejections = metrics.find((m) => m.name === 'gateway_upstream_target_ejections_total')!.values
  t.same(
    ejections.map((v) => [v.labels.target, v.value]),
    [[new URL(bad.url).host, 2]],
    'per-target ejection counter',
  )
  const healthy = metrics.find((m) => m.name === 'gateway_upstream_target_healthy')!.values
  t.same(
    healthy.map((v) => v.value),
    [1, 1],
    'the health gauge is back to 1 once the ejection ran out',
  )
  const requests = metrics.find((m) => m.name === 'gateway_upstream_target_requests_total')!.values
  t.equal(requests.find((v) => v.labels.target === new URL(bad.url).host)!.value, 7, 'per-target request counter')
})

t.test('a target that stayed in long enough starts over: its next ejection lasts the base again', async (t) => {
  const [bad, good] = await Promise.all([startTarget(t), startTarget(t)])
  bad.behave.status = 500
  let now = 1_000_000
  const up = upstreamOf(t, { targets: [bad.url, good.url], outlier: { consecutiveFailures: 3, baseEjectionMs: 1000, maxEjectionMs: 5000 } }, { now: () => now })
  while (bad.hits < 3) await get(up)
  now += 1000
  while (bad.hits < 6) await get(up)
  t.pass('ejected twice: the second ejection lasts 2 x base')
  now += 2000
  bad.behave.status = 200
  while (bad.hits < 7) await get(up)
  // In for longer than the max ejection plus its current backoff (5000 + 2 x 1000 ms) since it was last ejected.
  now += 5001
  bad.behave.status = 500
  while (bad.hits < 10) await get(up)
  now += 999
  for (let i = 0; i < 4; i++) await get(up)
  t.equal(bad.hits, 10, 'ejected again, and out until the base ejection ends')
  now += 1
  await get(up)
  await get(up)
  t.equal(bad.hits, 11, 'back after the base ejection, not 3 x base')
})

t.test('every target out: 503 in the envelope at once, nothing sent upstream', async (t) => {
  const targets = await Promise.all([startTarget(t), startTarget(t)])
  for (const x of targets) x.behave.status = 500
  const up = upstreamOf(t, { targets: targets.map((x) => x.url), outlier: { consecutiveFailures: 1 } })
  const gw = await gatewayOf(t, up)
  t.equal((await gw.inject('/a')).statusCode, 500)
  t.equal((await gw.inject('/b')).statusCode, 500)
  const res = await gw.inject('/c')
  t.equal(res.statusCode, 503)
  t.same(res.json(), { detail: 'Upstream service unavailable', error_code: 'SERVICE_UNAVAILABLE', status_code: 503 })
  t.equal(res.headers['retry-after'], '2')
  t.same(
    targets.map((x) => x.hits),
    [1, 1],
    'the third request never reached a target',
  )
})

t.test('a GET that cannot connect is retried once on another target; a POST never is', async (t) => {
  const down = closedPort()
  const up1 = await startTarget(t)
  const up = upstreamOf(t, { targets: [down, up1.url] })
  const gw = await gatewayOf(t, up)
  for (let i = 0; i < 4; i++) t.equal((await gw.inject('/g')).statusCode, 200, `GET ${i} answered by the live target`)
  t.equal(up1.hits, 4)
  const posts = [await gw.inject({ method: 'POST', url: '/p', payload: 'x' }), await gw.inject({ method: 'POST', url: '/p', payload: 'x' })]
  t.same(posts.map((r) => r.statusCode).sort(), [200, 502], 'the POST that went to the dead target failed')
  t.equal(up1.hits, 5, 'and was not sent again elsewhere')
})

t.test('the retry happens once: a refused GET whose retry breaks too is a 502', async (t) => {
  const down = closedPort()
  const breaking = await startTarget(t)
  breaking.behave.reset = true
  const up = upstreamOf(t, { targets: [down, breaking.url] })
  const gw = await gatewayOf(t, up)
  const res = await gw.inject('/g')
  t.equal(res.statusCode, 502)
  t.equal(breaking.hits, 1, 'the retry went to the other target, and only once')
})

t.test('active health checks take a target out and bring it back', async (t) => {
  const [a, b] = await Promise.all([startTarget(t), startTarget(t)])
  const up = upstreamOf(t, { targets: [a.url, b.url], healthCheck: { unhealthyThreshold: 2, healthyThreshold: 1 } })
  a.behave.healthStatus = 503
  await up.checkHealth()
  for (let i = 0; i < 4; i++) await get(up)
  t.equal(a.hits, 2, 'one failed check is not enough')
  await up.checkHealth()
  for (let i = 0; i < 4; i++) await get(up)
  t.equal(a.hits, 2, 'two failed checks take it out')
  t.match(await up.readiness(), /^degraded \(.*out/, 'readiness names the target that is out')
  a.behave.healthStatus = 200
  await up.checkHealth()
  for (let i = 0; i < 4; i++) await get(up)
  t.equal(a.hits, 4, 'one passing check brings it back')
  t.match(await up.readiness(), /^ok \(/)
})

t.test('a target ejected for refusing connections is back at the first passing health check', async (t) => {
  const a = await startTarget(t)
  const b = await startTarget(t)
  const port = a.port
  await a.close()
  const now = 1_000_000
  const up = upstreamOf(t, { targets: [a.url, b.url], healthCheck: {}, outlier: { consecutiveFailures: 2 } }, { now: () => now })
  for (let i = 0; i < 4; i++) await get(up).catch(() => 0)
  const again = await startTarget(t, '127.0.0.1', port)
  for (let i = 0; i < 4; i++) t.equal(await get(up), 200)
  t.equal(again.hits, 0, 'ejected: no traffic though it listens again')
  await up.checkHealth()
  for (let i = 0; i < 4; i++) await get(up)
  t.equal(again.hits, 2, 'in rotation again before its 30 s ejection ended')
})

t.test('a target ejected because its connections were reset (a killed process) is back at the first passing health check', async (t) => {
  const a = await startTarget(t)
  const b = await startTarget(t)
  a.behave.reset = true // every exchange dies mid-way, as when the process is killed under load
  const now = 1_000_000
  const up = upstreamOf(t, { targets: [a.url, b.url], healthCheck: {}, outlier: { consecutiveFailures: 2 } }, { now: () => now })
  for (let i = 0; i < 4; i++) await get(up).catch(() => 0)
  a.behave.reset = false
  const hitsAtEjection = a.hits
  for (let i = 0; i < 4; i++) t.equal(await get(up), 200)
  t.equal(a.hits, hitsAtEjection, 'ejected: no traffic')
  await up.checkHealth()
  for (let i = 0; i < 4; i++) await get(up)
  t.equal(a.hits, hitsAtEjection + 2, 'in rotation again before its 30 s ejection ended')
})

t.test('DNS: a name is re-resolved, one pool per address, Host kept as the name', async (t) => {
  const a = await startTarget(t, '127.0.0.1')
  const b = await startTarget(t, '127.0.0.2', a.port)
  let answers = [{ address: '127.0.0.1', family: 4 }]
  const lookup: Lookup = async (host) => {
    if (host !== 'tasks.internal') throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' })
    return answers
  }
  const up = upstreamOf(t, { targets: [`http://tasks.internal:${a.port}`] }, { lookup })
  await up.refreshDns()
  for (let i = 0; i < 4; i++) t.equal(await get(up), 200)
  t.same([a.hits, b.hits], [4, 0])
  answers = [
    { address: '127.0.0.1', family: 4 },
    { address: '127.0.0.2', family: 4 },
  ]
  await up.refreshDns()
  for (let i = 0; i < 4; i++) t.equal(await get(up), 200)
  t.same([a.hits, b.hits], [6, 2], 'the new address takes its share')
  answers = [{ address: '127.0.0.2', family: 4 }]
  await up.refreshDns()
  for (let i = 0; i < 4; i++) t.equal(await get(up), 200)
  t.same([a.hits, b.hits], [6, 6], 'a vanished address gets nothing')
  t.same([...new Set([...a.hosts, ...b.hosts])], [`tasks.internal:${a.port}`], 'Host is the name, not the address')
  const failing: Lookup = async () => {
    throw Object.assign(new Error('timeout'), { code: 'EAI_AGAIN' })
  }
  const up2 = upstreamOf(t, { targets: [`http://tasks.internal:${a.port}`] }, { lookup: failing })
  await up2.refreshDns()
  t.equal(up2.members.length, 1, 'a failed lookup keeps what the target had')
})

t.test('TASK_SERVICE_URL with several targets: the gateway spreads, retries GETs past a dead one, and /ready lists each', async (t) => {
  const down = closedPort()
  const live = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: `${down}, ${live.url}` })
  const jwt = await token()
  const path = `/api/${subOf(jwt)}/tasks`
  for (let i = 0; i < 4; i++) t.equal((await gw.inject({ url: path, headers: { authorization: `Bearer ${jwt}` } })).statusCode, 200)
  t.equal(live.seen.length, 4, 'every GET reached the live target')
  const ready = await gw.admin.inject('/ready')
  t.equal(ready.statusCode, 200, 'an upstream never fails readiness')
  t.equal(ready.json().checks['task-service'], `degraded (${new URL(down).host} unavailable, ${new URL(live.url).host} ok)`)
  const metrics = (await gw.admin.inject('/metrics')).body
  t.match(metrics, new RegExp(`gateway_upstream_target_requests_total\\{upstream="tasks",target="${new URL(live.url).host}"[^}]*\\} 4\n`))
})

t.test('a service URL list must be http(s) URLs of one scheme', async (t) => {
  t.throws(() => gatewayConfig({ TASK_SERVICE_URL: 'http://127.0.0.1:1,ftp://x' }), /TASK_SERVICE_URL/)
  t.throws(() => gatewayConfig({ TASK_SERVICE_URL: 'http://127.0.0.1:1,,http://127.0.0.1:2' }), /TASK_SERVICE_URL/)
  t.throws(() => createUpstream({ name: 'tasks', targets: ['http://127.0.0.1:1', 'https://127.0.0.1:2'], connections: 1, connectTimeoutMs: 100, timeoutMs: 100 }), /mix/)
})
