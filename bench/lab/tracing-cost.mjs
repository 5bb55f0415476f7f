/**
 * Lab (not part of `npm run bench`): what tracing costs the gateway per
 * request, measured so that the machine's speed swings cancel out. Every
 * variant runs as BENCH_LAB_INSTANCES processes on the proxy CPU, and all of
 * them are loaded at once, each by its own wrk, for BENCH_LAB_ROUNDS slices
 * of BENCH_LAB_SLICE_S seconds: a slow minute slows them all alike. CPU per
 * request is user + sys of the whole process over the slice (as in the
 * bench), divided by the answers wrk counted (also shown apart, with minor
 * page faults and context switches per request); each variant is reported as
 * the ratio of its CPU per request to the tracing-off processes', over all
 * its processes, with the spread between its own processes (two processes of
 * one build differ by a few per cent for their whole life, so a single
 * process per variant decides nothing near a 5 % target).
 *
 * With BENCH_LAB_BATCHES above 1, that is repeated with fresh processes, one
 * batch after another, and each variant is also reported against the
 * tracing-off processes of its own batch (the geometric mean over batches,
 * and each batch's): more processes per variant without loading more at
 * once (`BENCH_LAB_INSTANCES=1 BENCH_LAB_BATCHES=4` keeps four gateways busy
 * for three variants and off). CPU is also split by thread (the main thread,
 * V8's helpers, the trace export worker).
 *
 * With BENCH_LAB_ALTERNATE=1 the processes are loaded one at a time instead,
 * as the bench loads them (no other gateway then shares the CPU and its
 * caches), each for a short slice in turn, round after round
 * (`BENCH_LAB_SLICE_S=2 BENCH_LAB_ROUNDS=40`).
 *
 * Variants (arguments; default `off 1%`): `off`, or a sampling ratio in per
 * cent (`0%`, `1%`, `10%`, `100%`), OTLP/HTTP to a local sink as in the
 * bench; after a colon, comma-separated `NAME=VALUE` pairs set more of the
 * gateway's environment and `--flags` go to node (`1%:OTEL_BSP_SCHEDULE_DELAY=200`,
 * `off:--max-semi-space-size=32`); `root=/path` runs another built checkout's gateway
 * (`1%:root=/tmp/old`, to compare two builds in one run). Needs wrk and a build.
 *
 *   node bench/lab/tracing-cost.mjs [variant ...]   # BENCH_LAB_INSTANCES (2), BENCH_LAB_BATCHES (1), BENCH_LAB_ALTERNATE (0), BENCH_LAB_ROUNDS (12), BENCH_LAB_SLICE_S (5), BENCH_LAB_CONNECTIONS (16), BENCH_LAB_WARMUP_S (8)
 */
import { CPU_LOAD, startGateway } from '../lib/stack.mjs'
import { processCounters, round } from '../lib/proc-stats.mjs'
import { freePort, startNode, stop } from '../lib/procs.mjs'
import { runWrk } from '../lib/wrk.mjs'
import { withWrkLab } from './wrk-lab.mjs'
import { parseVariant } from './tracing-variants.mjs'

const INSTANCES = Number(process.env.BENCH_LAB_INSTANCES ?? 2)
const ROUNDS = Number(process.env.BENCH_LAB_ROUNDS ?? 12)
const BATCHES = Number(process.env.BENCH_LAB_BATCHES ?? 1)
const SLICE_S = Number(process.env.BENCH_LAB_SLICE_S ?? 5)
const CONNECTIONS = Number(process.env.BENCH_LAB_CONNECTIONS ?? 16)
const ALTERNATE = process.env.BENCH_LAB_ALTERNATE === '1'
/** Seconds of load on every process at once before counting: a 1 % sampled path reaches V8's optimising tiers 100 times more slowly than the rest. */
const WARMUP_S = Number(process.env.BENCH_LAB_WARMUP_S ?? 8)
const COUNTERS = ['user', 'sys', 'faults', 'switches']
const variants = process.argv.slice(2).length ? process.argv.slice(2) : ['off', '1%']
if (variants[0] !== 'off') variants.unshift('off')

/** One slice of wrk on one process: its answers, or a throw when any was not a 2xx or failed. */
async function answersOf({ url, headers, durationS }) {
  const run = await runWrk({ url, headers, durationS, connections: CONNECTIONS })
  if (run.non2xx || run.errors || run.timeouts) throw new Error(`wrk on ${url}: ${run.non2xx} non-2xx, ${run.errors} errors, ${run.timeouts} timeouts`)
  return run.responses
}

/** One slice's counters (processCounters before and after it) and answers, added to the process's totals. */
function addSlice(p, before, after, answers) {
  for (const k of COUNTERS) p[k] += after[k] - before[k]
  for (const [name, seconds] of Object.entries(after.threads)) p.threads[name] = (p.threads[name] ?? 0) + seconds - (before.threads[name] ?? 0)
  p.answers += answers
}

