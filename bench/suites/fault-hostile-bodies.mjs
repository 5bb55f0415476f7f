/**
 * Fault (v): hostile bodies. 20 POST /api/auth/signin whose body is 520,000
 * nested arrays ("[" x 520000 + "]" x 520000, about 1 MB), two in flight at a
 * time, while a /health probe asks again and again over one keep-alive
 * connection. The probe's p99 while those requests run shows whether a body
 * can block the gateway's event loop (target < 50 ms; before the depth bound
 * each one answered 500 and blocked the loop for about 1.2 s). Every hostile
 * answer must be 400 VALIDATION_ERROR in the envelope.
 */
import http from 'node:http'
import { startGateway, startUpstream } from '../lib/stack.mjs'
import { sleep, stop } from '../lib/procs.mjs'
import { Latencies } from '../lib/load.mjs'
import { check, waitQuiet } from '../lib/scenario.mjs'

const REQUESTS = 20
const IN_FLIGHT = 2
const DEPTH = 520_000
const PROBE_GAP_MS = 2
const BASELINE_MS = 2000
const TARGET_MS = 50

/** One GET over the agent: [status, ms], or [error code, ms]. */
function get(url, agent) {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const req = http.get(url, { agent, timeout: 5000 }, (res) => {
      res.resume()
      res.on('end', () => resolve([res.statusCode, performance.now() - t0]))
    })
    req.on('timeout', () => req.destroy(Object.assign(new Error('probe timeout'), { code: 'TIMEOUT' })))
    req.on('error', (err) => resolve([err.code ?? 'error', performance.now() - t0]))
  })
}

/** One POST of a ready-made body over the agent: [status, parsed answer or null]. */
function post(url, agent, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, timeout: 30_000, headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (text += d))
      res.on('end', () => {
        let answer = null
        try {
          answer = JSON.parse(text)
        } catch { /* not JSON: answer stays null */ }
        resolve([res.statusCode, answer])
      })
    })
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })))
    req.on('error', reject)
    req.end(body)
  })
}

/** Ask url back to back (PROBE_GAP_MS apart) until stop.done; latencies and status counts. */
async function probe(url, stopWhen) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const latencies = new Latencies()
  const statusCounts = {}
  while (!stopWhen.done) {
    const [status, ms] = await get(url, agent)
    latencies.add(ms)
    statusCounts[status] = (statusCounts[status] ?? 0) + 1
    await sleep(PROBE_GAP_MS)
  }
  agent.destroy()
  return { samples: latencies.n, latencyMs: latencies.summary(), statusCounts }
}

export async function hostileBodies(cfg, log) {
  const tasks = await startUpstream({ name: 'tasks-upstream' })
  const auth = await startUpstream({ name: 'auth-upstream' })
  // Encoded once: the client's own work must not show up as the gateway's latency.
  const body = Buffer.from('['.repeat(DEPTH) + ']'.repeat(DEPTH))
  const senders = new http.Agent({ keepAlive: true, maxSockets: IN_FLIGHT })
  let gw
  let baseline
  let during
  let alive = false
  let healthAfter = null
  const hostile = { latencies: new Latencies(), statusCounts: {}, errorCodes: {}, nonEnvelope: 0 }
  try {
    gw = await startGateway({ tasksUrl: tasks.url, authUrl: auth.url, env: { RATE_LIMIT_SIGNIN_IP_MAX: '1000000000' } })
    const health = `${gw.url}/health`
    await waitQuiet(log)
    const idle = { done: false }
    const base = probe(health, idle)
    await sleep(BASELINE_MS)
    idle.done = true
    baseline = await base

    log(`  (v) ${REQUESTS} nested bodies (${DEPTH} levels, ${Math.round(body.length / 1024)} KiB each), ${IN_FLIGHT} in flight, /health probed meanwhile`)
    const running = { done: false }
    const probing = probe(health, running)
    let next = 0
    const sender = async () => {
      while (next < REQUESTS) {
        next++
        const t0 = performance.now()
        try {
          const [status, answer] = await post(`${gw.url}/api/auth/signin`, senders, body)
          hostile.statusCounts[status] = (hostile.statusCounts[status] ?? 0) + 1
          if (answer?.status_code !== status || typeof answer?.error_code !== 'string') hostile.nonEnvelope++
        } catch (err) {
          const code = err.code ?? err.name ?? 'error'
          hostile.errorCodes[code] = (hostile.errorCodes[code] ?? 0) + 1
        }
        hostile.latencies.add(performance.now() - t0)
      }
    }
    await Promise.all(Array.from({ length: IN_FLIGHT }, sender))
    running.done = true
    during = await probing
    alive = gw.proc.exited === null
    healthAfter = (await fetch(health, { signal: AbortSignal.timeout(2000) }).catch(() => null))?.status ?? null
  } finally {
    senders.destroy()
    await stop(gw?.proc)
    await Promise.all([stop(tasks.proc), stop(auth.proc)])
  }
  const hostileRun = { statusCounts: hostile.statusCounts, errorCodes: hostile.errorCodes, nonEnvelope: hostile.nonEnvelope, latencyMs: hostile.latencies.summary() }
  const all400 = hostile.statusCounts['400'] === REQUESTS && hostile.nonEnvelope === 0
  const p99 = during.latencyMs.p99
  log(`  (v) hostile answers ${JSON.stringify(hostile.statusCounts)} (p50 ${hostileRun.latencyMs.p50} / max ${hostileRun.latencyMs.max} ms); /health p99 ${p99} ms, max ${during.latencyMs.max} ms over ${during.samples} probes (idle p99 ${baseline.latencyMs.p99} ms)`)
  return {
    measuredAt: new Date().toISOString(),
    config: { requests: REQUESTS, inFlight: IN_FLIGHT, depth: DEPTH, bodyBytes: body.length, probeGapMs: PROBE_GAP_MS },
    hostile: hostileRun,
    probe: during,
    probeIdle: baseline,
    checks: [
      check('v-health-p99', `(v) /health p99 during ${REQUESTS} nested-JSON sign-ins`, `< ${TARGET_MS} ms`, `${p99} ms`, p99 !== null && p99 < TARGET_MS && during.samples > 0),
      check('v-answers', '(v) answers to the nested bodies', `all 400 in the envelope`, JSON.stringify(hostile.statusCounts), all400),
      check('v-alive', '(v) gateway alive, /health after; probe non-200', 'alive, 200; 0', `${alive ? 'alive' : 'exited'}, ${healthAfter}; ${during.samples - (during.statusCounts['200'] ?? 0)}`, alive && healthAfter === 200 && during.statusCounts['200'] === during.samples),
    ],
  }
}
