/**
 * Interop with the real Better Auth: a Better Auth app (the `better-auth`
 * package with its JWT plugin, in-memory store) signs a user in and issues an
 * EdDSA token, published at its /api/auth/jwks. The gateway trusts it as an
 * external issuer, and the token works on the task routes of the real
 * task-service, as a frontend like the quickstart's (docs/quickstart.md) would use it.
 */
import t from 'tap'
import { createServer } from 'node:http'
import { randomUUID } from 'node:crypto'
import { betterAuth } from 'better-auth'
import { memoryAdapter } from 'better-auth/adapters/memory'
import { jwt } from 'better-auth/plugins'
import { toNodeHandler } from 'better-auth/node'
import { buildGateway, SECRET } from './helper.js'
import { freePort } from './redis-server.js'
import { build as buildTaskService } from '../../task-service/test/helper.js'

t.test('a Better Auth token calls the task routes through the gateway', async (t) => {
  const port = await freePort()
  const baseURL = `http://127.0.0.1:${port}`
  const db: Record<string, unknown[]> = { user: [], session: [], account: [], verification: [], jwks: [] }
  const auth = betterAuth({
    secret: 'better-auth-secret-0123456789-abcdefghijklmnop',
    baseURL,
    database: memoryAdapter(db as never),
    emailAndPassword: { enabled: true },
    plugins: [jwt()],
    logger: { disabled: true },
  })
  const server = createServer(toNodeHandler(auth))
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))

  // Sign up and get a token the way a Better Auth frontend does: session cookie, then /token.
  const email = `ba-${randomUUID()}@example.com`
  const signUp = await fetch(`${baseURL}/api/auth/sign-up/email`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: baseURL },
    body: JSON.stringify({ email, password: 'SecurePass123!', name: 'Better User' }),
  })
  t.equal(signUp.status, 200, 'Better Auth sign-up')
  const cookie = signUp.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ')
  const tokenRes = await fetch(`${baseURL}/api/auth/token`, { headers: { cookie } })
  t.equal(tokenRes.status, 200, 'Better Auth /token')
  const { token } = (await tokenRes.json()) as { token: string }
  const header = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString())
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString())
  t.equal(header.alg, 'EdDSA', 'Better Auth signs with EdDSA')
  t.match(claims.sub, /^[A-Za-z0-9]{32}$/, 'its ids are 32-character strings, not UUIDs')

  // The real task-service, behind a gateway that trusts Better Auth's JWKS.
  const tasks = await buildTaskService(t, { BETTER_AUTH_SECRET: SECRET }) // same proof key as the gateway
  await tasks.listen({ port: 0, host: '127.0.0.1' })
  const gw = await buildGateway(t, {
    TASK_SERVICE_URL: `http://127.0.0.1:${(tasks.server.address() as { port: number }).port}`,
    BETTER_AUTH_SECRET: SECRET,
    JWT_TRUSTED_ISSUERS: JSON.stringify([{ issuer: baseURL, audience: baseURL, jwks_url: `${baseURL}/api/auth/jwks`, algorithms: ['EdDSA'] }]),
  })
  const sub = claims.sub as string
  const authz = { authorization: `Bearer ${token}` }
  const created = await gw.inject({ method: 'POST', url: `/api/${sub}/tasks`, headers: authz, payload: { title: 'From Better Auth' } })
  t.equal(created.statusCode, 201, 'create through the gateway')
  t.equal(created.json().user_id, sub, 'owned by the Better Auth user id, verbatim')
  const list = await gw.inject({ url: `/api/${sub}/tasks`, headers: authz })
  t.equal(list.statusCode, 200)
  t.same(list.json().map((x: { title: string }) => x.title), ['From Better Auth'])
  t.equal((await gw.inject({ url: `/api/${randomUUID()}/tasks`, headers: authz })).statusCode, 403, 'another user’s tasks: 403')

  // Change the signature's first character: the last one's low bits are base64url padding.
  const signatureAt = token.lastIndexOf('.') + 1
  const tampered = token.slice(0, signatureAt) + (token[signatureAt] === 'A' ? 'B' : 'A') + token.slice(signatureAt + 1)
  t.equal((await gw.inject({ url: `/api/${sub}/tasks`, headers: { authorization: `Bearer ${tampered}` } })).statusCode, 401, 'tampered: 401')

  // Better Auth goes away: its keys are cached, the token keeps working.
  await new Promise((resolve) => server.close(resolve))
  server.closeAllConnections()
  t.equal((await gw.inject({ url: `/api/${sub}/tasks`, headers: authz })).statusCode, 200, 'works while Better Auth is down')
})
