/**
 * The access line's own serialiser (writeAccessLine) against pino's: for the
 * loggers the services build (loggerOptions: redaction, the req serialiser,
 * request ids and trace ids as bindings), every line comes out byte for byte
 * as `log.info(line, 'request completed')` writes it; a logger above info
 * writes nothing; and any logger state that would change pino's output sends
 * the line through pino itself.
 */
import t from 'tap'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { Writable } from 'node:stream'
import { pino, type LoggerOptions } from 'pino'
import type { FastifyBaseLogger } from 'fastify'
import { ACCESS_MESSAGE, loggerOptions, writeAccessLine, type AccessLine } from '../src/index.js'

/** A logger writing into an array, its time fixed so two writes of one line can be compared byte for byte. */
function capture(options: LoggerOptions = loggerOptions('info', 'gateway') as LoggerOptions) {
  const lines: string[] = []
  const stream = { write: (s: string) => void lines.push(s) }
  const log = pino({ ...options, timestamp: () => ',"time":1764683000000' }, stream)
  return { log, lines }
}

/** The line pino writes for `line`, and the one writeAccessLine writes, from the same logger. */
function both(log: pino.Logger, lines: string[], line: AccessLine): [string | undefined, string | undefined] {
  lines.length = 0
  log.info(line, ACCESS_MESSAGE)
  const viaPino = lines[0]
  lines.length = 0
  writeAccessLine(log as unknown as FastifyBaseLogger, line)
  return [viaPino, lines[0]]
}

const base = (): AccessLine => ({
  method: 'GET',
  url: '/api/3f1b2c4d-1111-2222-3333-444455556666/tasks?limit=5',
  status: 200,
  ms: 1.2,
  ip: '127.0.0.1',
  userAgent: 'curl/8.5.0',
  bytesIn: 0,
  bytesOut: 1012,
})

