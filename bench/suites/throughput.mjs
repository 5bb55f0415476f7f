/**
 * The task list (a) straight from the plain upstream, (b) through a bare
 * @fastify/http-proxy, (c) through the gateway with everything on, and
 * (c+redis) the same gateway with its rate-limit counters in a private
 * redis-server (REDIS_URL), under the same load from each tool (autocannon
 * in this process, wrk as its own process), and the targets for (c).
 * CPU per request is user + sys of the whole server process over its slices
 * (what an outside harness pinning each proxy to a core measures), so two
 * load tools with different costs of their own can agree on it.
 */
import { CPU_LOAD, startBareProxy, startGateway, startUpstream } from '../lib/stack.mjs'
import { freePort, startNode, stop } from '../lib/procs.mjs'
import { redisCommandCounts, redisMissing, startRedis } from '../lib/redis.mjs'
import { wrkMissing } from '../lib/wrk.mjs'
import { benchUser, check, expectStatus, measureSideBySide, ratio } from '../lib/scenario.mjs'
import { round } from '../lib/proc-stats.mjs'
import { routesFile } from '../lib/routes-file.mjs'

export const TARGETS = { rpsRatio: 0.9, p99Ratio: 1.2, rssMB: 150, cpuRatio: 0.95, redisCpuRatio: 0.95, redisOpsPerRequest: 0.1, tracedCpuRatio: 1.05 }

export const LABELS = {
  a: '(a) upstream direct',
  b: '(b) bare @fastify/http-proxy',
  c: '(c) Tollgate gateway, everything on',
  cr: '(c+redis) the same, counters in Redis (REDIS_URL)',
  c1k: '(c 1k routes) the same, 1,000 declared routes (generated file)',
  ct1: '(c+trace1%) the same, tracing on, sampling 1 % (OTLP/HTTP to a local sink)',
  ct100: '(c+trace100%) the same, tracing on, sampling 100 %',
}

/** Declared routes of the (c 1k routes) row's generated file (issue 15 item 8). */
export const MANY_ROUTES = 1000

/** The gateway's OpenTelemetry settings for a sampling ratio, exporting to `sinkUrl`. */
const tracingEnv = (sinkUrl, ratio) => ({
  OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl,
  OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
  OTEL_TRACES_SAMPLER_ARG: String(ratio),
})

