/**
 * The declarative file: the bundled one describes today's routes, the
 * published JSON Schema is the TypeBox definition's, every problem is one
 * line with file, line and field path, and nothing starts on a bad file.
 * The CLI is run as a process, from the build.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { GatewayFileSchema } from '../src/gateway-config/schema.js'
import { GatewayConfigError, parseGatewayConfig } from '../src/gateway-config/load.js'
import { buildApp } from '../src/app.js'
import { buildGateway, gatewayConfig, SECRET, startUpstream, tempDir } from './helper.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const cli = join(root, 'dist/cli.js')
const dir = tempDir(t, 'tollgate-config-')

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { PATH: process.env.PATH ?? '', ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
    })
  })
}

const GOOD = `issuers:
  self: { issuer: tollgate, audience: tollgate-api, algorithms: [HS256], secret: "\${SECRET}" }
upstreams:
  auth: { targets: "http://127.0.0.1:3001" }
  notes: { targets: ["http://127.0.0.1:4001", "http://127.0.0.1:4002"], pool_size: "\${POOL:-16}" }
policies:
  ip: { key: address, limit: 100, window_s: 60 }
routes:
  - { methods: [GET], path: /api/:user_id/notes, upstream: notes, access: owner(user_id), policies: [ip] }
`
const VARS = { SECRET }

t.test('the published schema is the TypeBox definition', async (t) => {
  const published = readFileSync(join(root, 'tollgate.schema.json'), 'utf8')
  t.equal(published, `${JSON.stringify(GatewayFileSchema, null, 2)}\n`, 'up to date: regenerate with `npm run schema -w gateway`')
  t.match(readFileSync(join(root, 'tollgate.yaml'), 'utf8'), /^# yaml-language-server: \$schema=\.\/tollgate\.schema\.json\n/, 'the bundled file names it for editors')
})

t.test('a good file: variables resolved, defaults applied, numbers typed', async (t) => {
  const def = parseGatewayConfig(GOOD, 'good.yaml', VARS)
  const notes = def.upstreams.find((u) => u.name === 'notes')!
  t.same(notes.targets, ['http://127.0.0.1:4001', 'http://127.0.0.1:4002'])
  t.equal(notes.poolSize, 16, '${POOL:-16} is a number')
  t.equal(def.issuers[0]!.secret, SECRET)
  const jwks = parseGatewayConfig(GOOD.replace('algorithms: [HS256], secret: "${SECRET}"', 'algorithms: [EdDSA], jwks_url: "${BASE}/.well-known/jwks.json"'), 'good.yaml', { BASE: 'http://auth:3001/' })
  t.equal(jwks.issuers[0]!.jwks_url, 'http://auth:3001/.well-known/jwks.json', 'a base URL with a trailing slash joins cleanly')
  t.same(def.routes[0]!.body, { kind: 'stream' }, 'a route with a limit still streams its body: only `body:` changes that')
  t.equal(def.routes[0]!.ownerParam, 'user_id')
  t.equal(def.policies[0]!.mode, 'batched', 'a bulk address limit defaults to batched')
  const comma = parseGatewayConfig(GOOD.replace('"http://127.0.0.1:3001"', '"http://a:1, http://b:2"'), 'good.yaml', VARS)
  t.same(comma.upstreams[0]!.targets, ['http://a:1', 'http://b:2'], 'a comma-separated string is a target list')
})

t.test('every problem: one line with file, line and field path', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['unknown field', GOOD.replace('policies: [ip] }', 'policies: [ip], colour: red }'), /^bad\.yaml:9: routes\.0\.colour: unknown field$/],
    ['wrong type', GOOD.replace('limit: 100', 'limit: lots'), /^bad\.yaml:7: policies\.ip\.limit: must be integer$/],
    ['unknown upstream', GOOD.replace('upstream: notes', 'upstream: nowhere'), /^bad\.yaml:9: routes\.0\.upstream: no upstream named "nowhere"$/],
    ['owner parameter not in the path', GOOD.replace('owner(user_id)', 'owner(owner_id)'), /^bad\.yaml:9: routes\.0\.access: the path \/api\/:user_id\/notes has no :owner_id parameter$/],
    ['unknown policy', GOOD.replace('policies: [ip]', 'policies: [ip, nope]'), /^bad\.yaml:9: routes\.0\.policies\.1: no policy named "nope"$/],
    ['unset variable', GOOD.replace('${SECRET}', '${NOT_SET_ANYWHERE}'), /^bad\.yaml:2: issuers\.self\.secret: \$\{NOT_SET_ANYWHERE\} is not set$/],
    ['YAML: a key twice', GOOD.replace('  notes: {', '  auth: {'), /^bad\.yaml:5: Map keys must be unique/],
    ['anonymous live stream', GOOD.replace('access: owner(user_id), policies: [ip] }', 'access: anonymous, policies: [ip], stream: sse }'), /^bad\.yaml:9: routes\.0\.stream: a live stream is governed by its token/],
    ['live stream not opened with GET', GOOD.replace('methods: [GET], path: /api/:user_id/notes', 'methods: [POST], path: /api/:user_id/notes').replace('policies: [ip] }', 'policies: [ip], stream: websocket }'), /^bad\.yaml:9: routes\.0\.methods: a live stream is opened with GET$/],
    ['email limit on a streamed body', GOOD.replace('ip: { key: address', 'ip: { key: email'), /^bad\.yaml:9: routes\.0\.policies\.0: policy "ip" counts by email, which needs body: json\(\.\.\.\)$/],
  ]
  for (const [name, text, expected] of cases) {
    const err = t.throws(() => parseGatewayConfig(text, 'bad.yaml', VARS), GatewayConfigError, name) as unknown as GatewayConfigError
    t.match(err.lines[0], expected, name)
    t.equal(err.lines.length, 1, `${name}: one line`)
  }
  const two = t.throws(() => parseGatewayConfig(GOOD.replace('limit: 100', 'limit: 0').replace('window_s: 60', 'window_s: x'), 'bad.yaml', VARS)) as unknown as GatewayConfigError
  t.equal(two.lines.length, 2, 'all the problems at once')
})

t.test('nothing starts on a bad file', async (t) => {
  const file = join(dir, 'bad.yaml')
  writeFileSync(file, GOOD.replace('upstream: notes', 'upstream: nowhere'))
  await t.rejects(buildApp(gatewayConfig({ GATEWAY_CONFIG: file })), GatewayConfigError)
})

t.test('tollgate check and routes, as processes', async (t) => {
  const good = join(dir, 'good.yaml')
  writeFileSync(good, GOOD)
  const ok = await run(['check', good], VARS)
  t.same([ok.code, ok.stdout, ok.stderr], [0, 'ok\n', ''])

  const bad = join(dir, 'bad.yaml')
  writeFileSync(bad, GOOD.replace('upstream: notes', 'upstream: nowhere'))
  const refused = await run(['check', bad], VARS)
  t.equal(refused.code, 1)
  t.equal(refused.stdout, '')
  t.equal(refused.stderr, `${bad}:9: routes.0.upstream: no upstream named "nowhere"\n`)

  const bundled = await run(['check', join(root, 'tollgate.yaml')], { BETTER_AUTH_SECRET: SECRET })
  t.same([bundled.code, bundled.stdout], [0, 'ok\n'], 'the bundled file checks with only the required variable set')

  const table = await run(['routes', join(root, 'tollgate.yaml')], { BETTER_AUTH_SECRET: SECRET })
  t.equal(table.code, 0)
  const lines = table.stdout.trim().split('\n')
  t.match(lines[0], /^METHODS\s+PATH\s+UPSTREAM\s+ACCESS\s+ISSUERS\s+POLICIES\s+BODY\s+EXTRAS$/)
  t.ok(lines.some((l) => /^PATCH\s+\/api\/:user_id\/tasks\/:id\/complete\s+tasks\s+owner\(user_id\)\s+all\s+ip,user\s+stream\s+-$/.test(l)), 'a task route')
  t.ok(lines.some((l) => /^POST\s+\/api\/auth\/signin\s+auth\s+anonymous\s+-\s+ip,signin-ip,signin-email-ip,signin-ip-failures,signin-email\s+json\(SigninBody\)/.test(l)), 'sign-in')
  t.ok(lines.some((l) => /^POST\s+\/api\/auth\/signout\s.*forwards-authorization,revokes-token$/.test(l)), 'sign-out')
  t.ok(lines.some((l) => /^GET\s+\/api\/:user_id\/tasks\/events\s.*live-sse$/.test(l)), 'the live SSE route')
  t.ok(lines.some((l) => /^GET\s+\/api\/:user_id\/tasks\/live\s.*live-websocket$/.test(l)), 'the live WebSocket route')

  const usage = await run(['frobnicate'])
  t.equal(usage.code, 2)
  t.match(usage.stderr, /^usage: tollgate check <file>/)
})

t.test('every value the environment accepts, the bundled file accepts too (a limit of a billion, say)', async (t) => {
  const upstream = await startUpstream(t)
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: upstream.url, TASK_SERVICE_URL: upstream.url, RATE_LIMIT_IP_MAX: 1_000_000_000, RATE_LIMIT_USER_MAX: 1_000_000_000 })
  t.equal((await gw.inject({ url: '/health' })).statusCode, 200)
})
