/**
 * Tollgate in front of a service it has never heard of, by configuration
 * only: the notes service's routes are declared in a file (no gateway code
 * knows about it), and get the same guarantees as the tasks.
 */
import t, { type Test } from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { proofKey } from '@tollgate/common'
import { buildApp } from '../src/app.js'
import { gatewayConfig, SECRET, startUpstream, subOf, token, tempDir } from './helper.js'
import { startNotesService } from './fixtures/notes-service.js'

/** The README's example: a new service in front of Tollgate in under 20 lines. */
export const NOTES_FILE = `# yaml-language-server: $schema=../tollgate.schema.json
issuers:
  self: { issuer: tollgate, audience: tollgate-api, algorithms: [HS256], secret: "\${BETTER_AUTH_SECRET}", required_claims: [iat, jti] }
upstreams:
  auth: { targets: "\${AUTH_SERVICE_URL}" }
  notes: { targets: "\${NOTES_URL}", openapi: /openapi.json, description: A user's notes }
policies:
  ip: { key: address, limit: 1000, window_s: 60 }
  notes-user: { key: user, limit: 3, window_s: 60 }
routes:
  - { methods: [GET, POST], path: /api/:user_id/notes, upstream: notes, access: owner(user_id), policies: [ip, notes-user] }
`

async function gatewayForNotes(t: Test) {
  const notes = await startNotesService(t, proofKey(SECRET))
  const auth = await startUpstream(t) // the revocation feed
  const dir = tempDir(t, 'tollgate-notes-')
  const file = join(dir, 'notes.yaml')
  writeFileSync(file, NOTES_FILE)
  t.equal(NOTES_FILE.trim().split('\n').length < 20, true, 'the whole file is under 20 lines')
  const gw = await buildApp(gatewayConfig({ GATEWAY_CONFIG: file, AUTH_SERVICE_URL: auth.url }), { env: { NOTES_URL: notes.url } })
  t.teardown(() => gw.close())
  await gw.ready()
  return { gw, notes }
}

/** A gateway on a file of the test's own: our issuer, an `auth` upstream at `authUrl`, then `rest`. */
async function gatewayFromFile(t: Test, rest: string, authUrl: string) {
  const file = join(tempDir(t, 'tollgate-file-'), 'gw.yaml')
  writeFileSync(
    file,
    `issuers:
  self: { issuer: tollgate, audience: tollgate-api, algorithms: [HS256], secret: "\${BETTER_AUTH_SECRET}" }
upstreams:
  auth: { targets: "\${AUTH_SERVICE_URL}" }
${rest}`,
  )
  const gw = await buildApp(gatewayConfig({ GATEWAY_CONFIG: file, AUTH_SERVICE_URL: authUrl }))
  t.teardown(() => gw.close())
  await gw.ready()
  return gw
}

t.test('a notes service declared in a file: authenticated, owner-checked, limited, proven', async (t) => {
  const { gw, notes } = await gatewayForNotes(t)
  const jwt = await token()
  const me = subOf(jwt)

  const anonymous = await gw.inject({ url: `/api/${me}/notes` })
  t.equal(anonymous.statusCode, 401, 'no token: 401 at the gateway')
  t.equal(anonymous.json().error_code, 'UNAUTHORIZED')
  const stranger = await gw.inject({ url: '/api/someone-else/notes', headers: { authorization: `Bearer ${jwt}` } })
  t.equal(stranger.statusCode, 403, "another user's notes: 403")
  t.equal(notes.seen.length, 0, 'neither reached the service')

  const created = await gw.inject({
    method: 'POST',
    url: `/api/${me}/notes`,
    headers: { authorization: `Bearer ${jwt}`, 'x-user-id': 'spoofed', 'x-tollgate-caller': 'service:evil' },
    payload: { text: 'hello' },
  })
  t.equal(created.statusCode, 201, 'the service accepted the proof and the body streamed through')
  t.same(created.json(), { text: 'hello' })
  const seen = notes.seen.at(-1)!
  t.same(seen.identity, { caller: 'user', userId: me }, 'the service verified the proof: the caller is the token’s subject')
  t.equal(seen.headers['x-user-id'], me, 'the spoofed identity header was replaced')
  t.notOk(seen.headers.authorization, 'the bearer token is not forwarded')

  const listed = await gw.inject({ url: `/api/${me}/notes`, headers: { authorization: `Bearer ${jwt}` } })
  t.same(listed.json(), ['hello'])
  t.match(String(listed.headers.ratelimit), /"notes-user";r=1;/, 'the declared user policy counts')
  await gw.inject({ url: `/api/${me}/notes`, headers: { authorization: `Bearer ${jwt}` } })
  const limited = await gw.inject({ url: `/api/${me}/notes`, headers: { authorization: `Bearer ${jwt}` } })
  t.equal(limited.statusCode, 429, 'past the limit: 429')
  t.equal(limited.json().error_code, 'RATE_LIMITED')

  t.equal((await gw.inject({ url: `/api/${me}/tasks`, headers: { authorization: `Bearer ${jwt}` } })).statusCode, 404, 'the file is the whole route table: no tasks here')
})

t.test('the service refuses a request that did not come through the gateway', async (t) => {
  const notes = await startNotesService(t, proofKey(SECRET))
  const res = await fetch(`${notes.url}/api/u-1/notes`, { headers: { 'x-user-id': 'u-1', 'x-tollgate-caller': 'user' } })
  t.equal(res.status, 401)
})

