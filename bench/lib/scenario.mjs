/**
 * Pieces every scenario shares: the request the load sends (one user, one
 * valid token, the same headers to every target), waiting for a quiet
 * machine, the side-by-side measurement of several targets, and PASS/FAIL checks.
 */
import { randomUUID } from 'node:crypto'
import { combineRuns, Latencies, runLoad } from './load.mjs'
import { cpuBusyPct, cpuSeconds, cpuTimes, mainThreadCpuSeconds, round, sampler } from './proc-stats.mjs'
import { signToken } from './stack.mjs'
import { Histogram, runWrk } from './wrk.mjs'
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

/** The load tools a measurement can use: each runs one slice and merges latencies across slices. */
const TOOLS = {
  autocannon: { run: (opts, latencies) => runLoad(opts, { latencies }), latencies: () => new Latencies() },
  wrk: { run: (opts, histogram) => runWrk(opts, { histogram }), latencies: () => new Histogram() },
}

/**
 * Targets measured side by side: each warmed up (discarded) with every tool,
 * the first tool for at least `firstWarmupS` (on each instance),
 * then the measured time split into `rounds` rounds (each slice after
 * `sliceWarmupS` of discarded load on its instance); in each round every
 * tool loads every target in turn (autocannon a, b, c, then wrk a, b, c...),
 * the order reversed every other round, so background load on a shared
 * machine and any drift within a round fall on all of them alike and the two
 * tools' figures come from the same minutes.
 * A target may be several independently started processes (`instances`:
 * [{ url, pid }], else its own `url` and `pid`): round r loads instance
 * (r - 1) mod n. Two processes of the same build differ by up to 10 % in CPU
 * per request for their whole life (JIT decisions, heap layout), so a figure
 * from one process is partly that process's luck; the figure per instance is
 * kept, and two instances of one target show the measurement's resolution.
 * For each target's server (`pid`): RSS every second and CPU time (user +
 * sys of the whole process, from /proc: GC and libuv threads included)
 * during each of its own slices, divided by the answers of that slice;
 * `otherPid` (the upstream) and per-CPU busy time show which side was the
 * limit; `countOps()` (optional: cumulative counts by name, e.g. Redis
 * commands) is read before and after each slice, and `state()` (optional,
 * e.g. where the gateway counts) after it.
 * Returns { [tool]: { [target key]: run } }.
 */
