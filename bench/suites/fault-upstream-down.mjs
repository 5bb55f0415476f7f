/**
 * Fault (i): the task upstream is SIGKILLed under load, then restarted on the
 * same port. Measures kill -> first error answer, that errors are 502/503 in
 * the envelope and nothing hangs, that auth routes (another upstream) keep
 * answering, and restart -> first 200 with the same gateway process.
 */
import { startGateway, startUpstream } from '../lib/stack.mjs'
import { sleep, stop } from '../lib/procs.mjs'
import { runLoad } from '../lib/load.mjs'
import { round } from '../lib/proc-stats.mjs'
import { benchUser, check, expectStatus, waitQuiet } from '../lib/scenario.mjs'

const FIRST_ERROR_TARGET_MS = 100

export async function upstreamDown(cfg, log) {
  const user = await benchUser()
  let tasks = await startUpstream({ name: 'tasks-upstream' })
  const auth = await startUpstream({ name: 'auth-upstream' })
  const totalS = Math.max(cfg.faultS, 4) + 2
  const killAtMs = totalS * 300 // 30 % in
  const restartAtMs = totalS * 600 // 60 % in
  const t = { kill: null, firstError: null, restartSpawn: null, restartReady: null, firstOk: null }
  const phases = { before: {}, outage: {}, after: {} }
  let gw
  let tasksRun
  let authRun
  let envelope
  let gatewayAlive = false
  try {
    gw = await startGateway({ tasksUrl: tasks.url, authUrl: auth.url })
    const url = gw.url + user.tasksPath
    await expectStatus(url, { headers: user.headers })
    await waitQuiet(log)
    log(`  (i) ${totalS}s of GET tasks (${cfg.connections} conns) + GET /api/auth/me (5 conns); SIGKILL task upstream at ${killAtMs / 1000}s, restart at ${restartAtMs / 1000}s`)

    const onResponse = (status, at) => {
      const phase = t.kill === null || at < t.kill ? 'before' : t.restartReady === null || at < t.restartReady ? 'outage' : 'after'
      phases[phase][status] = (phases[phase][status] ?? 0) + 1
      if (t.kill !== null && t.firstError === null && status >= 300 && at >= t.kill) t.firstError = at
      if (t.restartReady !== null && t.firstOk === null && status === 200 && at >= t.restartReady) t.firstOk = at
    }
    const loads = Promise.all([
      runLoad({ url, headers: user.headers, connections: cfg.connections, durationS: totalS, timeoutS: 5 }, { onResponse }),
      runLoad({ url: `${gw.url}/api/auth/me`, headers: user.headers, connections: 5, durationS: totalS, timeoutS: 5 }),
    ])
    const t0 = performance.now()
    await sleep(killAtMs)
    process.kill(tasks.proc.pid, 'SIGKILL')
    t.kill = performance.now()
    await tasks.proc.exitPromise
    log(`  (i) task upstream killed at ${round((t.kill - t0) / 1000, 1)}s`)
    await sleep(200)
    const res = await fetch(url, { headers: user.headers, signal: AbortSignal.timeout(5000) })
    envelope = { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.json().catch(() => null) }
    await sleep(Math.max(0, restartAtMs - (performance.now() - t0)))
    t.restartSpawn = performance.now()
    tasks = await startUpstream({ name: 'tasks-upstream', port: tasks.port })
    t.restartReady = performance.now()
    log(`  (i) task upstream back on port ${tasks.port} at ${round((t.restartReady - t0) / 1000, 1)}s`)
    ;[tasksRun, authRun] = await loads
    gatewayAlive = gw.proc.exited === null
  } finally {
    await stop(gw?.proc)
    await Promise.all([stop(tasks.proc), stop(auth.proc)])
  }

  const ms = (a, b) => (a === null || b === null ? null : round(b - a, 1))
  const outageCodes = Object.keys(phases.outage).map(Number)
  const result = {
    measuredAt: new Date().toISOString(),
    timeline: { totalS, killAtS: killAtMs / 1000, restartAtS: restartAtMs / 1000 },
    killToFirstErrorMs: ms(t.kill, t.firstError),
    restartReadyToFirst200Ms: ms(t.restartReady, t.firstOk),
    restartSpawnToFirst200Ms: ms(t.restartSpawn, t.firstOk),
    statusByPhase: phases,
    sampleErrorAnswer: envelope,
    tasks: tasksRun,
    auth: authRun,
  }
  const envOk = envelope && [502, 503].includes(envelope.status) && envelope.body?.status_code === envelope.status && typeof envelope.body?.error_code === 'string' && typeof envelope.body?.detail === 'string'
  result.checks = [
    check('i-first-error', '(i) kill -> first error answer', `< ${FIRST_ERROR_TARGET_MS} ms`, result.killToFirstErrorMs, result.killToFirstErrorMs !== null && result.killToFirstErrorMs < FIRST_ERROR_TARGET_MS),
    check('i-codes', '(i) answers while down', '502/503 only, in the envelope', `${outageCodes.join('/') || 'none'}; sample ${envelope?.status} ${envelope?.body?.error_code ?? ''}`, envOk && outageCodes.every((c) => c === 200 || c === 502 || c === 503)),
    check('i-no-hang', '(i) requests without an answer (5 s client timeout), connection errors', '0', tasksRun.timeouts + tasksRun.errors, tasksRun.timeouts + tasksRun.errors === 0),
    check('i-auth', '(i) auth route (other upstream) non-2xx, errors', '0', authRun.non2xx + authRun.errors, authRun.non2xx + authRun.errors === 0),
    check('i-recover', '(i) upstream back -> first 200, same gateway process', 'recovers (no restart)', result.restartReadyToFirst200Ms === null ? 'never' : `${result.restartReadyToFirst200Ms} ms`, gatewayAlive && result.restartReadyToFirst200Ms !== null),
  ]
  log(`  (i) kill -> first error ${result.killToFirstErrorMs} ms; upstream back -> first 200 ${result.restartReadyToFirst200Ms} ms; outage codes ${JSON.stringify(phases.outage)}; max latency ${tasksRun.latencyMs.max} ms; auth non-2xx ${authRun.non2xx}`)
  return result
}
