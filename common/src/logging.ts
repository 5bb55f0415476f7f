/**
 * pino through Fastify. JSON lines; secrets are redacted at the logger so no
 * code path can print a token, a password or a proof.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify'
import { writeSync } from 'node:fs'
import { pino } from 'pino'
import { tracingChannel } from 'node:diagnostics_channel'
import { IdentityHeader } from './contracts.js'

/**
 * Explicit paths only (wildcards cost on every line). Headers are never
 * logged by our serializers; these catch a careless `log.info({ headers })`
 * or `log.info({ body })`.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  `req.headers["${IdentityHeader.signature}"]`,
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'password',
  'token',
  'body.password',
  'body.token',
  'user.password_hash',
]

/** Credentials a careless client may put in a query string: never logged. */
const SECRET_QUERY = /([?&](?:access_token|token|id_token|refresh_token|password|secret|api_key)=)[^&#]*/gi

export function redactUrl(url: string): string {
  return url.includes('?') ? url.replace(SECRET_QUERY, '$1[redacted]') : url
}

export function loggerOptions(level: string, service: string): FastifyServerOptions['logger'] {
  return {
    level,
    base: { service },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      // Method and URL only (no headers: they hold the bearer token and proofs).
      req: (req: { method: string; url: string }) => ({ method: req.method, url: redactUrl(req.url) }),
    },
  }
}

/**
 * The access line of one request: what it was, how it ended, who sent it. `ip` is the client's address as
 * TRUST_PROXY resolves it; bytes are the declared body lengths (an extension may give the counted ones). Headers
 * other than the user agent are never logged. An extension (the gateway's) adds its own fields to the same object.
 */
export interface AccessLine {
  method: string
  url: string
  status: number
  ms: number
  ip: string
  userAgent: string | undefined
  bytesIn: number
  bytesOut: number | undefined
  [field: string]: unknown
}

export type AccessLogExtension = (request: FastifyRequest, reply: FastifyReply, line: AccessLine) => void

export function accessLine(request: FastifyRequest, reply: FastifyReply): AccessLine {
  const lengthIn = request.headers['content-length']
  const lengthOut = reply.getHeader('content-length')
  return {
    method: request.method,
    url: redactUrl(request.url),
    status: reply.statusCode,
    ms: Math.round(reply.elapsedTime * 10) / 10,
    ip: request.ip,
    userAgent: request.headers['user-agent'],
    bytesIn: lengthIn === undefined ? 0 : Number(lengthIn),
    bytesOut: lengthOut === undefined || request.method === 'HEAD' ? undefined : Number(lengthOut),
  }
}

export const ACCESS_MESSAGE = 'request completed'

const S = pino.symbols as typeof pino.symbols & { msgPrefixSym: symbol }
const INFO = 30
const MESSAGE_FIELD = `,"msg":${JSON.stringify(ACCESS_MESSAGE)}`
/** pino's own serialisation channel: a subscriber (an APM agent) sees lines only when pino writes them. */
const pinoSerialisation = tracingChannel('pino_asJson')

/** What writeAccessLine reads of a pino logger: its own state, under pino's exported symbols. */
interface PinoState {
  levelVal: number
  info(obj: object, msg: string): void
  [key: symbol]: unknown
}

/**
 * `log.info(line, 'request completed')`, byte for byte as pino writes it, for about 1 us less a line: pino's
 * generic serialiser (a type switch and a string escape per field) against one JSON.stringify of the line
 * (lab microbenchmark, Node 24, child logger and line included: 2.2-3.9 us through pino, 1.6-2.3 here). Only
 * the line is built here; the level, time, bindings (request id, trace ids) and destination are the logger's
 * own. Any logger state that would change the output (redaction or a serialiser naming one of the line's
 * fields, a mixin, a log formatter, a nested key, a message prefix, a stream hook, a multistream, a subscriber
 * to pino's serialisation channel) or a value JSON cannot hold sends the line through pino itself;
 * access-line.test.ts checks both paths against pino's output.
 */
export function writeAccessLine(log: FastifyBaseLogger, line: AccessLine): void {
  const l = log as unknown as PinoState
  if (l.levelVal > INFO) return
  const chindings = l[S.chindingsSym]
  const stream = l[S.streamSym] as { write(s: string): unknown; [key: symbol]: unknown } | undefined
  if (typeof chindings !== 'string' || stream === undefined || !plainLogger(l, stream) || !plainFields(l, line)) {
    l.info(line, ACCESS_MESSAGE)
    return
  }
  let fields: string
  try {
    fields = JSON.stringify(line)
  } catch {
    l.info(line, ACCESS_MESSAGE) // a BigInt or a cycle: pino's safe serialiser copes
    return
  }
  const cache = l[S.lsCacheSym] as Record<number, string>
  const time = (l[S.timeSym] as () => string)()
  // fields is "{...}": its members go after the bindings; an empty line adds none.
  const members = fields.length > 2 ? `,${fields.slice(1, -1)}` : ''
  stream.write(cache[INFO]! + time + chindings + members + MESSAGE_FIELD + (l[S.endSym] as string))
}