t.test('the lines the services write: byte for byte what pino writes', async (t) => {
  const { log, lines } = capture()
  const request = log.child({ reqId: 'c0ffee-1' })
  const traced = log.child({ reqId: 'c0ffee-2', trace_id: '4bf92f3577b34da6a3ce929d0e0e4736', span_id: '00f067aa0ba902b7' })
  const cases: Array<[string, AccessLine]> = [
    ['plain', base()],
    ['no user agent, no length out (HEAD)', { ...base(), userAgent: undefined, bytesOut: undefined }],
    ['the gateway extension', { ...base(), userId: '3f1b2c4d', caller: 'service:task-service', upstream: 'tasks', target: 'tasks:3002@10.0.0.7', upstreamMs: 0.8 }],
    ['quotes, backslashes and control characters', { ...base(), url: '/a"b\\c\u0001d', userAgent: 'ua "quoted" \\ \t\n\u007f' }],
    ['long strings (pino escapes them another way)', { ...base(), userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "x"' }],
    ['latin-1 characters, as Node decodes header values', { ...base(), userAgent: 'caf\u00e9 \u00ff\u00a0' }],
    ['numbers JSON cannot hold', { ...base(), ms: Number.NaN, bytesIn: Number.POSITIVE_INFINITY, bytesOut: -0 }],
    ['large and small numbers', { ...base(), ms: 1e21, bytesIn: 5e-7, bytesOut: Number.MAX_SAFE_INTEGER }],
    ['booleans and null', { ...base(), cached: true, upstream: null }],
  ]
  for (const logger of [request, traced, log]) {
    for (const [name, line] of cases) {
      const [viaPino, fast] = both(logger, lines, line)
      t.ok(viaPino, `${name}: pino wrote a line`)
      t.equal(fast, viaPino, name)
    }
  }
})

t.test('random latin-1 strings and numbers: byte for byte what pino writes', async (t) => {
  const { log, lines } = capture()
  const request = log.child({ reqId: 'r' })
  // A fixed seed: a failure names the case it fails on again.
  let seed = 12345
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
  const text = () => String.fromCharCode(...Array.from({ length: Math.floor(random() * 60) }, () => Math.floor(random() * 256)))
  let same = 0
  for (let i = 0; i < 2000; i++) {
    const line = { ...base(), url: text(), userAgent: random() < 0.2 ? undefined : text(), ms: Math.round(random() * 1e5) / 10, status: 100 + Math.floor(random() * 500), target: text() }
    const [viaPino, fast] = both(request, lines, line)
    if (fast === viaPino) same++
    else t.equal(fast, viaPino, `case ${i}`)
  }
  t.equal(same, 2000)
})

t.test('a logger above info (a probe route at warn) writes nothing', async (t) => {
  const { log, lines } = capture()
  writeAccessLine(log.child({ reqId: 'x' }, { level: 'warn' }) as unknown as FastifyBaseLogger, base())
  writeAccessLine(capture({ level: 'silent' }).log as unknown as FastifyBaseLogger, base())
  t.same(lines, [])
})

t.test('logger state that changes the output: the line goes through pino', async (t) => {
  const redacting = capture({ ...(loggerOptions('info', 'gateway') as LoggerOptions) })
  const cases: Array<[string, ReturnType<typeof capture>, AccessLine]> = [
    ['a redacted field (token)', redacting, { ...base(), token: 'secret' }],
    ['a field a serialiser owns (req)', redacting, { ...base(), req: { method: 'GET', url: '/?token=x', headers: { authorization: 'y' } } }],
    ['a mixin', capture({ mixin: () => ({ region: 'eu' }) }), base()],
    ['a log formatter', capture({ formatters: { log: (o) => ({ ...o, formatted: true }) } }), base()],
    ['a nested key', capture({ nestedKey: 'payload' }), base()],
    ['another message key', capture({ messageKey: 'message' }), base()],
    ['a wildcard redaction', capture({ redact: ['*.secret'] }), { ...base(), extra: { secret: 'x' } }],
    ['a stream hook', capture({ hooks: { streamWrite: (s) => s.replace('GET', 'G_T') } }), base()],
  ]
  for (const [name, { log, lines }, line] of cases) {
    const [viaPino, fast] = both(log, lines, line)
    t.equal(fast, viaPino, name)
  }
  const prefixed = capture()
  const child = prefixed.log.child({ reqId: 'p' }, { msgPrefix: '[edge] ' })
  t.equal(both(child, prefixed.lines, base())[1], both(child, prefixed.lines, base())[0], 'a message prefix')
  t.match(both(child, prefixed.lines, base())[1], /"msg":"\[edge\] request completed"/)
  const { log, lines } = capture()
  const [viaPino, fast] = both(log, lines, { ...base(), big: 10n } as unknown as AccessLine)
  t.equal(fast, viaPino, 'a value JSON.stringify refuses (BigInt): pino serialises it')
  t.notOk(JSON.stringify(JSON.parse(fast!)).includes('"token":"secret"'))
  t.match(both(redacting.log, redacting.lines, { ...base(), token: 'secret' })[1], /"token":"\[redacted\]"/, 'redaction held')
})

t.test("a subscriber to pino's serialisation channel sees the access line", async (t) => {
  const { log, lines } = capture()
  const seen: unknown[] = []
  const onStart = (message: unknown) => void seen.push(message)
  subscribe('tracing:pino_asJson:start', onStart)
  try {
    writeAccessLine(log as unknown as FastifyBaseLogger, base())
  } finally {
    unsubscribe('tracing:pino_asJson:start', onStart)
  }
  t.equal(seen.length, 1)
  t.equal(lines.length, 1)
})

t.test('a multistream destination (it needs the level of each line): pino writes', async (t) => {
  const out: string[] = []
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => void (out.push(chunk.toString()), done()) })
  const log = pino({ timestamp: () => ',"time":1' }, pino.multistream([{ stream: sink, level: 'info' }]))
  writeAccessLine(log as unknown as FastifyBaseLogger, base())
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(out.length, 1)
  t.match(out[0], /"msg":"request completed"/)
})

t.test("the services' loggers take the fast path: pino's serialiser is not called for the line", async (t) => {
  const { log, lines } = capture()
  const asJson = pino.symbols.asJsonSym
  const internals = log as unknown as Record<symbol, (...args: unknown[]) => string>
  const original = internals[asJson]!
  let calls = 0
  internals[asJson] = function counted(this: unknown, ...args: unknown[]) {
    calls++
    return original.apply(this, args)
  }
  writeAccessLine(log.child({ reqId: 'a' }) as unknown as FastifyBaseLogger, base())
  writeAccessLine(log.child({ reqId: 'b', trace_id: 't', span_id: 's' }) as unknown as FastifyBaseLogger, { ...base(), userId: 'u' })
  t.equal(lines.length, 2)
  t.equal(calls, 0, 'written without pino serialising it')
  log.child({ reqId: 'c' }).info(base(), ACCESS_MESSAGE)
  t.equal(calls, 1, 'the counter counts pino serialising')
})
