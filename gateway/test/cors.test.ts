/**
 * The gateway's CORS (src/cors.ts) against @fastify/cors, the library it
 * stands in for on the hot path: the same options, the same requests, and
 * every status, header and body compared. The matrix crosses option sets
 * (listed origins, '*', none, custom lists, empty lists), methods, origins
 * (listed, foreign, 'null', case and slash near-misses, empty), preflight
 * fields present or not, and declared, guarded and unknown paths; then
 * random near-miss origins; then the real gateway's CORS fields against the
 * library's for the same configuration.
 */
import t from 'tap'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import fastifyCors from '@fastify/cors'
import { corsEveryAnswer, corsOptionsOf, installCors, pluginOptionsOf, type CorsOptions, type CorsSection } from '../src/cors.js'
import { buildGateway, startUpstream, subOf, token } from './helper.js'

const SECTIONS: Record<string, CorsSection> = {
  'one origin': { origins: ['https://app.example.com'] },
  'three origins': { origins: ['https://a.example', 'https://b.example:8443', 'http://localhost:3000'] },
  'any origin': { origins: ['*'] },
  'no origin': { origins: [] },
  "'*' among others": { origins: ['https://a.example', '*'] },
  'custom lists': { origins: ['null', 'https://a.example'], methods: ['GET'], allowedHeaders: ['X-Custom'], exposedHeaders: ['X-One', 'X-Two'], maxAgeS: 0 },
  'empty lists': { origins: ['https://a.example'], methods: [], allowedHeaders: [], exposedHeaders: [], maxAgeS: 86_400 },
}

const METHODS = ['GET', 'POST', 'DELETE', 'OPTIONS', 'HEAD', 'PATCH'] as const
const ORIGINS = [
  undefined,
  'https://app.example.com',
  'https://a.example',
  'https://b.example:8443',
  'http://localhost:3000',
  'https://evil.example',
  'null',
  'HTTPS://APP.EXAMPLE.COM',
  'https://a.example/',
  'https://a.example:443',
  'http://a.example',
  '*',
  '',
]
const PATHS = ['/api/u1/tasks', '/guarded', '/nope']
const PREFLIGHT = { 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' }
// Fields of the connection, not of the answer.
const IGNORED = new Set(['date', 'connection', 'keep-alive'])

/** The routes both apps serve: a declared one, one whose own onRequest refuses without a token (as the gateway's routes do), and 404s. */
function routes(app: FastifyInstance): void {
  app.route({
    method: ['GET', 'POST', 'DELETE'],
    url: '/api/:user_id/tasks',
    handler: async (request, reply) => {
      reply.header('vary', 'Accept-Encoding') // an answer's own Vary replaces the one set at onRequest, in both
      return { method: request.method, ok: true }
    },
  })
  app.route({
    method: ['GET', 'POST', 'PATCH'],
    url: '/guarded',
    onRequest: (request, reply, done) => {
      if (request.headers.authorization === undefined) reply.code(401).send({ error_code: 'MISSING_TOKEN' })
      else done()
    },
    handler: async () => ({ guarded: true }),
  })
}

async function ours(o: CorsOptions): Promise<Target> {
  const app = Fastify()
  const every = corsEveryAnswer(o)
  // As createService does with its constant response headers.
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(every)
    done()
  })
  installCors(app, o)
  routes(app)
  await app.ready()
  return app
}

/** What a test sends and compares: a Fastify app, or the plugin's pair below. */
interface Target {
  inject(opts: { method: string; url: string; headers: Record<string, string> }): Promise<LightMyRequestResponse>
  close(): Promise<unknown>
}

/** A genuine preflight: OPTIONS with a non-empty Origin and Access-Control-Request-Method (as Envoy's jwt_authn tells one). */
const isPreflight = (r: { method: string; headers: Record<string, string> }) =>
  r.method === 'OPTIONS' && Boolean(r.headers.origin) && Boolean(r.headers['access-control-request-method'])

/**
 * The plugin as the gateway now behaves: a genuine preflight answered at once (its `preflight: true`), any
 * other OPTIONS left to the routes (its `preflight: false`: its OPTIONS route then answers not found).
 * Neither of its single modes is that: `strictPreflight: false` answered every OPTIONS 204 (which let a bare
 * OPTIONS skip a route's token check, SECURITY.md S-48), strict mode refused the others in text/plain.
 */
async function reference(o: CorsOptions): Promise<Target> {
  const app = async (preflight: boolean) => {
    const a = Fastify()
    await a.register(fastifyCors, { ...pluginOptionsOf(o), preflight })
    routes(a)
    await a.ready()
    return a
  }
  const [preflight, plain] = [await app(true), await app(false)]
  return {
    inject: (opts) => (isPreflight(opts) ? preflight : plain).inject(opts as never),
    close: () => Promise.all([preflight.close(), plain.close()]),
  }
}

