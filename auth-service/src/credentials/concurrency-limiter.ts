/**
 * A bulkhead for expensive work: at most `maxConcurrent` tasks run, at most
 * `maxQueue` wait in line (first come, first served), and anything beyond
 * that is refused at once with 503 and Retry-After, instead of piling up
 * behind the others with no bound on memory or waiting time.
 *
 * For bcrypt: it runs on libuv's thread pool (4 threads by default, shared
 * with fs, dns.lookup and async crypto). Without a cap a sign-in flood queues
 * there without bound: every request waits for all the hashes before it, and
 * so does everything else that needs a thread.
 */
import { errors } from '@tollgate/common'

export interface LimiterOptions {
  maxConcurrent: number
  maxQueue: number
  /** Seconds in the Retry-After of a refusal. */
  retryAfterSeconds?: number
}

export interface LimiterStats {
  running: number
  queued: number
  /** Refused since start (queue full). */
  rejected: number
  /** Highest `running` seen: never above maxConcurrent. */
  peakRunning: number
}

export interface ConcurrencyLimiter {
  /** Runs `task` when a slot is free; throws the 503 HttpError when the line is full. */
  run<T>(task: () => Promise<T>): Promise<T>
  stats(): LimiterStats
}

export function createConcurrencyLimiter(opts: LimiterOptions): ConcurrencyLimiter {
  const waiting: Array<() => void> = []
  let running = 0
  let rejected = 0
  let peakRunning = 0
  const refuse = () => {
    rejected++
    return errors.unavailable('Server is busy, retry later', opts.retryAfterSeconds ?? 1)
  }

  // The slot passes straight to the next in line, so `running` never dips and
  // a newcomer cannot overtake someone waiting.
  const release = () => {
    const next = waiting.shift()
    if (next) next()
    else running--
  }

  return {
    async run(task) {
      if (running < opts.maxConcurrent) {
        running++
        peakRunning = Math.max(peakRunning, running)
      } else if (waiting.length < opts.maxQueue) {
        await new Promise<void>((resolve) => waiting.push(resolve))
      } else {
        throw refuse()
      }
      try {
        return await task()
      } finally {
        release()
      }
    },
    stats: () => ({ running, queued: waiting.length, rejected, peakRunning }),
  }
}
