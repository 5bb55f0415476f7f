/**
 * Tollgate benchmark: `npm run bench` (builds first).
 *   npm run bench                  throughput a/b/c/c+redis with autocannon and wrk, sign-in under load, faults (i)-(v)  (11-14 min)
 *   npm run bench -- --quick       the same, short (about 2 min smoke); writes results/quick.*
 *   npm run bench -- --soak        5 min of (c), gateway RSS every 5 s
 *   npm run bench -- --profile     CPU profiles of (b) and (c) under the same load: what the gateway adds per request
 *   npm run bench -- --instructions   instructions per request of (b) and (c) under valgrind's callgrind (the same count
 *                                  whatever the machine's speed; with --tracing also c+trace1% and before tracing); BENCH_INSTR_WARMUP, BENCH_INSTR_REQUESTS
 *   npm run bench -- --streams     BENCH_STREAMS (1000) live SSE streams: RSS per stream, fan-out latency, sign-out close time
 *   npm run bench -- --only=throughput,signin,faults,ledger,hostile
 *                                  (hostile: fault (v), nested-JSON bodies while /health is probed)
 *   npm run bench -- --only=throughput --tool=autocannon|wrk|both   load tool(s) for throughput (default both)
 *   npm run bench -- --only=throughput --tracing   also (c) with OpenTelemetry tracing on, sampling 1 % and 100 %,
 *                                  exporting OTLP/HTTP to a local sink (bench/lib/otlp-sink.mjs, on the load CPU), and
 *                                  the gateway of the last commit before tracing (built once, bench/lib/baseline.mjs)
 * Throughput rows: (a) upstream, (b) bare http-proxy, (c) gateway, (c+redis) gateway with a private redis-server;
 * each with req/s, latency and server CPU us/request (user+sys of the whole process, /proc). wrk: apt-get install -y wrk.
 * Durations: BENCH_WARMUP_S, BENCH_FIRST_WARMUP_S (throughput: a process's first warm-up), BENCH_DURATION_S, BENCH_ROUNDS, BENCH_INSTANCES (processes per proxy contender),
 * BENCH_CONNECTIONS, BENCH_SOAK_S, BENCH_SIGNIN_DURATION_S,
 * BENCH_FAULT_DURATION_S, BENCH_SETTLE_S, ... (bench/lib/config.mjs). Results: bench/results/latest.{json,md}.
 * Sign-in and the write ledger need PostgreSQL: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
 * Other variables in the environment reach the servers it starts (e.g. BCRYPT_MAX_CONCURRENCY=1).
 * Exits 0 when targets are missed (it measures); 1 only when a scenario could not run.
 */
import { loadavg } from 'node:os'
import { readConfig } from './lib/config.mjs'
import { pinSelf, pinning, stopAll } from './lib/procs.mjs'
import { allChecks, machineInfo, saveResults, sourceInfo } from './lib/report.mjs'
import { quiet } from './lib/scenario.mjs'
import { throughput } from './suites/throughput.mjs'
import { soak } from './suites/soak.mjs'
import { signin } from './suites/signin.mjs'
import { faults } from './suites/faults.mjs'
import { ledger } from './suites/ledger.mjs'
import { profile } from './suites/profile.mjs'
import { instructions } from './suites/instructions.mjs'
import { hostileBodies } from './suites/fault-hostile-bodies.mjs'
import { streams } from './suites/streams.mjs'

const SUITES = { throughput, soak, signin, faults, ledger, profile, instructions, hostile: hostileBodies, streams }
const started = performance.now()
const log = (msg) => {
  const s = Math.round((performance.now() - started) / 1000)
  console.log(`[bench ${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${msg}`)
}

let cfg
try {
  cfg = readConfig()
} catch (err) {
  console.error(`bench: ${err.message}`)
  process.exit(2)
}
if (cfg.help) {
  console.log(
    (await import('node:fs'))
      .readFileSync(new URL(import.meta.url), 'utf8')
      .split('*/')[0]
      .replace(/^\/\*\*?|^ \* ?/gm, '')
      .trim(),
  )
  process.exit(0)
}

pinSelf()
quiet.waitS = cfg.quietWaitS
// Taken before measuring: `npm run bench` built this tree just before.
const source = sourceInfo()
log(`suites: ${cfg.suites.join(', ')}${cfg.quick ? ' (quick)' : ''}; pinning ${pinning.enabled ? 'on' : `off: ${pinning.why}`}; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`)

const sections = {}
const broken = []
for (const name of cfg.suites) {
  log(`== ${name}`)
  try {
    sections[name] = { ...(await SUITES[name](cfg, log)), source }
  } catch (err) {
    broken.push(name)
    log(`${name} could not run: ${err.stack ?? err}`)
    await stopAll()
  }
}

// (c) trailing the bare proxy: profile it, so the report says where the time goes.
const missedRatio = sections.throughput?.checks.some((c) => /^c-(rps|p99|cpu):/.test(c.id) && !c.pass)
if (missedRatio && !cfg.quick && !cfg.suites.includes('profile')) {
  log('== profile ((c) missed a ratio target)')
  try {
    sections.profile = { ...(await profile(cfg, log)), source }
  } catch (err) {
    broken.push('profile')
    log(`profile could not run: ${err.stack ?? err}`)
    await stopAll()
  }
}

const { merged, jsonPath, mdPath } = saveResults(cfg.outName, sections, {
  name: cfg.outName,
  updatedAt: new Date().toISOString(),
  machine: machineInfo(),
  source,
})

console.log('\nTargets (this file, all sections):')
const checks = allChecks(merged)
for (const c of checks) console.log(`  ${c.pass ? 'PASS' : 'FAIL'}  ${c.label}: ${c.actual} (target ${c.target})`)
const missed = checks.filter((c) => !c.pass)
console.log(missed.length ? `\n${missed.length} of ${checks.length} targets missed: ${missed.map((c) => c.id).join(', ')}` : `\nall ${checks.length} targets met`)
if (broken.length) console.log(`could not run: ${broken.join(', ')}`)
console.log(`results: ${jsonPath}\n         ${mdPath}`)
await stopAll()
process.exit(broken.length ? 1 : 0)
