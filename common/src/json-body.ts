/**
 * The JSON body parser every Tollgate process uses: Fastify's own (with
 * secure-json-parse's __proto__ and constructor poisoning checks), behind a
 * linear scan that refuses a body nested deeper than the API could ever need.
 * JSON.parse is iterative in V8 and would happily build half a million nested
 * arrays; what comes after it (validation, re-serialising, logging) is
 * recursive and blows the stack or blocks the event loop. The scan stops at
 * the first bracket over the limit, so a hostile body costs a few bytes of work.
 */
import type { FastifyInstance } from 'fastify'
import { ErrorCode, HttpError } from './errors.js'

/** Deepest nesting accepted (System.Text.Json's default); the API's own bodies are depth 1. */
export const MAX_JSON_DEPTH = 64

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d

/**
 * Whether `text` opens more than `maxDepth` arrays or objects at once.
 * Brackets inside strings do not count; malformed JSON is left to the parser.
 */
export function exceedsJsonDepth(text: string, maxDepth: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === BACKSLASH) i++
      else if (c === QUOTE) inString = false
    } else if (c === QUOTE) {
      inString = true
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > maxDepth) return true
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--
    }
  }
  return false
}

export class JsonTooDeepError extends HttpError {
  constructor(maxDepth: number) {
    super(400, ErrorCode.VALIDATION_ERROR, `JSON body is nested more than ${maxDepth} levels deep`)
  }
}

/** Replace the app's application/json parser with the depth-bounded one. Call on the root instance. */
export function installJsonBodyParser(app: FastifyInstance, maxDepth = MAX_JSON_DEPTH): void {
  const config = app.initialConfig as { onProtoPoisoning?: string; onConstructorPoisoning?: string }
  const parse = app.getDefaultJsonParser(
    (config.onProtoPoisoning ?? 'error') as 'error',
    (config.onConstructorPoisoning ?? 'error') as 'error',
  )
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    // No body at all, only the header (many HTTP clients send it on every POST/DELETE): no body, not an error.
    if ((body as string).length === 0) {
      done(null, undefined)
      return
    }
    if (exceedsJsonDepth(body as string, maxDepth)) {
      done(new JsonTooDeepError(maxDepth), undefined)
      return
    }
    parse(request, body as string, done)
  })
}