await withWrkLab(async ({ user, tasks, auth }) => {
  const port = await freePort()
  await startNode({ name: 'otlp-sink', args: [new URL('../lib/otlp-sink.mjs', import.meta.url).pathname], env: { PORT: String(port) }, cpu: CPU_LOAD, readyLine: 'listening' })
  const envOf = (variant) => parseVariant(variant, `http://127.0.0.1:${port}`)
  const processes = []
  for (let batch = 0; batch < BATCHES; batch++) {
    // Each batch its own processes: a process keeps its few per cent of luck (its memory layout) for life, so more
    // processes per variant, started fresh, average it out without loading more of them at once.
    const live = []
    for (let i = 0; i < INSTANCES; i++) {
      for (const variant of variants) {
        const { env, nodeArgs, root } = envOf(variant)
        const gw = await startGateway({ tasksUrl: tasks.url, authUrl: auth.url, env: { REDIS_URL: undefined, ...env }, nodeArgs, readyTimeoutMs: 60_000, ...(root ? { root } : {}) })
        live.push({ variant, batch, proc: gw.proc, url: gw.url + user.tasksPath, pid: gw.proc.pid, user: 0, sys: 0, faults: 0, switches: 0, threads: {}, answers: 0 })
      }
    }
    const loadAll = (durationS) => Promise.all(live.map((p) => answersOf({ url: p.url, headers: user.headers, durationS })))
    const how = ALTERNATE ? `loaded one at a time: ${WARMUP_S} s warm-up (all at once), then ${ROUNDS} rounds of a ${SLICE_S} s slice each` : `loaded at once: ${WARMUP_S} s warm-up, then ${ROUNDS} slices of ${SLICE_S} s`
    console.log(`batch ${batch + 1} of ${BATCHES}: ${live.length} gateways (${INSTANCES} per variant), ${how}`)
    await loadAll(WARMUP_S)
    for (let r = 0, failed = 0; r < ROUNDS; r++) {
      if (ALTERNATE) {
        // One process at a time, as the bench loads them, in short slices taken in turn (each round starting one
        // further along): the machine's minute-to-minute swings fall on every process alike.
        for (let k = 0; k < live.length; k++) {
          const p = live[(r + k) % live.length]
          const before = processCounters(p.pid)
          let answers
          try {
            answers = await answersOf({ url: p.url, headers: user.headers, durationS: SLICE_S })
          } catch (err) {
            if (++failed > 3) throw err
            console.log(`slice discarded: ${err.message}`)
            k--
            continue
          }
          addSlice(p, before, processCounters(p.pid), answers)
        }
        continue
      }
      const before = live.map((p) => processCounters(p.pid))
      let answers
      try {
        answers = await loadAll(SLICE_S)
      } catch (err) {
        // A wrk that failed leaves its process's slice uncounted: the whole slice is discarded and run again.
        if (++failed > 3) throw err
        console.log(`slice discarded: ${err.message}`)
        r--
        continue
      }
      live.forEach((p, i) => addSlice(p, before[i], processCounters(p.pid), answers[i]))
    }
    if (batch < BATCHES - 1) await Promise.all(live.map((p) => stop(p.proc)))
    processes.push(...live)
  }
  const perRequest = (list, field, scale = 1) => (scale * list.reduce((s, p) => s + p[field], 0)) / list.reduce((s, p) => s + p.answers, 0)
  const usPerRequest = (list) => perRequest(list, 'user', 1e6) + perRequest(list, 'sys', 1e6)
  const off = usPerRequest(processes.filter((p) => p.variant === 'off'))
  // Against the tracing-off processes of its own batch (batches ran at different minutes, at different speeds).
  const batchRatios = (variant) =>
    Array.from({ length: BATCHES }, (_, b) => usPerRequest(processes.filter((p) => p.variant === variant && p.batch === b)) / usPerRequest(processes.filter((p) => p.variant === 'off' && p.batch === b)))
  const geomean = (xs) => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length)
  for (const variant of variants) {
    const own = processes.filter((p) => p.variant === variant)
    const each = own.map((p) => usPerRequest([p]))
    console.log(
      `${variant.padEnd(12)} ${round(usPerRequest(own), 1)} us/request, / off ${round(usPerRequest(own) / off, 3)}` +
        ` (processes: ${each.map((x) => round(x / off, 3)).join(', ')}; spread ${round(Math.max(...each) / Math.min(...each), 3)});` +
        ` user / sys ${round(perRequest(own, 'user', 1e6), 1)} / ${round(perRequest(own, 'sys', 1e6), 1)} us, minor faults ${round(perRequest(own, 'faults', 1000), 2)}` +
        ` and context switches ${round(perRequest(own, 'switches', 1000), 2)} per 1,000 requests`,
    )
    if (BATCHES > 1) console.log(`${''.padEnd(12)} / off of its batch: ${round(geomean(batchRatios(variant)), 3)} (batches: ${batchRatios(variant).map((x) => round(x, 3)).join(', ')})`)
    const answers = own.reduce((s, p) => s + p.answers, 0)
    const names = [...new Set(own.flatMap((p) => Object.keys(p.threads)))].sort()
    const byThread = names
      .map((n) => [n, (1e6 * own.reduce((s, p) => s + (p.threads[n] ?? 0), 0)) / answers])
      .filter(([, us]) => us >= 0.01) // idle threads (the inspector's, the libuv pool) left out
      .map(([n, us]) => `${n} ${round(us, 2)}`)
    console.log(`${''.padEnd(12)} by thread, us/request: ${byThread.join(', ')}`)
  }
})