function plainLogger(l: PinoState, stream: { [key: symbol]: unknown }): boolean {
  const formatters = l[S.formattersSym] as { log?: unknown } | undefined
  const hooks = l[S.hooksSym] as { streamWrite?: unknown } | undefined
  return (
    !pinoSerialisation.hasSubscribers &&
    l[S.mixinSym] === undefined &&
    formatters?.log === undefined &&
    l[S.nestedKeySym] == null &&
    !l[S.msgPrefixSym] &&
    hooks?.streamWrite === undefined &&
    stream[S.needsMetadataGsym] !== true &&
    l[S.messageKeySym] === 'msg' &&
    (l[S.stringifiersSym] as Record<symbol, unknown>)[S.wildcardFirstSym] === undefined
  )
}

/** No field of the line is redacted or serialised by the logger (its serialisers and redaction stringifiers are by top-level key). */
function plainFields(l: PinoState, line: AccessLine): boolean {
  const stringifiers = l[S.stringifiersSym] as Record<string, unknown>
  const serializers = l[S.serializersSym] as Record<string, unknown>
  for (const key in line) {
    if (stringifiers[key] !== undefined || serializers[key] !== undefined) return false
  }
  return true
}

/** A client's request id is kept only when it is short and plain; otherwise we mint one. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export function genReqId(req: IncomingMessage): string {
  return saneRequestId(req) ?? randomUUID()
}

/** The client's `x-request-id` when it is one we keep, else undefined. */
export function saneRequestId(req: IncomingMessage): string | undefined {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && SANE_REQUEST_ID.test(given) ? given : undefined
}

export const REQUEST_ID_HEADER = 'x-request-id'

/** The request id's field on every log line of a request (Fastify's requestIdLogLabel). */
export const REQUEST_ID_LOG_LABEL = 'reqId'

const MAX_PENDING_BYTES = 4 * 1024 * 1024

/** Lines gathered in memory, written to a file descriptor in one write. */
export class BufferedLogDestination {
  /** Lines not written yet, as one string: converted to bytes once per flush rather than once per line. */
  private pending = ''
  /** Bytes a full pipe did not take (EAGAIN): they go first at the next flush. */
  private unwritten: Buffer | null = null
  private broken = false
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly fd: number,
    private readonly minBytes = 4096,
    flushEveryMs = 1000,
  ) {
    this.timer = setInterval(() => this.flush(), flushEveryMs)
    this.timer.unref()
  }

  write(chunk: string): boolean {
    // Dropped when the destination is gone, or has taken nothing for a long while (bounded memory).
    // Lengths are counted in characters: at least one byte each, so the thresholds hold in bytes too.
    if (this.broken || this.pending.length + (this.unwritten?.length ?? 0) > MAX_PENDING_BYTES) return true
    this.pending += chunk
    if (this.pending.length >= this.minBytes) this.flush()
    return true
  }

  /**
   * Write what is buffered, never waiting on the destination: EAGAIN (a full non-blocking pipe) keeps the rest for
   * the next flush; any other error (EPIPE: the reader is gone) gives the destination up for good. pino's own
   * buffered destination retried every failed write forever at exit, so a gateway whose stdout pipe had been
   * closed never ended after SIGTERM.
   */
  flush(): void {
    if (this.broken || (this.pending.length === 0 && this.unwritten === null)) return
    const lines = this.pending.length > 0 ? Buffer.from(this.pending) : null
    let data = this.unwritten === null ? lines! : lines === null ? this.unwritten : Buffer.concat([this.unwritten, lines])
    this.pending = ''
    this.unwritten = null
    while (data.length > 0) {
      try {
        data = data.subarray(writeSync(this.fd, data))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') this.unwritten = data
        else this.broken = true
        return
      }
    }
  }

  /** At exit: one last attempt, same rules (the process ends either way). */
  flushSync(): void {
    this.flush()
  }
}

let stdout: BufferedLogDestination | undefined

/**
 * The process's stdout for logs, buffered as Envoy buffers its access log:
 * lines go out once 4 KiB have gathered or every second, whichever is first,
 * so a busy process makes one write for a dozen lines instead of one each
 * (about 3 us a request at 20k req/s). Written synchronously (an async
 * destination measured slower here), and flushed when the process exits,
 * crashes included; a SIGKILL can lose the last second. A destination that
 * fails is dropped, so logging never holds up a request or the exit.
 */
export function stdoutDestination(): BufferedLogDestination {
  if (!stdout) {
    const dest = new BufferedLogDestination(1)
    process.once('exit', () => dest.flushSync())
    stdout = dest
  }
  return stdout
}
