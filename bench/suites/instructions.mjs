/**
 * Instructions per request: (b) bare @fastify/http-proxy and (c) the gateway
 * (and, with --tracing, (c) tracing at 1 %) each under valgrind's callgrind,
 * which counts the instructions of the whole process (every thread) and gives
 * the same count for the same work however fast the machine is that minute,
 * where CPU time here swings 2-3x. A guide for changes to the code on the
 * path, resolving about 1 % in minutes; not the targets' figure (it counts
 * instructions, not what they cost in cache misses and stalls).
 * Each server: BENCH_INSTR_WARMUP requests (JIT tiers settle), then
 * BENCH_INSTR_REQUESTS counted (callgrind_control switches counting on and
 * off around them), 10 connections, all contenders at the same time.
 * A major GC falling into one contender's window adds up to 10 %.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Pool } from 'undici'
import { CPU_LOAD, CPU_PROXY, ROOT, gatewayEnv, nodeFlags, startUpstream } from '../lib/stack.mjs'
import { freePort, startNode, startProgram, stop, waitHttp } from '../lib/procs.mjs'
import { benchUser } from '../lib/scenario.mjs'
import { BEFORE_TRACING, baseline } from '../lib/baseline.mjs'
import { round } from '../lib/proc-stats.mjs'

const CONNECTIONS = 10

/** Why callgrind cannot run here, or null. */
export function valgrindMissing() {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' })
    execFileSync('callgrind_control', ['--version'], { stdio: 'ignore' })
    return null
  } catch {
    return 'valgrind not found (Debian/Ubuntu: apt-get install -y valgrind)'
  }
}

export async function instructions(cfg, log) {
  const missing = valgrindMissing()
  if (missing) throw new Error(missing)
  const user = await benchUser()
  const tasks = await startUpstream({ name: 'tasks-upstream' })
  const auth = await startUpstream({ name: 'auth-upstream' })
  const started = []
  let sink
  try {
    // Memory mode even when the caller's environment names a Redis (as throughput's (c)).
    const gateway = async (env) => gatewayEnv({ port: await freePort(), adminPort: await freePort(), tasksUrl: tasks.url, authUrl: auth.url, env: { REDIS_URL: '', ...env } })
    const contenders = [
      { key: 'b', label: '(b) bare @fastify/http-proxy', script: [`${ROOT}bench/lib/bare-proxy.mjs`], env: { PORT: String(await freePort()), UPSTREAM: tasks.url } },
      { key: 'c', label: '(c) Tollgate gateway, everything on', script: [...nodeFlags('gateway'), `${ROOT}gateway/dist/server.js`], env: await gateway({}) },
    ]
    if (cfg.tracing) {
      const port = await freePort()
      sink = await startNode({ name: 'otlp-sink', args: [new URL('../lib/otlp-sink.mjs', import.meta.url).pathname], env: { PORT: String(port) }, cpu: CPU_LOAD, readyLine: 'listening' })
      const tracing = { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.01' }
      contenders.push({ key: 'ct1', label: '(c+trace1%) the same, tracing on, sampling 1 %', script: [...nodeFlags('gateway'), `${ROOT}gateway/dist/server.js`], env: await gateway(tracing) })
      const { root, skipped } = baseline(BEFORE_TRACING.ref, log)
      if (skipped) log(`skipped: ${skipped}`)
      else {
        contenders.push({ key: 'cb', label: `(c before tracing) the gateway at ${BEFORE_TRACING.ref}, ${BEFORE_TRACING.what}`, script: [...nodeFlags('gateway'), `${root}gateway/dist/server.js`], env: await gateway({}) })
      }
    }
    log(`callgrind: ${contenders.map((c) => c.key).join(', ')} at once, ${cfg.instrWarmup} requests of warm-up, then ${cfg.instrRequests} counted, ${CONNECTIONS} connections (several minutes)`)
    const results = await Promise.all(
      contenders.map(async (c) => {
        const out = join(tmpdir(), `tollgate-callgrind-${process.pid}-${c.key}.out`)
        const proc = await startProgram({
          name: `${c.key} (callgrind)`,
          command: ['valgrind', '--tool=callgrind', '--smc-check=all-non-file', '--instr-atstart=no', `--callgrind-out-file=${out}`, process.execPath, ...c.script],
          env: c.env,
          cpu: CPU_PROXY,
        })
        started.push(proc)
        // valgrind names its control pipes after HOST: callgrind_control must see the server's.
        const controlEnv = c.env.HOST === undefined ? process.env : { ...process.env, HOST: c.env.HOST }
        const control = (...args) => execFileSync('callgrind_control', [...args, String(proc.pid)], { env: controlEnv, stdio: 'ignore' })
        const pool = new Pool(`http://127.0.0.1:${c.env.PORT}`, { connections: CONNECTIONS })
        try {
          // Slow to start under valgrind.
          await waitHttp(proc, `http://127.0.0.1:${c.env.PORT}/health`, { timeoutMs: 300_000, intervalMs: 500 })
          const warm = await requests(pool, user, cfg.instrWarmup)
          control('-i', 'on')
          const counted = await requests(pool, user, cfg.instrRequests)
          control('-i', 'off')
          control('-d')
          const totals = Number(/^totals: (\d+)/m.exec(readFileSync(`${out}.1`, 'utf8'))?.[1])
          log(`  ${c.label}: ${Math.round(totals / cfg.instrRequests)} instructions/request (non-200 answers: ${warm + counted})`)
          return [c.key, { label: c.label, instructionsPerRequest: Math.round(totals / cfg.instrRequests), non200: warm + counted }]
        } finally {
          await pool.close()
          await stop(proc)
          rmSync(out, { force: true })
          rmSync(`${out}.1`, { force: true })
        }
      }),
    )
    const rows = Object.fromEntries(results)
    const per = (k) => rows[k]?.instructionsPerRequest ?? null
    const ratios = {
      c_over_b: per('b') ? round(per('c') / per('b'), 3) : null,
      ...(rows.ct1 ? { trace1_over_c: round(per('ct1') / per('c'), 3) } : {}),
      ...(rows.cb ? { c_over_before_tracing: round(per('c') / per('cb'), 3) } : {}),
    }
    log(
      `instructions/request: ${Object.entries(rows).map(([k, r]) => `${k} ${r.instructionsPerRequest}`).join(', ')}; (c)/(b) ${ratios.c_over_b}${rows.ct1 ? `, (c+trace1%)/(c) ${ratios.trace1_over_c}` : ''}${rows.cb ? `, (c)/(c before tracing) ${ratios.c_over_before_tracing}` : ''}`,
    )
    return { measuredAt: new Date().toISOString(), warmupRequests: cfg.instrWarmup, countedRequests: cfg.instrRequests, connections: CONNECTIONS, rows, ratios, checks: [] }
  } finally {
    await Promise.all(started.map((p) => stop(p)))
    await stop(sink?.proc)
    await Promise.all([stop(tasks.proc), stop(auth.proc)])
  }
}

/** Exactly `n` GETs of the user's task list over the pool's connections; the count of answers that were not 200. */
export async function requests(pool, user, n) {
  let left = n
  let bad = 0
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (left-- > 0) {
        const res = await pool.request({ path: user.tasksPath, method: 'GET', headers: user.headers })
        await res.body.dump()
        if (res.statusCode !== 200) bad++
      }
    }),
  )
  return bad
}