interface Request {
  method: (typeof METHODS)[number]
  url: string
  headers: Record<string, string>
}

async function answer(app: Target, r: Request) {
  const res = await app.inject({ method: r.method, url: r.url, headers: r.headers })
  const headers = Object.fromEntries(Object.entries(res.headers).filter(([k]) => !IGNORED.has(k)))
  return { status: res.statusCode, headers, body: res.body }
}

function requests(): Request[] {
  const all: Request[] = []
  for (const method of METHODS) {
    for (const origin of ORIGINS) {
      for (const preflight of [false, true]) {
        for (const url of PATHS) {
          all.push({ method, url, headers: { ...(origin === undefined ? {} : { origin }), ...(preflight ? PREFLIGHT : {}) } })
        }
      }
    }
  }
  return all
}

for (const [name, section] of Object.entries(SECTIONS)) {
  t.test(`${name}: every answer as @fastify/cors gives it`, async (t) => {
    const o = corsOptionsOf(section)
    const [a, b] = [await ours(o), await reference(o)]
    t.teardown(() => Promise.all([a.close(), b.close()]))
    let differing = 0
    const all = requests()
    for (const r of all) {
      const [mine, theirs] = [await answer(a, r), await answer(b, r)]
      if (JSON.stringify(sorted(mine)) !== JSON.stringify(sorted(theirs))) {
        differing++
        if (differing <= 3) t.same(mine, theirs, `${r.method} ${r.url} ${JSON.stringify(r.headers)}`)
      }
    }
    t.equal(differing, 0, `${all.length} requests, none answered differently`)
  })
}

t.test('random near-miss origins: reflected exactly when listed, as the library does', async (t) => {
  const o = corsOptionsOf(SECTIONS['three origins']!)
  const [a, b] = [await ours(o), await reference(o)]
  t.teardown(() => Promise.all([a.close(), b.close()]))
  let seed = 0x2545f491
  const random = (n: number) => {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>> 0) % n
  }
  const mutate = (s: string): string => {
    const i = random(s.length + 1)
    switch (random(6)) {
      case 0:
        return s.slice(0, i) + s.slice(i + 1) // a character dropped
      case 1:
        return s.slice(0, i) + String.fromCharCode(33 + random(94)) + s.slice(i) // one inserted
      case 2:
        return s.slice(0, i) + s.slice(i, i + 1).toUpperCase() + s.slice(i + 1) // case
      case 3:
        return `${s} ` // trailing space (Node trims header values: this one is the listed origin again)
      case 4:
        return `${s}, ${o.origins[random(o.origins.length)]}` // two origins in one field
      default:
        return s // the listed origin itself
    }
  }
  let reflected = 0
  let differing = 0
  for (let i = 0; i < 1000; i++) {
    const origin = mutate(o.origins[random(o.origins.length)]!)
    for (const method of ['GET', 'OPTIONS'] as const) {
      const r: Request = { method, url: '/api/u1/tasks', headers: { origin, ...PREFLIGHT } }
      const [mine, theirs] = [await answer(a, r), await answer(b, r)]
      if (JSON.stringify(sorted(mine)) !== JSON.stringify(sorted(theirs))) {
        differing++
        if (differing <= 3) t.same(mine, theirs, `${method} origin ${JSON.stringify(origin)}`)
      }
      if (mine.headers['access-control-allow-origin'] !== undefined) {
        reflected++
        t.ok(o.origins.includes(String(mine.headers['access-control-allow-origin'])), 'only a listed origin is ever reflected')
      }
    }
  }
  t.equal(differing, 0, '2,000 requests, none answered differently')
  t.ok(reflected > 0 && reflected < 2000, `${reflected} reflected, the rest not`)
})

t.test('a preflight is answered before a route refuses a request without a token', async (t) => {
  const o = corsOptionsOf(SECTIONS['one origin']!)
  const a = await ours(o)
  t.teardown(() => a.close())
  const pre = await a.inject({ method: 'OPTIONS', url: '/guarded', headers: { origin: 'https://app.example.com', ...PREFLIGHT } })
  t.equal(pre.statusCode, 204)
  t.equal(pre.headers['access-control-allow-origin'], 'https://app.example.com')
  t.equal(pre.headers['content-length'], '0', 'a 204 with Content-Length 0 (Safari waits for a body otherwise)')
  t.equal(pre.body, '')
  const refused = await a.inject({ method: 'GET', url: '/guarded', headers: { origin: 'https://app.example.com' } })
  t.equal(refused.statusCode, 401)
  t.equal(refused.headers['access-control-allow-origin'], 'https://app.example.com', 'the refusal is readable by the listed origin')
})

