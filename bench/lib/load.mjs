/**
 * One autocannon run, in this process, summarised the same way everywhere:
 * requests/s, exact latency percentiles (autocannon's own histogram has 1 ms
 * resolution, too coarse at loopback latencies, so every response time is
 * kept here), status counts, errors and timeouts. Callers can watch each
 * response (with its arrival time) to time faults.
 */
import autocannon from 'autocannon'
import { round } from './proc-stats.mjs'

/** Growable float buffer of latencies in ms; exact percentiles by sorting once at the end. */
export class Latencies {
  constructor() {
    this.buf = new Float64Array(1 << 16)
    this.n = 0
  }
  add(ms) {
    if (this.n === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2)
      next.set(this.buf)
      this.buf = next
    }
    this.buf[this.n++] = ms
  }
  summary() {
    const s = this.buf.subarray(0, this.n).sort()
    const at = (p) => (this.n ? s[Math.min(this.n - 1, Math.ceil((p / 100) * this.n) - 1)] : null)
    let sum = 0
    for (let i = 0; i < this.n; i++) sum += s[i]
    return {
      min: round(this.n ? s[0] : null),
      p50: round(at(50)),
      p90: round(at(90)),
      p99: round(at(99)),
      p999: round(at(99.9)),
      max: round(this.n ? s[this.n - 1] : null),
      mean: round(this.n ? sum / this.n : null),
    }
  }
}

/**
 * opts: url, connections, durationS, method, headers, body, requests
 * (autocannon's, e.g. with onResponse to read bodies), overallRate, timeoutS.
 * onResponse(status, atMs) and onError(error, atMs) see every outcome as it
 * happens (atMs from performance.now()).
 */
export async function runLoad(opts, { onResponse, onError, latencies = new Latencies() } = {}) {
  const errorCodes = {}
  const instance = autocannon({
    url: opts.url,
    connections: opts.connections,
    duration: opts.durationS,
    method: opts.method ?? 'GET',
    headers: opts.headers,
    body: opts.body,
    requests: opts.requests,
    overallRate: opts.overallRate,
    timeout: opts.timeoutS ?? 10,
    pipelining: 1,
  })
  instance.on('response', (_client, status, _bytes, ms) => {
    latencies.add(ms)
    onResponse?.(status, performance.now())
  })
  instance.on('reqError', (err) => {
    const code = err.code ?? err.message
    errorCodes[code] = (errorCodes[code] ?? 0) + 1
    onError?.(err, performance.now())
  })
  // The instance is a thenable: wrap it so callers never await the emitter by accident.
  const result = await new Promise((resolve, reject) => {
    instance.then(resolve, reject)
  })
  const statusCounts = Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, v]) => [code, v.count]))
  const responses = Object.values(statusCounts).reduce((a, b) => a + b, 0)
  return {
    url: opts.url,
    method: opts.method ?? 'GET',
    connections: opts.connections,
    durationS: result.duration,
    responses,
    rps: round(responses / result.duration, 0),
    latencyMs: latencies.summary(),
    statusCounts,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    errorCodes,
  }
}

/** Several runs against one target as one: counts added, rates over the summed time, one latency record. */
export function combineRuns(runs, latencies) {
  const sum = (f) => runs.reduce((a, r) => a + f(r), 0)
  const statusCounts = {}
  const errorCodes = {}
  for (const r of runs) {
    for (const [k, v] of Object.entries(r.statusCounts)) statusCounts[k] = (statusCounts[k] ?? 0) + v
    for (const [k, v] of Object.entries(r.errorCodes)) errorCodes[k] = (errorCodes[k] ?? 0) + v
  }
  const durationS = round(sum((r) => r.durationS), 2)
  const responses = sum((r) => r.responses)
  return {
    url: runs[0].url,
    method: runs[0].method,
    connections: runs[0].connections,
    durationS,
    slices: runs.length,
    responses,
    rps: round(responses / durationS, 0),
    rpsPerSlice: runs.map((r) => r.rps),
    latencyMs: latencies.summary(),
    statusCounts,
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    timeouts: sum((r) => r.timeouts),
    errorCodes,
  }
}

/** Count of responses with exactly this status (0 when none). */
export const countOf = (run, status) => run?.statusCounts?.[status] ?? 0
