/**
 * The admin listener (ADMIN_HOST:ADMIN_PORT, loopback by default, never
 * public) serves GET /ready with detail and GET /metrics; the public listener
 * keeps GET /health only (and /docs, which DOCS_ENABLED switches off).
 */
import t from 'tap'
import { createClock } from '@sinonjs/fake-timers'
import { writeFileSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildGateway, gatewayConfig, startUpstream, tempDir } from './helper.js'
import { spawnGateway } from './gateway-process.js'
import { bundledGatewayFile } from '../src/config.js'
import { loadGatewayFile } from '../src/gateway-config/load.js'
import { gatewayVariables } from '../src/gateway-config/variables.js'

const NOT_FOUND = { detail: 'Route not found', error_code: 'NOT_FOUND', status_code: 404 }

t.test('public listener: /health only; /ready and /metrics are 404 in the envelope there', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: up.url, TASK_SERVICE_URL: up.url })
  t.same((await gw.inject({ url: '/health' })).json(), { status: 'ok' })
  for (const url of ['/ready', '/metrics', '/metrics?x=1']) {
    for (const method of ['GET', 'HEAD'] as const) {
      const res = await gw.inject({ method, url })
      t.equal(res.statusCode, 404, `${method} ${url} on the public listener`)
      if (method === 'GET') t.same(res.json(), NOT_FOUND)
    }
  }
  t.equal(up.seen.length, 0, 'nothing was proxied')
})

t.test('admin listener: /ready with every check, /metrics in Prometheus text, no API routes', async (t) => {
  const up = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: up.url, TASK_SERVICE_URL: up.url })
  await gw.inject({ url: '/nowhere' })
  const ready = await gw.admin.inject({ url: '/ready' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'ready', checks: { 'auth-service': 'ok', 'task-service': 'ok', revocations: 'ok', 'rate-limit-counters': 'memory' } })
  const metrics = await gw.admin.inject({ url: '/metrics' })
  t.equal(metrics.statusCode, 200)
  t.match(metrics.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.match(metrics.body, /http_requests_total\{method="GET",route="unmatched",status="404",service="gateway"\} 1/, 'the public listener’s traffic')
  t.notMatch(metrics.body, /route="\/metrics"|route="\/ready"/, 'scrapes and probes are not counted as public traffic')
  t.equal((await gw.admin.inject({ url: '/health' })).statusCode, 200, '/health answers there too')
  const api = await gw.admin.inject({ url: '/api/auth/me' })
  t.equal(api.statusCode, 404, 'no API route on the admin listener')
  t.same(api.json(), NOT_FOUND)
  t.ok(api.headers['x-request-id'], 'request ids there too')
})

t.test('admin /ready: 503 with the failing check named', async (t) => {
  const clock = createClock(Date.now())
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: 'http://127.0.0.1:1', REVOCATION_MAX_STALENESS_MS: 500 }, { now: () => clock.now })
  clock.tick(600) // past the staleness bound, by the gateway's clock
  const ready = await gw.admin.inject({ url: '/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json(), { error_code: 'SERVICE_UNAVAILABLE', status_code: 503, checks: { revocations: 'unavailable', 'auth-service': 'unavailable' } })
})

t.test('DOCS_ENABLED: on by default, off by default with NODE_ENV=production, switchable both ways', async (t) => {
  const docsStatus = async (overrides: Record<string, unknown>) => {
    const up = await startUpstream(t)
    const gw = await buildGateway(t, { AUTH_SERVICE_URL: up.url, TASK_SERVICE_URL: up.url, ...overrides })
    const json = await gw.inject({ url: '/docs/json' })
    const ui = await gw.inject({ url: '/docs' })
    return { json: json.statusCode, ui: ui.statusCode, body: json.json() }
  }
  t.match(await docsStatus({}), { json: 200 }, 'development: on')
  const off = await docsStatus({ DOCS_ENABLED: false })
  t.match(off, { json: 404, ui: 404 }, 'DOCS_ENABLED=false: off')
  t.same(off.body, NOT_FOUND, 'in the envelope')
  t.match(await docsStatus({ NODE_ENV: 'production' }), { json: 404, ui: 404 }, 'production: off by default')
  t.match(await docsStatus({ NODE_ENV: 'production', DOCS_ENABLED: true }), { json: 200 }, 'production with DOCS_ENABLED=true: on')
  t.equal(gatewayConfig({ DOCS_ENABLED: 'false' as never }).DOCS_ENABLED, false, 'the variable is read as a boolean')
})

t.test('ADMIN_HOST defaults to loopback and ADMIN_PORT to 9000; the file may declare the admin listener', async (t) => {
  const config = gatewayConfig()
  t.equal(config.ADMIN_HOST, '127.0.0.1')
  t.equal(config.ADMIN_PORT, 9000)
  const bundled = loadGatewayFile(bundledGatewayFile, gatewayVariables(gatewayConfig({ ADMIN_PORT: 9123 }), {}))
  t.same(bundled.listeners.admin, { host: '127.0.0.1', port: 9123 }, 'the bundled file reads ADMIN_HOST / ADMIN_PORT')
  const dir = tempDir(t, 'tollgate-admin-')
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, readFileSync(bundledGatewayFile, 'utf8').replace('admin: { host: "${ADMIN_HOST}", port: "${ADMIN_PORT}" }', 'admin: { host: "10.0.0.7", port: 9100, public: true }'))
  t.throws(() => loadGatewayFile(file, gatewayVariables(gatewayConfig(), {})), /listeners\.admin/, 'unknown keys are refused')
  writeFileSync(file, readFileSync(bundledGatewayFile, 'utf8').replace('admin: { host: "${ADMIN_HOST}", port: "${ADMIN_PORT}" }', 'admin: { host: "10.0.0.7", port: 9100 }'))
  t.same(loadGatewayFile(file, gatewayVariables(gatewayConfig(), {})).listeners.admin, { host: '10.0.0.7', port: 9100 })
})

t.test('a real gateway process: /ready and /metrics on ADMIN_PORT only', async (t) => {
  const up = await startUpstream(t)
  const gw = await spawnGateway(t, { AUTH_SERVICE_URL: up.url, TASK_SERVICE_URL: up.url })
  const admin = gw.adminUrl
  const pub = gw.url
  t.equal((await fetch(`${admin}/ready`)).status, 200, 'admin /ready')
  t.equal((await fetch(`${pub}/health`)).status, 200, 'public /health')
  const publicReady = await fetch(`${pub}/ready`)
  t.equal(publicReady.status, 404, 'public /ready')
  t.same(await publicReady.json(), NOT_FOUND)
  t.equal((await fetch(`${pub}/metrics`)).status, 404, 'public /metrics')
  await fetch(`${pub}/health`)
  const metrics = await (await fetch(`${admin}/metrics`)).text()
  t.match(metrics, /^# HELP /m, 'admin /metrics: Prometheus text')
  t.match(metrics, /http_requests_total\{method="GET",route="\/health",status="200",service="gateway"\} 2/, 'counts the public listener’s requests')
})
