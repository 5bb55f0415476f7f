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
import { BEFORE_TRACING, baseline } from '../lib/baseline.mjs'

export const TARGETS = { rpsRatio: 0.9, p99Ratio: 1.2, rssMB: 150, cpuRatio: 0.95, redisCpuRatio: 0.95, redisOpsPerRequest: 0.1, tracedCpuRatio: 1.05, untracedCpuRatio: 1.02, manyRoutesCpuRatio: 1.05 }

export const LABELS = {
  a: '(a) upstream direct',
  b: '(b) bare @fastify/http-proxy',
  c: '(c) Tollgate gateway, everything on',
  cr: '(c+redis) the same, counters in Redis (REDIS_URL)',
  c1k: '(c 1k routes) the same, 1,000 declared routes (generated file)',
  ct1: '(c+trace1%) the same, tracing on, sampling 1 % (OTLP/HTTP to a local sink)',
  ct100: '(c+trace100%) the same, tracing on, sampling 100 %',
  cb: `(c before tracing) the gateway at ${BEFORE_TRACING.ref}, ${BEFORE_TRACING.what}, everything else as (c)`,
}

/**
 * The order of the targets in a round (reversed every other round): (b) and (c before tracing) next to (c),
 * (c+trace1%) and (c 1k routes) one away.
 */
