/**
 * A span for every query of a pool, child of whatever span is active where
 * the query is made (a request's handler, the outbox delivery); a query made
 * outside any span (a background poll) makes none. Installed
 * only when tracing is on; the pool is untouched otherwise.
 *
 * Hand-made rather than @opentelemetry/instrumentation-pg: that one patches
 * pg through a require hook, which an ESM process gets only with a loader
 * flag on its command line; this wraps the two entry points the services
 * use, `pool.query(...)` and the clients `pool.connect()` hands out.
 */
import type pg from 'pg'
import { context, SpanKind, trace, type Tracer } from '@opentelemetry/api'
import { failSpan } from './tracing.js'

const WRAPPED = Symbol('tollgate.traced')

interface QueryTarget {
  query: (...args: unknown[]) => unknown
  [WRAPPED]?: true
}

export function traceQueries(pool: pg.Pool, tracer: Tracer, database: string): void {
  const attributes = { 'db.system.name': 'postgresql', 'db.namespace': database }
  const wrap = (target: QueryTarget) => {
    if (target[WRAPPED]) return
    target[WRAPPED] = true
    const query = target.query
    target.query = function tracedQuery(this: unknown, ...args: unknown[]) {
      // Callback forms and internal calls (pg-pool's own) pass through.
      if (typeof args[args.length - 1] === 'function') return query.apply(this, args)
      const first = args[0]
      const text = typeof first === 'string' ? first : ((first as { text?: unknown } | undefined)?.text as string | undefined)
      if (typeof text !== 'string') return query.apply(this, args)
      // Only inside a traced operation: a background poll alone is no trace worth its export.
      const active = context.active()
      if (trace.getSpan(active) === undefined) return query.apply(this, args)
      const span = tracer.startSpan(
        spanName(text),
        { kind: SpanKind.CLIENT, attributes: { ...attributes, 'db.query.text': text, 'db.operation.name': operation(text) } },
        active,
      )
      let result: unknown
      try {
        result = query.apply(this, args)
      } catch (err) {
        failSpan(span, err)
        span.end()
        throw err
      }
      return (result as Promise<{ rowCount?: number | null }>).then(
        (res) => {
          if (typeof res?.rowCount === 'number') span.setAttribute('db.response.returned_rows', res.rowCount)
          span.end()
          return res
        },
        (err: unknown) => {
          failSpan(span, err)
          span.end()
          throw err
        },
      )
    }
  }
  wrap(pool as unknown as QueryTarget)
  const connect = pool.connect
  pool.connect = function tracedConnect(this: pg.Pool, ...args: unknown[]) {
    if (args.length > 0) return (connect as (...a: unknown[]) => unknown).apply(this, args)
    return ((connect as () => Promise<pg.PoolClient>).call(this)).then((client) => {
      wrap(client as unknown as QueryTarget)
      return client
    })
  } as typeof pool.connect
}

/** The statement's first keyword: SELECT, INSERT, BEGIN...; a leading CTE's first statement (`WITH t AS (INSERT ...)`: INSERT). */
function operation(text: string): string {
  const m = /^\s*([A-Za-z]+)/.exec(mainStatement(text))
  return m ? m[1]!.toUpperCase() : 'QUERY'
}

/** A task write and its event row are one `WITH t AS (<write>) ...` statement: the write names it. */
function mainStatement(text: string): string {
  const cte = /^\s*WITH\s+(?:RECURSIVE\s+)?[A-Za-z_][A-Za-z0-9_]*\s+AS\s+(?:(?:NOT\s+)?MATERIALIZED\s+)?\(/i.exec(text)
  return cte ? text.slice(cte[0].length) : text
}

/** `SELECT tasks`, `INSERT outbox`: the operation and its first table when one is plain to see. */
function spanName(text: string): string {
  text = mainStatement(text)
  const op = operation(text)
  const table = /\b(?:from|into|update|join)\s+([A-Za-z_][A-Za-z0-9_.]*)/i.exec(text)
  return table && !/^(select)$/i.test(table[1]!) ? `${op} ${table[1]}` : op
}
