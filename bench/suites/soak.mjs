/**
 * Issue item 2, soak: the (c) load for BENCH_SOAK_S (5 min), the gateway's
 * RSS sampled every BENCH_SOAK_SAMPLE_S from /proc/<pid>/status; flat means
 * the last minute's average is within 10 % of the first minute's.
 */
import { startGateway, startUpstream } from '../lib/stack.mjs'
import { stop } from '../lib/procs.mjs'
import { runLoad } from '../lib/load.mjs'
import { round, sampler } from '../lib/proc-stats.mjs'
import { benchUser, check, expectStatus, waitQuiet } from '../lib/scenario.mjs'
import { TARGETS } from './throughput.mjs'

const FLAT = 0.1

export async function soak(cfg, log) {
  const user = await benchUser()
  const tasks = await startUpstream({ name: 'tasks-upstream' })
  const auth = await startUpstream({ name: 'auth-upstream' })
  let gw
  let run
  let samples
  try {
    gw = await startGateway({ tasksUrl: tasks.url, authUrl: auth.url })
    const url = gw.url + user.tasksPath
    await expectStatus(url, { headers: user.headers })
    await waitQuiet(log)
    log(`  soak: warm-up ${cfg.warmupS}s, then ${cfg.soakS}s at ${cfg.connections} connections, RSS every ${cfg.soakSampleS}s`)
    await runLoad({ url, headers: user.headers, connections: cfg.connections, durationS: cfg.warmupS })
    const rss = sampler(gw.proc.pid, cfg.soakSampleS * 1000)
    const progress = setInterval(() => {
      const last = rss.samples.at(-1)
      log(`  soak: ${last.t}s RSS ${last.rssMB} MB, fds ${last.fds}`)
    }, 30_000)
    try {
      run = await runLoad({ url, headers: user.headers, connections: cfg.connections, durationS: cfg.soakS })
    } finally {
      clearInterval(progress)
      samples = rss.stop()
    }
  } finally {
    await stop(gw?.proc)
    await Promise.all([stop(tasks.proc), stop(auth.proc)])
  }

  // First and last minute (a third of the run each when it is shorter than 3 minutes).
  const windowS = Math.min(60, cfg.soakS / 3)
  const end = samples.at(-1).t
  const avg = (xs) => round(xs.reduce((a, s) => a + s.rssMB, 0) / xs.length, 1)
  const firstMB = avg(samples.filter((s) => s.t <= windowS))
  const lastMB = avg(samples.filter((s) => s.t >= end - windowS))
  const maxMB = Math.max(...samples.map((s) => s.rssMB))
  const drift = round(lastMB / firstMB - 1, 3)
  log(`  soak: ${run.rps} req/s, p99 ${run.latencyMs.p99} ms; RSS first ${windowS}s avg ${firstMB} MB, last ${windowS}s avg ${lastMB} MB (${drift >= 0 ? '+' : ''}${round(drift * 100, 1)} %), max ${maxMB} MB`)
  return {
    measuredAt: new Date().toISOString(),
    load: { connections: cfg.connections, warmupS: cfg.warmupS, durationS: cfg.soakS, sampleEveryS: cfg.soakSampleS },
    run,
    rss: { windowS, firstAvgMB: firstMB, lastAvgMB: lastMB, maxMB, drift, samples },
    checks: [
      check('soak-flat', `gateway RSS last ${windowS}s avg vs first ${windowS}s avg`, `within ${FLAT * 100} %`, `${round(drift * 100, 1)} %`, Math.abs(drift) <= FLAT),
      check('soak-rss', 'gateway RSS during soak (max)', `< ${TARGETS.rssMB} MB`, maxMB, maxMB < TARGETS.rssMB),
      check('soak-non2xx', 'soak non-2xx, errors, timeouts', '0', run.non2xx + run.errors + run.timeouts, run.non2xx + run.errors + run.timeouts === 0),
    ],
  }
}
