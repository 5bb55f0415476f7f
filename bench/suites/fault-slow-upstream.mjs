/**
 * Fault (ii): the task upstream answers after 2 s while the gateway's
 * UPSTREAM_TIMEOUT_MS is 500: every answer must be a 504 at about 500 ms,
 * and nothing may pile up (open fds and RSS before vs after).
 */
import { startGateway, startUpstream } from '../lib/stack.mjs'
import { sleep, stop } from '../lib/procs.mjs'
import { countOf, runLoad } from '../lib/load.mjs'
import { round, sampler } from '../lib/proc-stats.mjs'
import { backNear, footprint, pct, signed } from '../lib/footprint.mjs'
import { benchUser, check, expectStatus, waitQuiet } from '../lib/scenario.mjs'

const DELAY_MS = 2000
const TIMEOUT_MS = 500
const TOLERANCE_MS = 100
const CLOCK_MS = 1

export async function slowUpstream(cfg, log) {
  const user = await benchUser()
  const tasks = await startUpstream({ name: 'slow-tasks-upstream', delayMs: DELAY_MS })
  const auth = await startUpstream({ name: 'auth-upstream' })
  let gw
  let run
  let baseline
  let after
  let samples
  let secondAfter
  try {
    gw = await startGateway({ tasksUrl: tasks.url, authUrl: auth.url, env: { UPSTREAM_TIMEOUT_MS: String(TIMEOUT_MS) } })
    const url = gw.url + user.tasksPath
    const ports = { listenPort: gw.port, upstreamPorts: { tasks: tasks.port, auth: auth.port } }
    await expectStatus(url, { headers: user.headers, status: 504 })
    await waitQuiet(log)
    // Baseline after the same load once, so JIT, heap and pools are warm on both sides of the comparison.
    await runLoad({ url, headers: user.headers, connections: cfg.connections, durationS: cfg.faultS, timeoutS: 5 })
    await sleep(5000)
    baseline = footprint(gw.proc.pid, ports)
    log(`  (ii) upstream answers after ${DELAY_MS} ms, UPSTREAM_TIMEOUT_MS=${TIMEOUT_MS}: ${cfg.faultS}s at ${cfg.connections} conns; baseline ${baseline.rssMB} MB, ${baseline.fds} fds`)
    const watch = sampler(gw.proc.pid, 500)
    run = await runLoad({ url, headers: user.headers, connections: cfg.connections, durationS: cfg.faultS, timeoutS: 5 })
    samples = watch.stop()
    await sleep(5000)
    after = footprint(gw.proc.pid, ports)
    // The same run again: whatever piles up per run shows as growth from one "after" to the next.
    await runLoad({ url, headers: user.headers, connections: cfg.connections, durationS: cfg.faultS, timeoutS: 5 })
    await sleep(5000)
    secondAfter = footprint(gw.proc.pid, ports)
  } finally {
    await stop(gw?.proc)
    await Promise.all([stop(tasks.proc), stop(auth.proc)])
  }
  const near = backNear(baseline, after)
  const growth = round(secondAfter.rssMB / after.rssMB - 1, 3)
  const fdGrowth = secondAfter.fdsOutsidePools - after.fdsOutsidePools
  const fdMax = Math.max(...samples.map((s) => s.fds))
  // Each in-flight request holds one client and one upstream socket; more than that is a pile-up.
  const fdCeiling = baseline.fds + 2 * cfg.connections + 10
  const l = run.latencyMs
  const only504 = countOf(run, 504) === run.responses && run.responses > 0
  log(`  (ii) ${run.responses} answers, codes ${JSON.stringify(run.statusCounts)}, latency p50 ${l.p50} / p99 ${l.p99} / max ${l.max} ms; fds max ${fdMax}; after: ${after.rssMB} MB, ${after.fds} fds`)
  return {
    measuredAt: new Date().toISOString(),
    config: { upstreamDelayMs: DELAY_MS, upstreamTimeoutMs: TIMEOUT_MS, connections: cfg.connections, durationS: cfg.faultS },
    run,
    baseline,
    during: { fdMax, rssMaxMB: Math.max(...samples.map((s) => s.rssMB)) },
    after,
    secondAfter,
    rssAfterVsBaseline: near.rssDelta,
    checks: [
      check('ii-504', '(ii) answers to the slow upstream', 'all 504', JSON.stringify(run.statusCounts), only504 && run.timeouts + run.errors === 0),
      // Node's timers run on libuv's loop clock, cached at the start of each loop turn, so a deadline can fire up to ~1 ms early.
      check('ii-timing', '(ii) 504 latency (min .. p99)', `${TIMEOUT_MS - CLOCK_MS} .. ${TIMEOUT_MS + TOLERANCE_MS} ms`, `${l.min} .. ${l.p99} ms`, l.min >= TIMEOUT_MS - CLOCK_MS && l.p99 <= TIMEOUT_MS + TOLERANCE_MS),
      check('ii-fds', '(ii) gateway fds: max during; after vs baseline (outside upstream pools)', `<= ${fdCeiling}; <= +10`, `${fdMax}; ${signed(near.fdDelta)}`, fdMax <= fdCeiling && near.fdsOk),
      // RSS right after a run mostly shows V8's pace in returning heap; a pile-up grows run after run.
      check('ii-rss', '(ii) second run vs first: gateway RSS, fds left behind 5 s after', '<= +10 %, <= +10', `${pct(growth)}, ${signed(fdGrowth)}`, growth <= 0.1 && fdGrowth <= 10),
    ],
  }
}
