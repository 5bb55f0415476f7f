/**
 * infra/observability/grafana-dashboard.json asks only for metrics that
 * exist: every metric name in its PromQL is found in a scrape of a running
 * cluster (the real launcher: gateway admin listener, auth-service and
 * task-service /metrics) after some traffic, and the series the traffic made
 * are there with samples.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { call, repoRoot, serviceUrls, startCluster } from '../../test/e2e/cluster.js'

interface Panel {
  type: string
  title: string
  targets?: Array<{ expr: string }>
}

const dashboard = JSON.parse(readFileSync(`${repoRoot}infra/observability/grafana-dashboard.json`, 'utf8')) as { panels: Panel[]; templating: { list: Array<{ query?: unknown }> } }

const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan'])

/** Metric names in a PromQL expression: identifiers outside strings, label matchers, ranges and grouping clauses, not called as functions. */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  const names: string[] = []
  for (const m of bare.matchAll(/(?<![\w:.])[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const rest = bare.slice(m.index! + m[0].length)
    if (/^\s*\(/.test(rest) || PROMQL_WORDS.has(m[0].toLowerCase())) continue
    names.push(m[0])
  }
  return names
}

/** The metric families of a Prometheus text scrape: TYPE lines (histogram samples are <name>_bucket/_sum/_count). */
function families(text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, m[2]!)
  return out
}

function declared(name: string, fams: Map<string, string>): boolean {
  if (fams.has(name)) return true
  const base = name.replace(/_(bucket|sum|count)$/, '')
  return base !== name && fams.get(base) === 'histogram'
}

const hasSample = (text: string, name: string) => new RegExp(`^${name}(\\{[^}]*\\})? `, 'm').test(text)

t.test('the names the extractor finds', async (t) => {
  t.same(metricNames('histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{service="gateway", x=~"a|b"}[$__rate_interval])))'), ['http_request_duration_seconds_bucket'])
  t.same(metricNames('sum(rate(a_total[5m])) / on (x) group_left b_total offset 5m'), ['a_total', 'b_total'])
})

t.test('every metric the dashboard queries is exported by a running cluster', async (t) => {
  const panels = dashboard.panels.filter((p) => p.type !== 'row')
  t.ok(panels.length >= 12, `${panels.length} panels`)
  const ids = dashboard.panels.map((p) => (p as unknown as { id: number }).id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  const exprs = panels.flatMap((p) => (p.targets ?? []).map((x) => x.expr))
  t.ok(panels.every((p) => (p.targets ?? []).length > 0), 'every panel queries something')
  for (const want of ['http_requests_total', 'http_request_duration_seconds_bucket', 'http_error_responses_total', 'gateway_auth_failures_total', 'gateway_rate_limit_rejections_total', 'gateway_upstream_errors_total', 'gateway_revocation_staleness_seconds', 'gateway_upstream_pool_connections', 'db_pool_connections', 'gateway_upstream_duration_seconds_bucket']) {
    t.ok(exprs.some((e) => metricNames(e).includes(want)), `a panel shows ${want}`)
  }
  const names = [...new Set(exprs.flatMap(metricNames))].sort()

  const cluster = await startCluster(t, { DATABASE_URL: process.env.TEST_DATABASE_URL!, LOG_LEVEL: 'info', RATE_LIMIT_USER_MAX: '5' })
  const { auth, tasks } = serviceUrls(cluster.output())
  const gw = cluster.url
  // Traffic: a user's flow, a wrong password, a bad token, a user over the limit.
  const email = `dash-${randomUUID()}@example.com`
  const password = 'SecurePass123!'
  const user = (await call(gw, 'POST', '/api/auth/signup', { email, password })).json
  t.equal((await call(gw, 'POST', '/api/auth/signin', { email, password: 'WrongPass123!' })).status, 401)
  const token = (await call(gw, 'POST', '/api/auth/signin', { email, password })).json.token
  t.equal((await call(gw, 'GET', `/api/${user.id}/tasks`, undefined, 'not.a.token')).status, 401)
  const statuses: number[] = []
  for (let i = 0; i < 7; i++) statuses.push((await call(gw, 'GET', `/api/${user.id}/tasks`, undefined, token)).status)
  t.ok(statuses.includes(200) && statuses.includes(429), `answers ${statuses.join(' ')}`)

  const scrape = async (url: string) => {
    const res = await fetch(`${url}/metrics`)
    t.equal(res.status, 200, `${url}/metrics`)
    return res.text()
  }
  const gatewayText = await scrape(cluster.adminUrl)
  t.equal((await fetch(`${gw}/metrics`)).status, 404, 'not on the public listener')
  const servicesText = [await scrape(auth), await scrape(tasks)].join('\n')
  const gatewayFams = families(gatewayText)
  const serviceFams = families(servicesText)
  for (const name of names) {
    t.ok(declared(name, gatewayFams) || declared(name, serviceFams), `${name} is exported`)
  }
  for (const name of ['http_requests_total', 'http_request_duration_seconds_bucket', 'http_error_responses_total', 'gateway_auth_failures_total', 'gateway_rate_limit_rejections_total', 'gateway_upstream_duration_seconds_bucket', 'gateway_upstream_pool_connections', 'gateway_revocation_staleness_seconds', 'gateway_rate_limit_backend', 'gateway_upstream_target_requests_total']) {
    t.ok(hasSample(gatewayText, name), `${name} has samples after the traffic`)
  }
  t.ok(hasSample(servicesText, 'db_pool_connections'), 'db_pool_connections has samples at the services')
  t.match(gatewayText, /http_error_responses_total\{[^}]*status="401",code="INVALID_CREDENTIALS"[^}]*\} 1/, 'errors by code')
  t.match(gatewayText, /gateway_rate_limit_rejections_total\{[^}]*policy="user"[^}]*\} [1-9]/, 'rejections by policy')
})