export async function throughput(cfg, log) {
  const skipped = {}
  const missingWrk = cfg.tools.includes('wrk') ? wrkMissing() : null
  if (missingWrk) skipped.wrk = `${missingWrk}: its rows are left out`
  const tools = cfg.tools.filter((t) => t !== 'wrk' || !missingWrk)
  if (!tools.length) throw new Error(missingWrk)
  const missingRedis = redisMissing()
  if (missingRedis) skipped.redis = missingRedis
  for (const why of Object.values(skipped)) log(`skipped: ${why}`)

  const user = await benchUser()
  const tasks = await startUpstream({ name: 'tasks-upstream' })
  const auth = await startUpstream({ name: 'auth-upstream' })
  let bare
  let gw
  let redis
  let gwRedis
  let gwMany
  let sink
  let traced1
  let traced100
  let runs
  try {
    // Every proxy stays up on CPU 1; only the one under load does any work.
    bare = await startBareProxy({ upstreamUrl: tasks.url })
    // Memory mode even when the caller's environment names a Redis.
    gw = await startGateway({ tasksUrl: tasks.url, authUrl: auth.url, env: { REDIS_URL: undefined } })
    const targets = [
      { key: 'a', label: LABELS.a, url: tasks.url + user.tasksPath, pid: tasks.proc.pid },
      { key: 'b', label: LABELS.b, url: bare.url + user.tasksPath, pid: bare.proc.pid, otherPid: tasks.proc.pid },
      { key: 'c', label: LABELS.c, url: gw.url + user.tasksPath, pid: gw.proc.pid, otherPid: tasks.proc.pid },
    ]
    // The same gateway with the route table grown to 1,000 entries: what a large file costs per request.
    const many = routesFile(MANY_ROUTES)
    gwMany = await startGateway({ tasksUrl: tasks.url, authUrl: auth.url, env: { REDIS_URL: undefined, GATEWAY_CONFIG: many.file }, readyTimeoutMs: 60_000 })
    targets.push({ key: 'c1k', label: LABELS.c1k, url: gwMany.url + user.tasksPath, pid: gwMany.proc.pid, otherPid: tasks.proc.pid })
    if (!missingRedis) {
      redis = await startRedis()
      gwRedis = await startGateway({ tasksUrl: tasks.url, authUrl: auth.url, env: { REDIS_URL: redis.url } })
      const countOps = () => redisCommandCounts(redis.port)
      // Where the gateway counted (its readiness says): a Redis command that timed out sends it to memory.
      const state = () => countersBackend(gwRedis.adminUrl)
      await untilCountingInRedis(gwRedis.url + user.tasksPath, user.headers, countOps)
      targets.push({ key: 'cr', label: LABELS.cr, url: gwRedis.url + user.tasksPath, pid: gwRedis.proc.pid, otherPid: tasks.proc.pid, countOps, state })
    }
    if (cfg.tracing) {
      const port = await freePort()
      sink = await startNode({ name: 'otlp-sink', args: [new URL('../lib/otlp-sink.mjs', import.meta.url).pathname], env: { PORT: String(port) }, cpu: CPU_LOAD, readyLine: 'listening' })
      const sinkUrl = `http://127.0.0.1:${port}`
      traced1 = await startGateway({ tasksUrl: tasks.url, authUrl: auth.url, env: { REDIS_URL: undefined, ...tracingEnv(sinkUrl, 0.01) } })
      traced100 = await startGateway({ tasksUrl: tasks.url, authUrl: auth.url, env: { REDIS_URL: undefined, ...tracingEnv(sinkUrl, 1) } })
      targets.push(
        { key: 'ct1', label: LABELS.ct1, url: traced1.url + user.tasksPath, pid: traced1.proc.pid, otherPid: tasks.proc.pid },
        { key: 'ct100', label: LABELS.ct100, url: traced100.url + user.tasksPath, pid: traced100.proc.pid, otherPid: tasks.proc.pid },
      )
    }
    for (const t of targets) await expectStatus(t.url, { headers: user.headers })
    log(`side by side with ${tools.join(' and ')}: ${cfg.warmupS}s warm-up per target and tool, then ${cfg.durationS}s each in ${cfg.rounds} rounds`)
    runs = await measureSideBySide(targets, { headers: user.headers, connections: cfg.connections, warmupS: cfg.warmupS, durationS: cfg.durationS, rounds: cfg.rounds, tools, log })
  } finally {
    await Promise.all([stop(gw?.proc), stop(gwRedis?.proc), stop(gwMany?.proc), stop(bare?.proc), stop(traced1?.proc), stop(traced100?.proc)])
    await stop(sink?.proc)
    await Promise.all([stop(tasks.proc), stop(auth.proc), stop(redis?.proc)])
  }

  const byTool = {}
  const checks = []
  for (const tool of tools) {
    const { a, b, c, cr, c1k, ct1, ct100 } = runs[tool]
    const ratios = {
      rps_c_over_a: ratio(c.rps, a.rps),
      rps_c_over_b: ratio(c.rps, b.rps),
      p99_c_over_a: ratio(c.latencyMs.p99, a.latencyMs.p99),
      p99_c_over_b: ratio(c.latencyMs.p99, b.latencyMs.p99),
      // (b)'s CPU per request over (c)'s: the req/s ratio if each proxy had a whole core to itself.
      cpu_per_request_b_over_c: ratio(b.serverCpuUsPerRequest, c.serverCpuUsPerRequest),
      cpu_per_request_c_over_b: ratio(c.serverCpuUsPerRequest, b.serverCpuUsPerRequest),
      cpu_per_request_b_over_c_per_round: perRound(b, c),
    }
    if (c1k) {
      Object.assign(ratios, {
        rps_1k_routes_over_c: ratio(c1k.rps, c.rps),
        p99_1k_routes_over_c: ratio(c1k.latencyMs.p99, c.latencyMs.p99),
        cpu_per_request_1k_routes_over_c: ratio(c1k.serverCpuUsPerRequest, c.serverCpuUsPerRequest),
        rss_max_mb_1k_routes_over_c: ratio(c1k.serverRssMB?.max, c.serverRssMB?.max),
      })
    }
    if (cr) {
      Object.assign(ratios, {
        rps_redis_over_memory: ratio(cr.rps, c.rps),
        cpu_per_request_memory_over_redis: ratio(c.serverCpuUsPerRequest, cr.serverCpuUsPerRequest),
        cpu_per_request_memory_over_redis_per_round: perRound(c, cr),
        redis_ops_per_request: cr.opsPerRequest,
      })
    }
    if (ct1 && ct100) {
      Object.assign(ratios, {
        cpu_per_request_trace1_over_c: ratio(ct1.serverCpuUsPerRequest, c.serverCpuUsPerRequest),
        cpu_per_request_trace100_over_c: ratio(ct100.serverCpuUsPerRequest, c.serverCpuUsPerRequest),
        rps_trace1_over_c: ratio(ct1.rps, c.rps),
        rps_trace100_over_c: ratio(ct100.rps, c.rps),
        p99_trace1_over_c: ratio(ct1.latencyMs.p99, c.latencyMs.p99),
        p99_trace100_over_c: ratio(ct100.latencyMs.p99, c.latencyMs.p99),
      })
      checks.push(
        check(`trace1-cpu:${tool}`, `(c+trace1%) CPU per request / (c) CPU per request, ${tool}`, `<= ${TARGETS.tracedCpuRatio}`, ratios.cpu_per_request_trace1_over_c, ratios.cpu_per_request_trace1_over_c <= TARGETS.tracedCpuRatio),
      )
      log(`${tool}: tracing, CPU/req over (c): 1 % ${ratios.cpu_per_request_trace1_over_c}, 100 % ${ratios.cpu_per_request_trace100_over_c}; req/s over (c): 1 % ${ratios.rps_trace1_over_c}, 100 % ${ratios.rps_trace100_over_c}`)
    }
    byTool[tool] = { runs: runs[tool], ratios }
    const on = `, ${tool}`
    checks.push(
      check(`c-rps:${tool}`, `(c) requests/s vs (b)${on}`, `>= ${TARGETS.rpsRatio} x (b)`, ratios.rps_c_over_b, ratios.rps_c_over_b >= TARGETS.rpsRatio),
      check(`c-p99:${tool}`, `(c) p99 vs (b)${on}`, `<= ${TARGETS.p99Ratio} x (b)`, ratios.p99_c_over_b, ratios.p99_c_over_b <= TARGETS.p99Ratio),
      check(`c-cpu:${tool}`, `(b) CPU per request / (c) CPU per request${on}`, `>= ${TARGETS.cpuRatio}`, ratios.cpu_per_request_b_over_c, ratios.cpu_per_request_b_over_c >= TARGETS.cpuRatio),
    )
    if (cr) {
      const inMemory = cr.slices.filter((x) => x.state !== 'redis' || !x.ops).map((x) => x.round)
      checks.push(
        check(`redis-mode:${tool}`, `(c+redis) counted in Redis through every slice (rounds that ended elsewhere)${on}`, 'none', inMemory.join(', ') || 'none', !inMemory.length),
        check(`redis-cpu:${tool}`, `(c) CPU per request, memory / Redis counters${on}`, `>= ${TARGETS.redisCpuRatio}`, ratios.cpu_per_request_memory_over_redis, ratios.cpu_per_request_memory_over_redis >= TARGETS.redisCpuRatio),
        check(`redis-ops:${tool}`, `(c+redis) Redis commands per protected request${on}`, `< ${TARGETS.redisOpsPerRequest}`, cr.opsPerRequest, cr.opsPerRequest < TARGETS.redisOpsPerRequest),
      )
    }
    log(`${tool}: req/s c/b ${ratios.rps_c_over_b}; p99 c/b ${ratios.p99_c_over_b}; CPU/req b/c ${ratios.cpu_per_request_b_over_c} (rounds ${ratios.cpu_per_request_b_over_c_per_round.join(', ')})${cr ? `; Redis: CPU/req memory/redis ${ratios.cpu_per_request_memory_over_redis}, ${cr.opsPerRequest} ops/req` : ''}${c1k ? `; ${MANY_ROUTES} routes/bundled: req/s ${ratios.rps_1k_routes_over_c}, CPU/req ${ratios.cpu_per_request_1k_routes_over_c}, RSS ${ratios.rss_max_mb_1k_routes_over_c}` : ''}`)
  }
  const gateways = tools.flatMap((tool) => [runs[tool].c, runs[tool].cr, runs[tool].c1k].filter(Boolean))
  const bad = gateways.reduce((sum, x) => sum + x.non2xx + x.errors + x.timeouts, 0)
  // The RSS target is the bundled file's; the 1,000-route row's RSS is reported beside it (ratios).
  const rssMax = Math.max(...gateways.filter((x) => !tools.some((tool) => runs[tool].c1k === x)).map((x) => x.serverRssMB?.max ?? 0))
  checks.push(
    check('c-non2xx', '(c) non-2xx, errors, timeouts (every tool and counter mode)', '0', bad, bad === 0),
    check('c-rss', '(c) gateway RSS at load (max)', `< ${TARGETS.rssMB} MB`, rssMax, rssMax < TARGETS.rssMB),
  )
  return {
    measuredAt: new Date().toISOString(),
    load: {
      connections: cfg.connections,
      warmupS: cfg.warmupS,
      durationS: cfg.durationS,
      rounds: cfg.rounds,
      tools,
      path: 'GET /api/:user/tasks (5 tasks, ~1 KB)',
      wrk: tools.includes('wrk') ? '1 thread, keep-alive, Lua script for the headers (bench/lib/wrk-load.lua)' : undefined,
      redis: missingRedis ? undefined : 'private redis-server on a free 127.0.0.1 port, CPU 0, no persistence',
      tracing: cfg.tracing ? 'OTLP/HTTP JSON to bench/lib/otlp-sink.mjs on CPU 0; parentbased_traceidratio 0.01 and 1.0; batch span processor defaults' : undefined,
    },
    skipped,
    byTool,
    checks,
  }
}

