/**
 * One wrk run (Debian's wrk 4, a separate C process), summarised in the shape
 * of load.mjs's runLoad so the two tools sit in one table: requests/s,
 * latency percentiles, non-2xx, errors, timeouts. wrk's own text (`--latency`)
 * gives the request count; the script's done() hook adds the whole latency
 * histogram, so slices merge into exact percentiles.
 */
import { execFileSync, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { round } from './proc-stats.mjs'

const SCRIPT = fileURLToPath(new URL('./wrk-load.lua', import.meta.url))

/** Why wrk cannot run here, or null when it can. */
export function wrkMissing() {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' })
    return null
  } catch (err) {
    // `wrk --version` prints its usage and exits 1: only a missing binary is a problem.
    if (err.code !== 'ENOENT') return null
    return 'wrk not found (Debian/Ubuntu: apt-get install -y wrk)'
  }
}

/** Latency histogram in whole microseconds (value -> count), merged over slices; percentiles as Latencies gives them. */
export class Histogram {
  constructor() {
    this.counts = new Map()
    this.n = 0
  }
  addAll(pairs) {
    for (const [us, count] of pairs) {
      this.counts.set(us, (this.counts.get(us) ?? 0) + count)
      this.n += count
    }
  }
  summary() {
    const values = [...this.counts.keys()].sort((a, b) => a - b)
    const ms = (us) => round(us / 1000)
    const at = (p) => {
      if (!this.n) return null
      const rank = Math.min(this.n, Math.ceil((p / 100) * this.n))
      let seen = 0
      for (const v of values) {
        seen += this.counts.get(v)
        if (seen >= rank) return ms(v)
      }
      return ms(values.at(-1))
    }
    let sum = 0
    for (const [v, c] of this.counts) sum += v * c
    return {
      min: this.n ? ms(values[0]) : null,
      p50: at(50),
      p90: at(90),
      p99: at(99),
      p999: at(99.9),
      max: this.n ? ms(values.at(-1)) : null,
      mean: this.n ? round(sum / this.n / 1000) : null,
    }
  }
}

/**
 * opts: url, connections, durationS (whole seconds: wrk takes no fractions), headers, timeoutS.
 * One wrk thread: the load side has one CPU, and more threads on it only add switches.
 */
export async function runWrk(opts, { histogram = new Histogram() } = {}) {
  const durationS = Math.max(1, Math.round(opts.durationS))
  const args = ['-t', '1', '-c', String(opts.connections), '-d', `${durationS}s`, '--timeout', `${opts.timeoutS ?? 10}s`, '--latency', '-s', SCRIPT, opts.url]
  const headers = Object.entries(opts.headers ?? {})
    .map(([k, v]) => `${k}: ${v}`)
    .join('\n')
  const text = await new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { env: { ...process.env, BENCH_WRK_HEADERS: headers }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (c) => (out += c))
    child.stderr.setEncoding('utf8').on('data', (c) => (err += c))
    child.on('error', reject)
    // 'close', not 'exit': at 'exit' wrk's last output may still be unread in the pipe (seen with several wrk
    // processes ending at once: the result line missing or cut short).
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk exited with ${code}: ${(err || out).slice(-500)}`))))
  })
  return parseWrk(text, opts, histogram)
}

/** wrk's text report plus the script's BENCH_WRK_RESULT line -> the runLoad shape. */
export function parseWrk(text, opts, histogram = new Histogram()) {
  const line = /^BENCH_WRK_RESULT (.*)$/m.exec(text)
  if (!line) throw new Error(`wrk printed no result line:\n${text.slice(-800)}`)
  const r = JSON.parse(line[1])
  // The human report must agree with the hook: the count is the one figure both print.
  const shown = /^\s*(\d+) requests in /m.exec(text)
  if (!shown || Number(shown[1]) !== r.requests) throw new Error(`wrk's report and its done() hook disagree on the request count:\n${text.slice(-800)}`)
  histogram.addAll(r.latencyUs)
  const durationS = round(r.durationUs / 1e6, 3)
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? r.errors.status)
  const errors = r.errors.connect + r.errors.read + r.errors.write
  return {
    tool: 'wrk',
    url: opts.url,
    method: 'GET',
    connections: opts.connections,
    durationS,
    // wrk counts every completed response in `requests`, and those with status >= 400 apart (its "Non-2xx or 3xx").
    responses: r.requests,
    rps: round(r.requests / durationS, 0),
    latencyMs: histogram.summary(),
    statusCounts: { '<400': r.requests - non2xx, ...(non2xx ? { '>=400': non2xx } : {}) },
    non2xx,
    errors,
    timeouts: r.errors.timeout,
    errorCodes: Object.fromEntries(['connect', 'read', 'write', 'timeout'].filter((k) => r.errors[k]).map((k) => [k, r.errors[k]])),
  }
}
