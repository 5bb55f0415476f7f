/**
 * Issue items 1-2: the task list (a) straight from the plain upstream, (b)
 * through a bare @fastify/http-proxy, (c) through the gateway with everything
 * on, under the same load, and the targets for (c).
 */
import { startBareProxy, startGateway, startUpstream } from '../lib/stack.mjs'
import { stop } from '../lib/procs.mjs'
import { benchUser, check, expectStatus, measureSideBySide, ratio } from '../lib/scenario.mjs'

export const TARGETS = { rpsRatio: 0.9, p99Ratio: 1.2, rssMB: 150 }

export async function throughput(cfg, log) {
  const user = await benchUser()
  const tasks = await startUpstream({ name: 'tasks-upstream' })
  const auth = await startUpstream({ name: 'auth-upstream' })
  let bare
  let gw
  let runs
  try {
    // Both proxies stay up on CPU 1; only the one under load does any work.
    bare = await startBareProxy({ upstreamUrl: tasks.url })
    gw = await startGateway({ tasksUrl: tasks.url, authUrl: auth.url })
    const targets = [
      { key: 'a', label: '(a) upstream direct', url: tasks.url + user.tasksPath, pid: tasks.proc.pid },
      { key: 'b', label: '(b) bare @fastify/http-proxy', url: bare.url + user.tasksPath, pid: bare.proc.pid, otherPid: tasks.proc.pid },
      { key: 'c', label: '(c) Tollgate gateway, everything on', url: gw.url + user.tasksPath, pid: gw.proc.pid, otherPid: tasks.proc.pid },
    ]
    for (const t of targets) await expectStatus(t.url, { headers: user.headers })
    log(`side by side: ${cfg.warmupS}s warm-up each, then ${cfg.durationS}s each in ${cfg.rounds} rounds`)
    runs = await measureSideBySide(targets, { headers: user.headers, connections: cfg.connections, warmupS: cfg.warmupS, durationS: cfg.durationS, rounds: cfg.rounds, log })
  } finally {
    await Promise.all([stop(gw?.proc), stop(bare?.proc)])
    await Promise.all([stop(tasks.proc), stop(auth.proc)])
  }

  const { a, b, c } = runs
  const ratios = {
    rps_c_over_a: ratio(c.rps, a.rps),
    rps_c_over_b: ratio(c.rps, b.rps),
    p99_c_over_a: ratio(c.latencyMs.p99, a.latencyMs.p99),
    p99_c_over_b: ratio(c.latencyMs.p99, b.latencyMs.p99),
    // Informational: (b)'s CPU per request over (c)'s, the req/s ratio if both had a whole core.
    cpu_per_request_b_over_c: ratio(b.serverCpuUsPerRequest, c.serverCpuUsPerRequest),
  }
  const bad = c.non2xx + c.errors + c.timeouts
  const checks = [
    check('c-rps', '(c) requests/s vs (b)', `>= ${TARGETS.rpsRatio} x (b)`, ratios.rps_c_over_b, ratios.rps_c_over_b >= TARGETS.rpsRatio),
    check('c-p99', '(c) p99 vs (b)', `<= ${TARGETS.p99Ratio} x (b)`, ratios.p99_c_over_b, ratios.p99_c_over_b <= TARGETS.p99Ratio),
    check('c-non2xx', '(c) non-2xx, errors, timeouts', '0', bad, bad === 0),
    check('c-rss', '(c) gateway RSS at load (max)', `< ${TARGETS.rssMB} MB`, c.serverRssMB?.max, c.serverRssMB?.max < TARGETS.rssMB),
  ]
  log(`ratios: req/s c/a ${ratios.rps_c_over_a}, c/b ${ratios.rps_c_over_b}; p99 c/b ${ratios.p99_c_over_b}`)
  return {
    measuredAt: new Date().toISOString(),
    load: { connections: cfg.connections, warmupS: cfg.warmupS, durationS: cfg.durationS, rounds: cfg.rounds, path: 'GET /api/:user/tasks (5 tasks, ~1 KB)' },
    runs,
    ratios,
    checks,
  }
}
