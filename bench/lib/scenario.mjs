/**
 * Pieces every scenario shares: the request the load sends (one user, one
 * valid token, the same headers to every target), waiting for a quiet
 * machine, the side-by-side measurement of several targets, and PASS/FAIL checks.
 */
import { randomUUID } from 'node:crypto'
import { combineRuns, Latencies, runLoad } from './load.mjs'
import { cpuBusyPct, cpuSeconds, cpuTimes, round, sampler } from './proc-stats.mjs'
import { signToken } from './stack.mjs'
import { sleep } from './procs.mjs'

/** Idle enough to measure: every CPU at most this busy; wait at most waitS (set from BENCH_QUIET_WAIT_S). */
export const quiet = { maxBusyPct: 20, waitS: 30 }

/**
 * The machine is shared: wait (bounded) until both CPUs are mostly idle
 * before a measurement, and say how busy they were, so a figure taken next
 * to someone's compile can be recognised.
 */
export async function waitQuiet(log, { maxBusyPct = quiet.maxBusyPct, timeoutMs = quiet.waitS * 1000 } = {}) {
  const deadline = Date.now() + timeoutMs
  let busy
  do {
    const t0 = cpuTimes()
    await sleep(1000)
    busy = cpuBusyPct(t0, cpuTimes())
    if (Object.values(busy).every((b) => b <= maxBusyPct)) return { quiet: true, idleBusyPct: busy }
  } while (Date.now() < deadline)
  log(`  warning: machine still busy after ${timeoutMs / 1000}s (${JSON.stringify(busy)} % per CPU); measuring anyway`)
  return { quiet: false, idleBusyPct: busy }
}

export async function benchUser() {
  const sub = randomUUID()
  const token = await signToken(sub)
  return {
    sub,
    token,
    tasksPath: `/api/${sub}/tasks`,
    headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
  }
}

/** One request before any load: a misconfigured target fails here, with its answer shown. */
export async function expectStatus(url, { status = 200, headers, method = 'GET', body } = {}) {
  const res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(5000) })
  const text = await res.text()
  if (res.status !== status) throw new Error(`${method} ${url} answered ${res.status}, expected ${status}: ${text.slice(0, 300)}`)
  return text
}

/**
 * Targets measured side by side: each warmed up (discarded), then the
 * measured time split into `rounds` slices taken in turn (a, b, c, a, b,
 * c...), so background load on a shared machine falls on all of them alike.
 * For each target's server (`pid`): RSS every second and CPU use during its
 * own slices; `otherPid` (the upstream) and per-CPU busy time show which
 * side was the limit.
 */
export async function measureSideBySide(targets, { headers, connections, warmupS, durationS, rounds, log }) {
  const machine = await waitQuiet(log)
  for (const t of targets) {
    if (warmupS > 0) {
      log(`  ${t.label}: warm-up ${warmupS}s`)
      await runLoad({ url: t.url, headers, connections, durationS: warmupS })
    }
  }
  const sliceS = durationS / rounds
  const acc = new Map(targets.map((t) => [t.key, { runs: [], latencies: new Latencies(), rss: [], cpu: { server: 0, upstream: 0, s: 0 }, cpus: [] }]))
  for (let r = 1; r <= rounds; r++) {
    log(`  round ${r}/${rounds}: ${sliceS}s per target, ${connections} connections`)
    for (const t of targets) {
      const a = acc.get(t.key)
      const rss = t.pid ? sampler(t.pid, 1000) : null
      const c0 = [cpuSeconds(t.pid), cpuSeconds(t.otherPid), performance.now()]
      const cpus0 = cpuTimes()
      a.runs.push(await runLoad({ url: t.url, headers, connections, durationS: sliceS }, { latencies: a.latencies }))
      a.cpus.push(cpuBusyPct(cpus0, cpuTimes()))
      a.cpu.server += (cpuSeconds(t.pid) ?? 0) - (c0[0] ?? 0)
      a.cpu.upstream += (cpuSeconds(t.otherPid) ?? 0) - (c0[1] ?? 0)
      a.cpu.s += (performance.now() - c0[2]) / 1000
      a.rss.push(...(rss?.stop() ?? []).map((x) => x.rssMB).filter((v) => v !== null))
    }
  }
  const out = {}
  for (const t of targets) {
    const a = acc.get(t.key)
    const run = combineRuns(a.runs, a.latencies)
    const avg = (xs) => round(xs.reduce((x, y) => x + y, 0) / xs.length, 1)
    const serverPct = t.pid ? round((100 * a.cpu.server) / a.cpu.s, 1) : null
    out[t.key] = {
      ...run,
      // CPU time the server spent per answer: how much work each target does, whatever else ran on the machine.
      serverCpuUsPerRequest: serverPct === null ? null : round((serverPct * 1e4) / run.rps, 1),
      serverRssMB: a.rss.length ? { max: Math.max(...a.rss), mean: avg(a.rss) } : null,
      cpuPct: {
        server: serverPct,
        upstream: t.otherPid ? round((100 * a.cpu.upstream) / a.cpu.s, 1) : null,
        perCpu: Object.fromEntries(Object.keys(a.cpus[0]).map((cpu) => [cpu, avg(a.cpus.map((c) => c[cpu]))])),
      },
      machine,
    }
    const l = run.latencyMs
    log(`  ${t.label}: ${run.rps} req/s (slices ${run.rpsPerSlice.join(', ')}), p50 ${l.p50} ms, p99 ${l.p99} ms, p99.9 ${l.p999} ms, non-2xx ${run.non2xx}, errors ${run.errors}`)
  }
  return out
}

export function check(id, label, target, actual, pass) {
  return { id, label, target, actual, pass: Boolean(pass) }
}

export const ratio = (x, y) => (x === null || y === null || !y ? null : round(x / y, 3))