export async function measureSideBySide(targets, { headers, connections, warmupS, firstWarmupS = 0, sliceWarmupS = 0, durationS, rounds, tools = ['autocannon'], log }) {
  const machine = await waitQuiet(log)
  const instancesOf = (t) => t.instances ?? [{ url: t.url, pid: t.pid }]
  for (const [i, tool] of tools.entries()) {
    // The first tool's warm-up is the process's own (firstWarmupS: V8 still compiling), the others' only the tool's.
    const s = i === 0 ? Math.max(warmupS, firstWarmupS) : warmupS
    for (const t of targets) {
      if (s > 0) {
        const n = instancesOf(t).length
        log(`  ${tool}, ${t.label}: warm-up ${s}s${n > 1 ? ` on each of ${n} instances` : ''}`)
        for (const { url } of instancesOf(t)) await TOOLS[tool].run({ url, headers, connections, durationS: s }, TOOLS[tool].latencies())
      }
    }
  }
  const sliceS = durationS / rounds
  const acc = {}
  for (const tool of tools) {
    acc[tool] = new Map(targets.map((t) => [t.key, { runs: [], slices: [], latencies: TOOLS[tool].latencies(), rss: [], cpu: { server: 0, main: 0, upstream: 0, s: 0 }, cpus: [] }]))
  }
  for (let r = 1; r <= rounds; r++) {
    log(`  round ${r}/${rounds}: ${sliceS}s per target and tool, ${connections} connections`)
    const order = r % 2 === 1 ? targets : [...targets].reverse()
    for (const tool of tools) {
      for (const target of order) {
        const instances = instancesOf(target)
        const instance = (r - 1) % instances.length
        const t = { ...target, ...instances[instance] }
        const a = acc[tool].get(t.key)
        // The instance has idled since its last slice: warmed again first, so the slice measures it warm.
        if (sliceWarmupS > 0) await TOOLS[tool].run({ url: t.url, headers, connections, durationS: sliceWarmupS }, TOOLS[tool].latencies())
        const ops0 = t.countOps ? await t.countOps() : null
        const rss = t.pid ? sampler(t.pid, 1000) : null
        const c0 = [cpuSeconds(t.pid), cpuSeconds(t.otherPid), performance.now(), mainThreadCpuSeconds(t.pid)]
        const cpus0 = cpuTimes()
        const run = await TOOLS[tool].run({ url: t.url, headers, connections, durationS: sliceS }, a.latencies)
        const c1 = [cpuSeconds(t.pid), cpuSeconds(t.otherPid), performance.now(), mainThreadCpuSeconds(t.pid)]
        a.cpus.push(cpuBusyPct(cpus0, cpuTimes()))
        const opsByName = t.countOps ? countsBetween(ops0, await t.countOps()) : null
        const ops = opsByName && Object.values(opsByName).reduce((x, y) => x + y, 0)
        const state = t.state ? await t.state() : undefined
        a.runs.push(run)
        const serverS = (c1[0] ?? 0) - (c0[0] ?? 0)
        const mainS = (c1[3] ?? 0) - (c0[3] ?? 0)
        a.cpu.server += serverS
        a.cpu.main += mainS
        a.cpu.upstream += (c1[1] ?? 0) - (c0[1] ?? 0)
        a.cpu.s += (c1[2] - c0[2]) / 1000
        a.slices.push({
          round: r,
          instance,
          responses: run.responses,
          rps: run.rps,
          serverCpuS: round(serverS, 3),
          mainThreadCpuS: round(mainS, 3),
          cpuUsPerRequest: t.pid && run.responses ? round((serverS * 1e6) / run.responses, 1) : null,
          ...(opsByName === null ? {} : { ops, opsPerRequest: run.responses ? round(ops / run.responses, 3) : null, opsByName }),
          ...(state === undefined ? {} : { state }),
        })
        a.rss.push(...(rss?.stop() ?? []).map((x) => x.rssMB).filter((v) => v !== null))
      }
    }
  }
  const out = {}
  for (const tool of tools) {
    out[tool] = {}
    for (const t of targets) {
      const a = acc[tool].get(t.key)
      const measured = Boolean(instancesOf(t)[0].pid) // a server process whose CPU was read
      const counted = Boolean(t.countOps ?? instancesOf(t)[0].countOps)
      const run = combineRuns(a.runs, a.latencies)
      const avg = (xs) => round(xs.reduce((x, y) => x + y, 0) / xs.length, 1)
      const ops = counted ? a.slices.reduce((sum, x) => sum + x.ops, 0) : null
      const opsByName = counted ? a.slices.reduce((sum, x) => addCounts(sum, x.opsByName), {}) : null
      out[tool][t.key] = {
        tool,
        ...run,
        // CPU time the server spent per answer (all its slices' CPU over all their answers): how much work each
        // target does, whatever else ran on the machine.
        serverCpuUsPerRequest: measured && run.responses ? round((a.cpu.server * 1e6) / run.responses, 1) : null,
        cpuUsPerRequestPerSlice: a.slices.map((x) => x.cpuUsPerRequest),
        // Each instance's own figure (its slices' CPU over their answers): how far two processes of one build differ.
        cpuUsPerRequestByInstance: !measured ? null : instancesOf(t).map((_, i) => perInstance(a.slices.filter((x) => x.instance === i))),
        // Split: the JavaScript thread (what a V8 profile sees) and every other thread of the process.
        cpuUsPerRequestByThread: measured && run.responses
          ? { main: round((a.cpu.main * 1e6) / run.responses, 1), otherThreads: round(((a.cpu.server - a.cpu.main) * 1e6) / run.responses, 1) }
          : null,
        slices: a.slices,
        ...(ops === null
          ? {}
          : {
              ops,
              opsPerRequest: run.responses ? round(ops / run.responses, 3) : null,
              opsPerRequestByName: Object.fromEntries(Object.entries(opsByName).map(([k, v]) => [k, round(v / run.responses, 3)])),
            }),
        ...(t.state ?? instancesOf(t)[0].state ? { statePerSlice: a.slices.map((x) => x.state) } : {}),
        serverRssMB: a.rss.length ? { max: Math.max(...a.rss), mean: avg(a.rss) } : null,
        cpuPct: {
          server: measured ? round((100 * a.cpu.server) / a.cpu.s, 1) : null,
          upstream: t.otherPid ? round((100 * a.cpu.upstream) / a.cpu.s, 1) : null,
          perCpu: Object.fromEntries(Object.keys(a.cpus[0]).map((cpu) => [cpu, avg(a.cpus.map((c) => c[cpu]))])),
        },
        machine,
      }
      const x = out[tool][t.key]
      const l = run.latencyMs
      log(`  ${tool}, ${t.label}: ${run.rps} req/s (slices ${run.rpsPerSlice.join(', ')}), CPU ${x.serverCpuUsPerRequest} us/req (slices ${x.cpuUsPerRequestPerSlice.join(', ')}${x.cpuUsPerRequestByInstance?.length > 1 ? `; by instance ${x.cpuUsPerRequestByInstance.join(', ')}` : ''}; main thread ${x.cpuUsPerRequestByThread?.main}), p50 ${l.p50} ms, p99 ${l.p99} ms, p99.9 ${l.p999} ms, non-2xx ${run.non2xx}, errors ${run.errors}${ops === null ? '' : `, ${x.opsPerRequest} counted ops/req`}`)
    }
  }
  return out
}

function perInstance(slices) {
  const responses = slices.reduce((sum, x) => sum + x.responses, 0)
  const cpuS = slices.reduce((sum, x) => sum + x.serverCpuS, 0)
  return responses ? round((cpuS * 1e6) / responses, 1) : null
}

/** Counts by name: what was added between two readings. */
function countsBetween(before, after) {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]))
}

function addCounts(sum, more) {
  const out = { ...sum }
  for (const [k, v] of Object.entries(more)) out[k] = (out[k] ?? 0) + v
  return out
}

export function check(id, label, target, actual, pass) {
  return { id, label, target, actual, pass: Boolean(pass) }
}

export const ratio = (x, y) => (x === null || y === null || !y ? null : round(x / y, 3))
