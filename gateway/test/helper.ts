/** Gateway test kit: real upstream servers on port 0, a gateway in front, tokens signed like the auth-service. */
import Fastify, { type FastifyInstance } from 'fastify'
import { SignJWT } from 'jose'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { IncomingHttpHeaders } from 'node:http'
import { Writable } from 'node:stream'
import { loadConfig } from '@tollgate/common'
import { buildApp, type BuildOptions } from '../src/app.js'
import { configSchema, type Config } from '../src/config.js'

export const SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz'

export interface Seen {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: unknown
}

export interface Upstream {
  url: string
  /** Requests proxied to this upstream (revocation feed polls and /openapi.json reads are not listed). */
  seen: Seen[]
  app: FastifyInstance
  /** Change how the next requests are answered; `hold` keeps them unanswered until the test ends. */
  behave: { delayMs: number; status: number; hold: boolean }
  /** Requests held unanswered now (`behave.hold`). */
  holding: number
  /** What the revocation feed serves, as the auth-service would: add a jti to revoke it. */
  revoked: Array<{ jti: string; exp: number }>
  feedUp: boolean
  /** Revocation feed requests answered so far (a gateway polls one after another). */
  feedPolls: number
}

type Tap = { teardown(fn: () => unknown): void }

/** A fresh directory under the system's temporary one, removed when the test (`t`) ends. */
export function tempDir(t: Tap, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export async function startUpstream(t: Tap): Promise<Upstream> {
  const seen: Seen[] = []
  const behave = { delayMs: 0, status: 200, hold: false }
  let release!: () => void
  const released = new Promise<void>((r) => (release = r))
  const revoked: Array<{ jti: string; exp: number }> = []
  const app = Fastify()
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body))
  const upstream = { url: '', seen, app, behave, revoked, feedUp: true, holding: 0, feedPolls: 0 }
  app.get('/internal/revocations', async (_request, reply) => {
    upstream.feedPolls++
    if (!upstream.feedUp) return reply.code(503).send({ detail: 'down', error_code: 'SERVICE_UNAVAILABLE', status_code: 503 })
    return { cursor: revoked.length, reset: false, more: false, revoked }
  })
  // What the gateway reads for /docs; like the feed, not counted as proxied traffic.
  app.get('/openapi.json', async () => ({ openapi: '3.0.3', info: { title: 'test', version: '0' }, paths: {} }))
  app.all('/*', async (request, reply) => {
    seen.push({ method: request.method, url: request.url, headers: request.headers, body: request.body })
    if (behave.delayMs) await new Promise((r) => setTimeout(r, behave.delayMs))
    if (behave.hold) {
      upstream.holding++
      await released
      upstream.holding--
    }
    reply.code(behave.status)
    return behave.status === 204 ? undefined : { ok: true, url: request.url }
  })
  upstream.url = await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => {
    release()
    return app.close()
  })
  return upstream
}

export function gatewayConfig(overrides: Partial<Record<keyof Config, unknown>> = {}): Config {
  return loadConfig(configSchema, {
    BETTER_AUTH_SECRET: SECRET,
    LOG_LEVEL: 'silent',
    AUTH_SERVICE_URL: 'http://127.0.0.1:1',
    TASK_SERVICE_URL: 'http://127.0.0.1:1',
    ...overrides,
  })
}

/**
 * A gateway in front of the given upstreams; without an auth upstream, one
 * that only serves the revocation feed. `opts` may set its clock and log stream.
 */
export async function buildGateway(t: Tap, overrides: Partial<Record<keyof Config, unknown>> = {}, opts: BuildOptions = {}) {
  if (!overrides.AUTH_SERVICE_URL) overrides = { ...overrides, AUTH_SERVICE_URL: (await startUpstream(t)).url }
  const app = await buildApp(gatewayConfig(overrides), opts)
  t.teardown(() => app.close())
  await app.ready()
  return app
}

export interface TokenOptions {
  sub?: string | null
  secret?: string
  iss?: string
  aud?: string
  expiresIn?: string | number
  alg?: string
  /** The typ header (default at+jwt, our access tokens'); null: none. */
  typ?: string | null
  extra?: Record<string, unknown>
}

export async function token(opts: TokenOptions = {}): Promise<string> {
  const payload: Record<string, unknown> = { email: 'a@example.com', name: 'A', ...opts.extra }
  const jwt = new SignJWT(payload)
    .setProtectedHeader({ alg: opts.alg ?? 'HS256', ...(opts.typ === null ? {} : { typ: opts.typ ?? 'at+jwt' }) })
    .setIssuedAt()
    .setJti(randomUUID())
    .setIssuer(opts.iss ?? 'tollgate')
    .setAudience(opts.aud ?? 'tollgate-api')
    .setExpirationTime(opts.expiresIn ?? '1h')
  if (opts.sub !== null) jwt.setSubject(opts.sub ?? randomUUID())
  return jwt.sign(new TextEncoder().encode(opts.secret ?? SECRET))
}

export function subOf(jwt: string): string {
  return JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).sub
}

/**
 * A clock for the gateway that stands still until the test moves it (instead
 * of sleeping). It starts at the real time, so real tokens' iat and exp
 * (within the clock tolerance) make sense to it.
 */
export function testClock() {
  let at = Date.now()
  return {
    now: () => at,
    advance(ms: number) {
      at += ms
    },
  }
}

/** Log lines the gateway writes, parsed. */
export function logCapture() {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(JSON.parse(line))
      done()
    },
  })
  return { stream, lines, count: (msg: string) => lines.filter((l) => l.msg === msg).length }
}

/** Wait for a condition the test drives (events, not time); the deadline only keeps a broken build from hanging. */
export function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const tick = () => {
      if (check()) return resolve()
      if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${what}`))
      setTimeout(tick, 10)
    }
    tick()
  })
}