/** Per round: (x's CPU per request) / (y's), from the slices the two took in the same round. */
function perRound(x, y) {
  return x.slices.map((s, i) => {
    const other = y.slices[i]
    return s.cpuUsPerRequest && other?.cpuUsPerRequest ? round(s.cpuUsPerRequest / other.cpuUsPerRequest, 3) : null
  })
}

/**
 * The gateway connects to Redis in the background and counts in memory until
 * then: measure only once one request has reached Redis, at once or with the next batched sync (bounded).
 */
async function untilCountingInRedis(url, headers, countOps) {
  const total = async () => Object.values(await countOps()).reduce((x, y) => x + y, 0)
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    const before = await total()
    await expectStatus(url, { headers })
    // Batched policies reach Redis at their next sync (RATE_LIMIT_SYNC_MS), not within the request.
    for (let i = 0; i < 10; i++) {
      if ((await total()) > before) return
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  throw new Error('the gateway started with REDIS_URL made no Redis command for a request within 10 s')
}

/** The gateway's `rate-limit-counters` readiness entry: redis, memory or memory-fallback. */
async function countersBackend(adminUrl) {
  try {
    const res = await fetch(`${adminUrl}/ready`, { signal: AbortSignal.timeout(5000) })
    return (await res.json()).checks?.['rate-limit-counters'] ?? 'unknown'
  } catch (err) {
    return `unknown (${err.message})`
  }
}