t.test('/docs merges the notes service’s OpenAPI, tagged by its upstream name', async (t) => {
  const { gw } = await gatewayForNotes(t)
  let doc
  for (let i = 0; i < 50; i++) {
    doc = (await gw.inject({ url: '/docs/json' })).json()
    if (doc.paths['/api/{user_id}/notes']?.post?.requestBody) break
    await new Promise((r) => setTimeout(r, 100))
  }
  t.same(Object.keys(doc.paths), ['/api/{user_id}/notes'])
  const post = doc.paths['/api/{user_id}/notes'].post
  t.same(post.tags, ['notes'])
  t.ok(post.requestBody.content['application/json'].schema, 'the body schema comes from the service')
  t.same(post.security, [{ bearerAuth: [] }])
  t.ok(post.responses['403'] && post.responses['429'], 'with the gateway’s own answers')
  t.same(doc.tags, [{ name: 'notes', description: "A user's notes" }])
})

t.test('body handling comes from `body:` only; a route timeout overrides the upstream’s', async (t) => {
  const up = await startUpstream(t)
  const gw = await gatewayFromFile(
    t,
    `policies:
  ip: { key: address, limit: 1000, window_s: 60 }
routes:
  - { methods: [POST], path: /limited-stream, upstream: auth, access: anonymous, policies: [ip] }
  - { methods: [POST], path: /parsed, upstream: auth, access: anonymous, body: json }
  - { methods: [GET], path: /slow, upstream: auth, access: anonymous, timeout_ms: 300 }
`,
    up.url,
  )

  const text = await gw.inject({ method: 'POST', url: '/limited-stream', headers: { 'content-type': 'text/plain' }, payload: 'not json {' })
  t.equal(text.statusCode, 200, 'a limited route still streams a body it cannot parse')
  t.equal(up.seen.at(-1)!.body, 'not json {', 'byte for byte')
  t.match(String(text.headers.ratelimit), /"ip";r=999;/, 'and the limit counted it')

  const refused = await gw.inject({ method: 'POST', url: '/parsed', headers: { 'content-type': 'text/plain' }, payload: 'not json {' })
  t.equal(refused.statusCode, 415, 'body: json takes JSON only')
  t.equal(refused.json().status_code, 415)
  const parsed = await gw.inject({ method: 'POST', url: '/parsed', payload: { a: 1 } })
  t.equal(parsed.statusCode, 200)
  t.same(JSON.parse(String(up.seen.at(-1)!.body)), { a: 1 })

  up.behave.hold = true
  const slow = await gw.inject({ url: '/slow' })
  t.equal(slow.statusCode, 504, 'the route’s own timeout, not the 10 s of the upstream')
  t.ok(up.holding > 0, 'answered while the upstream still held the request')
  up.behave.hold = false
})

t.test('OPTIONS: a route that declares it is proxied after its checks; on other protected paths the strictest route checks it, then 404', async (t) => {
  const up = await startUpstream(t)
  const gw = await gatewayFromFile(
    t,
    `cors:
  origins: https://app.example.com
routes:
  - { methods: [GET, OPTIONS], path: /api/:user_id/files, upstream: auth, access: owner(user_id) }
  - { methods: [GET], path: /api/:owner/albums, upstream: auth, access: anonymous }
  - { methods: [POST], path: /api/:user_id/albums, upstream: auth, access: owner(user_id) }
  - { methods: [PUT], path: /api/:id/albums, upstream: auth, access: user }
`,
    up.url,
  )
  const jwt = await token()
  const me = subOf(jwt)
  const bearer = { authorization: `Bearer ${jwt}` }

  t.equal((await gw.inject({ method: 'OPTIONS', url: `/api/${me}/files` })).statusCode, 401, 'declared OPTIONS: its token check first')
  t.equal((await gw.inject({ method: 'OPTIONS', url: `/api/someone-else/files`, headers: bearer })).statusCode, 403, 'and its ownership')
  const proxied = await gw.inject({ method: 'OPTIONS', url: `/api/${me}/files`, headers: bearer })
  t.equal(proxied.statusCode, 200, 'then proxied, as declared')
  t.equal(up.seen.at(-1)?.method, 'OPTIONS')
  const preflight = await gw.inject({ method: 'OPTIONS', url: `/api/${me}/files`, headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET' } })
  t.equal(preflight.statusCode, 204, 'a genuine preflight is still answered at the edge')
  const seen = up.seen.length

  // Three routes on one path shape (parameters named differently): the owner route's checks govern OPTIONS.
  t.equal((await gw.inject({ method: 'OPTIONS', url: `/api/${me}/albums` })).statusCode, 401, 'no token: 401')
  t.equal((await gw.inject({ method: 'OPTIONS', url: '/api/someone-else/albums', headers: bearer })).statusCode, 403, 'owner over user: 403')
  const undeclared = await gw.inject({ method: 'OPTIONS', url: `/api/${me}/albums`, headers: bearer })
  t.equal(undeclared.statusCode, 404, 'checks passed: 404, as any undeclared method')
  t.equal(undeclared.json().status_code, 404)
  t.equal(up.seen.length, seen, 'none of those reached the service')
})