export const SLICE_ORDER = ['a', 'ct100', 'c1k', 'b', 'c', 'cb', 'ct1', 'cr']

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
  const started = [] // every proxy process, stopped at the end
  const redises = []
  let sink
  let many // the generated 1,000-route file, removed at the end
  let runs
  let targetOrder
  // Each proxy contender as cfg.instances processes started alike (see measureSideBySide): a figure that is
  // one process's luck would otherwise decide a 5 % target.
  const instances = async (start) => {
    const list = []
    for (let i = 0; i < cfg.instances; i++) {
      const s = await start()
      started.push(s.proc)
      list.push(s)
    }
    return list
  }
  // A process's own countOps and state (c+redis) go with it.
  const asTarget = (key, list) => ({
    key,
    label: LABELS[key],
    instances: list.map((s) => ({ url: s.url + user.tasksPath, pid: s.proc.pid, countOps: s.countOps, state: s.state })),
    otherPid: tasks.proc.pid,
  })
  try {
    // Every proxy stays up on CPU 1; only the one under load does any work.
    const gateway = (env) => () => startGateway({ tasksUrl: tasks.url, authUrl: auth.url, env: { REDIS_URL: undefined, ...env }, readyTimeoutMs: 60_000 })
    const targets = [
      { key: 'a', label: LABELS.a, url: tasks.url + user.tasksPath, pid: tasks.proc.pid },
      asTarget('b', await instances(() => startBareProxy({ upstreamUrl: tasks.url }))),
      // Memory mode even when the caller's environment names a Redis.
      asTarget('c', await instances(gateway({}))),
    ]
    // The same gateway with the route table grown to 1,000 entries: what a large file costs per request.
    many = routesFile(MANY_ROUTES)
    targets.push(asTarget('c1k', await instances(gateway({ GATEWAY_CONFIG: many.file }))))
    if (!missingRedis) {
      // Each instance its own private redis-server, so the commands counted in a slice are that instance's alone.
      const list = await instances(async () => {
        const r = await startRedis()
        redises.push(r)
        const gw = await gateway({ REDIS_URL: r.url })()
        const countOps = () => redisCommandCounts(r.port)
        await untilCountingInRedis(gw.url + user.tasksPath, user.headers, countOps)
        // Where the gateway counted (its readiness says): a Redis command that timed out sends it to memory.
        return Object.assign(gw, { countOps, state: () => countersBackend(gw.adminUrl) })
      })
      targets.push(asTarget('cr', list))
    }
    if (cfg.tracing) {
      const port = await freePort()
      sink = await startNode({ name: 'otlp-sink', args: [new URL('../lib/otlp-sink.mjs', import.meta.url).pathname], env: { PORT: String(port) }, cpu: CPU_LOAD, readyLine: 'listening' })
      const sinkUrl = `http://127.0.0.1:${port}`
      targets.push(asTarget('ct1', await instances(gateway(tracingEnv(sinkUrl, 0.01)))), asTarget('ct100', await instances(gateway(tracingEnv(sinkUrl, 1)))))
      // Tracing off against the gateway before tracing existed (issue 16: within 2 %), built from its commit.
      const { root, skipped: whyNot } = baseline(BEFORE_TRACING.ref, log)
      if (whyNot) {
        skipped.before = whyNot
        log(`skipped: ${whyNot}`)
      } else {
        const before = () => startGateway({ tasksUrl: tasks.url, authUrl: auth.url, env: { REDIS_URL: undefined }, root, waitReady: false, readyTimeoutMs: 60_000 })
        targets.push(asTarget('cb', await instances(before)))
      }
    }
    // (c) in the middle of each round, every contender compared with it next to it or one slice away: the
    // machine's speed swings within seconds, and a neighbouring slice shares most of (c)'s.
    targets.sort((x, y) => SLICE_ORDER.indexOf(x.key) - SLICE_ORDER.indexOf(y.key))
    targetOrder = targets.map((t) => t.key)
    for (const t of targets) for (const { url } of t.instances ?? [t]) await expectStatus(url, { headers: user.headers })
    log(`side by side with ${tools.join(' and ')}: ${cfg.instances} instance(s) of each proxy, ${cfg.firstWarmupS}s warm-up per instance with ${tools[0]}${tools.length > 1 ? ` and ${cfg.warmupS}s with ${tools.slice(1).join(', ')}` : ''}, then ${cfg.durationS}s each in ${cfg.rounds} rounds, each slice after ${cfg.sliceWarmupS}s of discarded load`)
    runs = await measureSideBySide(targets, { headers: user.headers, connections: cfg.connections, warmupS: cfg.warmupS, firstWarmupS: cfg.firstWarmupS, sliceWarmupS: cfg.sliceWarmupS, durationS: cfg.durationS, rounds: cfg.rounds, tools, log })
  } finally {
    await Promise.all(started.map((proc) => stop(proc)))
    await stop(sink?.proc)
    await Promise.all([stop(tasks.proc), stop(auth.proc), ...redises.map((r) => stop(r.proc))])
    many?.remove()
  }

  const byTool = {}
  const checks = []
  for (const tool of tools) {
    const { a, b, c, cr, c1k, ct1, ct100, cb } = runs[tool]
    const ratios = {
      rps_c_over_a: ratio(c.rps, a.rps),
      rps_c_over_b: ratio(c.rps, b.rps),
      p99_c_over_a: ratio(c.latencyMs.p99, a.latencyMs.p99),
      p99_c_over_b: ratio(c.latencyMs.p99, b.latencyMs.p99),
      // (b)'s CPU per request over (c)'s: the req/s ratio if each proxy had a whole core to itself.
      cpu_per_request_b_over_c: ratio(b.serverCpuUsPerRequest, c.serverCpuUsPerRequest),
      cpu_per_request_c_over_b: ratio(c.serverCpuUsPerRequest, b.serverCpuUsPerRequest),
      cpu_per_request_b_over_c_per_round: perRound(b, c),
      // Highest / lowest CPU per request among one target's processes: what the same build measures apart.
      cpu_per_request_c_instance_spread: spread(c),
      cpu_per_request_b_instance_spread: spread(b),
    }
    if (c1k) {
      Object.assign(ratios, {
        rps_1k_routes_over_c: ratio(c1k.rps, c.rps),
        p99_1k_routes_over_c: ratio(c1k.latencyMs.p99, c.latencyMs.p99),
        cpu_per_request_1k_routes_over_c: ratio(c1k.serverCpuUsPerRequest, c.serverCpuUsPerRequest),
        rss_max_mb_1k_routes_over_c: ratio(c1k.serverRssMB?.max, c.serverRssMB?.max),
      })
      checks.push(
        check(`1k-routes-cpu:${tool}`, `(c ${MANY_ROUTES} routes) CPU per request / (c) CPU per request, ${tool}`, `<= ${TARGETS.manyRoutesCpuRatio}`, ratios.cpu_per_request_1k_routes_over_c, ratios.cpu_per_request_1k_routes_over_c <= TARGETS.manyRoutesCpuRatio),
      )
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
    if (cb) {
      Object.assign(ratios, {
        cpu_per_request_c_over_before: ratio(c.serverCpuUsPerRequest, cb.serverCpuUsPerRequest),
        cpu_per_request_c_over_before_per_round: perRound(c, cb),
        rps_c_over_before: ratio(c.rps, cb.rps),
      })
      checks.push(
        check(`untraced-cpu:${tool}`, `(c) CPU per request, tracing off / the gateway before tracing (${BEFORE_TRACING.ref}), ${tool}`, `<= ${TARGETS.untracedCpuRatio}`, ratios.cpu_per_request_c_over_before, ratios.cpu_per_request_c_over_before <= TARGETS.untracedCpuRatio),
      )
      log(`${tool}: tracing off over before tracing (${BEFORE_TRACING.ref}), CPU/req ${ratios.cpu_per_request_c_over_before} (rounds ${ratios.cpu_per_request_c_over_before_per_round.join(', ')}), req/s ${ratios.rps_c_over_before}`)
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
      firstWarmupS: cfg.firstWarmupS,
      sliceWarmupS: cfg.sliceWarmupS,
      durationS: cfg.durationS,
      rounds: cfg.rounds,
      instances: cfg.instances,
      order: targetOrder,
      tools,
      path: 'GET /api/:user/tasks (5 tasks, ~1 KB)',
      wrk: tools.includes('wrk') ? '1 thread, keep-alive, Lua script for the headers (bench/lib/wrk-load.lua)' : undefined,
      redis: missingRedis ? undefined : 'private redis-server on a free 127.0.0.1 port, CPU 0, no persistence',
      tracing: cfg.tracing ? 'OTLP/HTTP JSON to bench/lib/otlp-sink.mjs on CPU 0; parentbased_traceidratio 0.01 and 1.0; batch span processor defaults' : undefined,
      before: cfg.tracing && !skipped.before ? `${BEFORE_TRACING.ref} (${BEFORE_TRACING.what}), exported with git archive, npm ci, npm run build (bench/lib/baseline.mjs)` : undefined,
    },
    skipped,
    byTool,
    checks,
  }
}

function spread(x) {
  const figures = (x.cpuUsPerRequestByInstance ?? []).filter((v) => v !== null)
  return figures.length > 1 ? round(Math.max(...figures) / Math.min(...figures), 3) : null
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