for (const origins of ['http://localhost:3000, https://app.example.com', '*', '']) {
  t.test(`the gateway, CORS_ORIGINS "${origins}": its CORS fields as the library gives them, on every path and answer`, async (t) => {
    const up = await startUpstream(t)
    const gw = await buildGateway(t, { TASK_SERVICE_URL: up.url, AUTH_SERVICE_URL: up.url, CORS_ORIGINS: origins })
    const ref = await reference(corsOptionsOf({ origins: origins.split(', ').filter(Boolean) }))
    t.teardown(() => ref.close())
    const jwt = await token()
    const corsFields = (headers: Record<string, unknown>) => {
      const fields: Record<string, unknown> = Object.fromEntries(Object.entries(headers).filter(([k]) => k.startsWith('access-control-')))
      // Our Origin once (not twice, not lost); the upstream's own Vary may join it on proxied answers.
      const origin = String(headers.vary ?? '')
        .split(',')
        .map((v) => v.trim())
        .filter((v) => v === 'Origin')
      if (origin.length > 0) fields.vary = origin.join(', ')
      return fields
    }
    let compared = 0
    for (const url of [`/api/${subOf(jwt)}/tasks`, '/api/auth/me', '/api/auth/signin', '/nope', '/guarded']) {
      for (const method of METHODS) {
        for (const origin of ['http://localhost:3000', 'https://app.example.com', 'https://evil.example', 'null', undefined]) {
          for (const authorization of [undefined, `Bearer ${jwt}`]) {
            const headers = { ...(origin === undefined ? {} : { origin }), ...(authorization === undefined ? {} : { authorization }), ...(method === 'OPTIONS' ? PREFLIGHT : {}) }
            const mine = await gw.inject({ method, url, headers })
            const theirs = await ref.inject({ method, url: '/guarded', headers })
            const label = `${method} ${url} origin ${origin} ${authorization ? 'with' : 'without'} a token`
            if (isPreflight({ method, headers })) t.equal(mine.statusCode, 204, `${label}: preflight answered at the edge`)
            else if (method === 'OPTIONS') t.not(mine.statusCode, 204, `${label}: no preflight, not answered as one`)
            t.same(corsFields(mine.headers), corsFields(theirs.headers), label)
            compared++
          }
        }
      }
    }
    t.equal(up.seen.filter((s) => s.method === 'OPTIONS').length, 0, 'no preflight reached the service')
    t.ok(compared >= 300)
  })
}

// A difference from the plugin, kept: its hook never ran for answers refused before the hooks (the router's
// 400 and 414, the size and URL checks' 413 and 414), so they had no CORS field at all. Ours are constant
// fields of every answer: those carry them too, and a listed Origin is still not reflected on them.
t.test('refusals before any hook carry the constant CORS fields, never a reflected origin', async (t) => {
  const up = await startUpstream(t)
  const listed = await buildGateway(t, { TASK_SERVICE_URL: up.url, AUTH_SERVICE_URL: up.url, CORS_ORIGINS: 'https://app.example.com' })
  const any = await buildGateway(t, { TASK_SERVICE_URL: up.url, AUTH_SERVICE_URL: up.url, CORS_ORIGINS: '*' })
  const origin = 'https://app.example.com'
  const refusals = [
    { name: 'bad percent-encoding (router, 400)', method: 'GET', url: '/api/%E0%A4%A/tasks', headers: { origin } },
    { name: 'declared body over the limit (413)', method: 'POST', url: '/api/auth/signup', headers: { origin, 'content-type': 'application/json', 'content-length': '99999999' } },
    { name: 'URL over 4,096 bytes (414)', method: 'GET', url: `/api/u1/tasks?q=${'x'.repeat(5000)}`, headers: { origin } },
  ] as const
  for (const r of refusals) {
    const a = await listed.inject({ method: r.method, url: r.url, headers: r.headers, payload: r.method === 'POST' ? '{}' : undefined })
    t.ok(a.statusCode >= 400 && a.statusCode < 500, `${r.name}: refused (${a.statusCode})`)
    t.equal(a.headers.vary, 'Origin', `${r.name}: Vary: Origin`)
    t.notOk(a.headers['access-control-allow-origin'], `${r.name}: no origin reflected`)
    const b = await any.inject({ method: r.method, url: r.url, headers: r.headers, payload: r.method === 'POST' ? '{}' : undefined })
    t.equal(b.headers['access-control-allow-origin'], '*', `${r.name}: '*' as on every answer of a public API`)
  }
  t.equal(up.seen.length, 0, 'none reached a service')
})

function sorted(x: { status: number; headers: Record<string, unknown>; body: string }) {
  return { status: x.status, headers: Object.fromEntries(Object.entries(x.headers).sort(([p], [q]) => p.localeCompare(q))), body: x.body }
}
