/**
 * The fields every answer of an app carries (the gateway's security and CORS
 * fields) and its request id, set on a Fastify reply when a request starts.
 *
 * reply.headers() sets them one at a time: a lower-casing, a read and a write
 * of the reply's header object each, at call sites that see every layout that
 * object takes (V8's slowest, megamorphic, property access); for the gateway's
 * eleven fields that hook was among the largest items its perf profile adds
 * over bare @fastify/http-proxy. A request's header object is empty when it
 * starts, so here it is replaced by a copy of one built at start: V8 copies a
 * plain object's layout and values in one step.
 *
 * Fastify keeps that object under a private symbol (`fastify.reply.headers`,
 * 5.x). Should a release rename it, or the object not be empty, the fields are
 * set through reply.headers() as before; reply-headers.test.ts checks that the
 * copy is what runs with the installed Fastify and that both give the same
 * answer.
 */
import type { FastifyReply } from 'fastify'

type HeaderObject = Record<string, unknown>

/** Sets `fields` and `idField: id` on a reply, as `reply.headers(fields).header(idField, id)` would. */
export type ReplyHeaderSetter = ((reply: FastifyReply, id: string) => void) & {
  /** Whether the last call copied the prepared object (false: reply.headers()); for tests. */
  readonly copied: boolean
}

export function replyHeaderSetter(fields: Record<string, string>, idField: string): ReplyHeaderSetter {
  // Fastify lower-cases every name it is given: the copy must hold what reply.headers() would have stored.
  const template: HeaderObject = {}
  for (const [name, value] of Object.entries(fields)) template[name.toLowerCase()] = value
  const id = idField.toLowerCase()
  /** undefined: not looked for yet; null: not found (this Fastify keeps it elsewhere). */
  let symbol: symbol | null | undefined
  const state = { copied: false }
  const set = (reply: FastifyReply, requestId: string): void => {
    if (symbol === undefined) symbol = headerObjectSymbol(reply)
    if (symbol !== null) {
      const holder = reply as unknown as Record<symbol, HeaderObject>
      if (isEmpty(holder[symbol]!)) {
        const headers = { ...template }
        headers[id] = requestId
        holder[symbol] = headers
        state.copied = true
        return
      }
    }
    state.copied = false
    reply.headers(fields)
    reply.header(idField, requestId)
  }
  return Object.defineProperty(set, 'copied', { get: () => state.copied }) as ReplyHeaderSetter
}

/** The symbol Fastify keeps a reply's header object under, if it is the plain object it should be. */
function headerObjectSymbol(reply: FastifyReply): symbol | null {
  const symbol = Object.getOwnPropertySymbols(reply).find((s) => s.description === 'fastify.reply.headers')
  if (symbol === undefined) return null
  const value = (reply as unknown as Record<symbol, unknown>)[symbol]
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype ? symbol : null
}

function isEmpty(object: HeaderObject): boolean {
  for (const _ in object) return false
  return true
}
