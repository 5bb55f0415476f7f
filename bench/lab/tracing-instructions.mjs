/**
 * Lab (not part of `npm run bench`): instructions per request of gateway
 * variants under valgrind's callgrind, all at once (the count does not move
 * with the machine's speed, so variants need no interleaving), and where
 * they differ: the symbols whose instructions per request differ most from
 * the first variant's (V8's builtins and Node's C++ are named; JIT-compiled
 * JavaScript is not, and shows as callgrind's unnamed addresses, summed).
 * Variants as in tracing-cost.mjs: `off`, a sampling ratio (`0%`, `1%`),
 * then after a colon `NAME=VALUE` pairs, `--flags` for node, `root=/path`
 * for another built checkout. Needs valgrind and a build.
 *
 * To name the JIT code too: `BENCH_LAB_KEEP=<dir>` keeps each variant's
 * callgrind file there, and a variant's `--perf-basic-prof` makes node write
 * /tmp/perf-<pid>.map (the pid is printed), whose address ranges name the
 * unnamed functions; `BENCH_LAB_CALLGRIND` adds valgrind options
 * (`--separate-callers=2`: who calls V8's runtime).
 *
 *   node bench/lab/tracing-instructions.mjs off 0% 1%   # BENCH_INSTR_WARMUP (30000), BENCH_INSTR_REQUESTS (10000), BENCH_LAB_TOP (25), BENCH_LAB_KEEP, BENCH_LAB_CALLGRIND
 */
import { execFileSync } from 'node:child_process'
import { copyFileSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Pool } from 'undici'
import { CPU_LOAD, CPU_PROXY, ROOT, gatewayEnv, nodeFlags, startUpstream } from '../lib/stack.mjs'
import { freePort, startNode, startProgram, stop, waitHttp } from '../lib/procs.mjs'
import { benchUser } from '../lib/scenario.mjs'
import { requests } from '../suites/instructions.mjs'
import { parseVariant } from './tracing-variants.mjs'

const WARMUP = Number(process.env.BENCH_INSTR_WARMUP ?? 30000)
const COUNTED = Number(process.env.BENCH_INSTR_REQUESTS ?? 10000)
const TOP = Number(process.env.BENCH_LAB_TOP ?? 25)
const CONNECTIONS = 10
const KEEP = process.env.BENCH_LAB_KEEP
const CALLGRIND = (process.env.BENCH_LAB_CALLGRIND ?? '').split(' ').filter(Boolean)
const variants = process.argv.slice(2).length ? process.argv.slice(2) : ['off', '0%', '1%']

const user = await benchUser()
const tasks = await startUpstream({ name: 'tasks-upstream' })
const auth = await startUpstream({ name: 'auth-upstream' })
const sinkPort = await freePort()
const sink = await startNode({ name: 'otlp-sink', args: [new URL('../lib/otlp-sink.mjs', import.meta.url).pathname], env: { PORT: String(sinkPort) }, cpu: CPU_LOAD, readyLine: 'listening' })

/** Self instructions by symbol from callgrind_annotate (unnamed JIT addresses summed as one). */
function bySymbol(file) {
  const text = execFileSync('callgrind_annotate', ['--inclusive=no', '--threshold=100', file], { encoding: 'utf8', maxBuffer: 1 << 28 })
  const out = new Map()
  for (const line of text.split('\n')) {
    const m = /^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)$/.exec(line)
    if (!m || !m[2].includes(':') && !m[2].startsWith('0x') && !m[2].startsWith('???')) continue
    const count = Number(m[1].replaceAll(',', ''))
    let name = m[2].replace(/ \[[^\]]*\]$/, '').trim()
    if (/^(\?\?\?:)?0x[0-9a-f]+$/.test(name)) name = '(JIT code)'
    out.set(name, (out.get(name) ?? 0) + count)
  }
  return out
}

const started = []
try {
  console.log(`callgrind: ${variants.join(', ')} at once, ${WARMUP} requests of warm-up, then ${COUNTED} counted, ${CONNECTIONS} connections`)
  const results = await Promise.all(
    variants.map(async (variant, i) => {
      const { env, nodeArgs, root = ROOT } = parseVariant(variant, `http://127.0.0.1:${sinkPort}`)
      const adminPort = await freePort()
      const genv = gatewayEnv({ port: await freePort(), adminPort, tasksUrl: tasks.url, authUrl: auth.url, env: { REDIS_URL: '', ...env } })
      const out = join(tmpdir(), `tollgate-lab-instr-${process.pid}-${i}.out`)
      const proc = await startProgram({
        name: `${variant} (callgrind)`,
        command: ['valgrind', '--tool=callgrind', '--smc-check=all-non-file', '--instr-atstart=no', ...CALLGRIND, `--callgrind-out-file=${out}`, process.execPath, ...nodeFlags('gateway'), ...nodeArgs, `${root}gateway/dist/server.js`],
        env: genv,
        cpu: CPU_PROXY,
      })
      started.push(proc)
      const controlEnv = { ...process.env, HOST: genv.HOST }
      const control = (...args) => execFileSync('callgrind_control', [...args, String(proc.pid)], { env: controlEnv, stdio: 'ignore' })
      const pool = new Pool(`http://127.0.0.1:${genv.PORT}`, { connections: CONNECTIONS })
      try {
        // Ready: upstreams reachable, revocation list loaded (slow to start under valgrind).
        await waitHttp(proc, `http://127.0.0.1:${adminPort}/ready`, { timeoutMs: 300_000, intervalMs: 500 })
        const warmBad = await requests(pool, user, WARMUP)
        control('-i', 'on')
        const bad = await requests(pool, user, COUNTED)
        control('-i', 'off')
        control('-d')
        const file = `${out}.1`
        const total = Number(/^totals: (\d+)/m.exec(readFileSync(file, 'utf8'))?.[1])
        const symbols = bySymbol(file)
        if (KEEP) {
          copyFileSync(file, join(KEEP, `callgrind-${i}.out`))
          console.log(`${variant}: pid ${proc.pid}, ${join(KEEP, `callgrind-${i}.out`)}`)
        }
        rmSync(file, { force: true })
        return { variant, perRequest: total / COUNTED, symbols, bad, warmBad }
      } finally {
        await pool.close()
        await stop(proc)
        // After the stop: callgrind writes the rest of the run to `out` as it exits.
        rmSync(out, { force: true })
      }
    }),
  )
  const [first] = results
  for (const r of results) console.log(`${r.variant.padEnd(20)} ${Math.round(r.perRequest)} instructions/request, / ${first.variant} ${(r.perRequest / first.perRequest).toFixed(3)} (answers not 200: ${r.warmBad} in the warm-up, ${r.bad} counted)`)
  for (const r of results.slice(1)) {
    const names = new Set([...first.symbols.keys(), ...r.symbols.keys()])
    const diffs = [...names].map((n) => [n, ((r.symbols.get(n) ?? 0) - (first.symbols.get(n) ?? 0)) / COUNTED]).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]))
    console.log(`\n${r.variant} against ${first.variant}, instructions/request by symbol (largest differences):`)
    for (const [n, d] of diffs.slice(0, TOP)) console.log(`${d >= 0 ? '+' : ''}${Math.round(d)}`.padStart(9) + `  ${n.slice(0, 150)}`)
  }
} finally {
  await Promise.all(started.map((p) => stop(p)))
  await stop(sink.proc)
  await Promise.all([stop(tasks.proc), stop(auth.proc)])
}
// As bench/run.mjs: a stopped child's pipe can keep the loop alive after the results are out.
process.exit(0)
