/**
 * GET /ready and GET /metrics as route handlers, so that a process can serve
 * them on the listener of its choice (the services on their own port, the
 * gateway on its admin listener, never on the public one).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Registry } from 'prom-client'
import { envelope, ErrorCode } from './errors.js'

/**
 * Readiness checks: each resolves when its dependency answers (a string it
 * resolves to is shown as that check's state, e.g. "degraded"); a rejection
 * makes the process not ready.
 */
export type ReadinessChecks = Record<string, () => Promise<unknown>>

/** 200 `{status: 'ready', checks}`, or 503 in the envelope with the checks and the failing one named. */
export function readinessHandler(checksNow: ReadinessChecks | (() => ReadinessChecks)) {
  return async (_request: FastifyRequest, reply: FastifyReply) => {
    const readiness = typeof checksNow === 'function' ? checksNow() : checksNow
    const checks: Record<string, string> = {}
    let ready = true
    await Promise.all(
      Object.entries(readiness).map(async ([name, check]) => {
        try {
          const state = await withTimeout(check(), 2000)
          checks[name] = typeof state === 'string' ? state : 'ok'
        } catch {
          checks[name] = 'unavailable'
          ready = false
        }
      }),
    )
    if (!ready) {
      reply.code(503).header('retry-after', '2')
      return { ...envelope(503, ErrorCode.SERVICE_UNAVAILABLE, 'Not ready'), checks }
    }
    return { status: 'ready', checks }
  }
}

/** Prometheus text of the registry. */
export function metricsHandler(registry: Registry) {
  return async (_request: FastifyRequest, reply: FastifyReply) => {
    reply.type(registry.contentType)
    return registry.metrics()
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}
