/** /docs: the public contract as OpenAPI, generated from the real services' route schemas. */
import t from 'tap'
import { buildGateway, gatewayConfig, SECRET } from './helper.js'
import { build as buildTaskService } from '../../task-service/test/helper.js'
import { build as buildAuthService } from '../../auth-service/test/helper.js'
import { loadGatewayFile } from '../src/gateway-config/load.js'
import { bundledGatewayFile } from '../src/config.js'
import { gatewayVariables } from '../src/gateway-config/variables.js'

async function listen(app: { listen(o: object): Promise<string> }) {
  return app.listen({ port: 0, host: '127.0.0.1' })
}

t.test('the document lists exactly the public routes, with the services’ schemas', async (t) => {
  const tasks = await buildTaskService(t, { BETTER_AUTH_SECRET: SECRET })
  const auth = await buildAuthService(t, { BETTER_AUTH_SECRET: SECRET })
  const gw = await buildGateway(t, { TASK_SERVICE_URL: await listen(tasks), AUTH_SERVICE_URL: await listen(auth) })
  await gw.listen({ port: 0, host: '127.0.0.1' })
  // The gateway fetches the services' documents when it starts.
  let doc: any // the merged OpenAPI document, read loosely
  for (let i = 0; i < 50; i++) {
    doc = (await gw.inject({ url: '/docs/json' })).json()
    if (doc.paths['/api/auth/signup']?.post?.requestBody && doc.paths['/api/{user_id}/tasks']?.get?.parameters) break
    await new Promise((r) => setTimeout(r, 100))
  }
  const bundled = loadGatewayFile(bundledGatewayFile, gatewayVariables(gatewayConfig(), {}))
  const expected = bundled.routes.flatMap((g) => g.paths.flatMap((u) => g.methods.map((m) => `${m} ${u.replace(/:(\w+)/g, '{$1}')}`))).sort()
  const listed = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops as object).map((m) => `${m.toUpperCase()} ${p}`)).sort()
  t.same(listed, expected, 'every public route, and nothing else (no /internal, /health, /metrics)')

  const signup = doc.paths['/api/auth/signup'].post
  t.ok(signup.requestBody.content['application/json'].schema, 'sign-up body schema from the auth-service')
  t.ok(signup.responses['201'], 'its 201')
  t.notOk(signup.security, 'sign-up needs no token')
  const list = doc.paths['/api/{user_id}/tasks'].get
  t.same(list.security, [{ bearerAuth: [] }], 'protected')
  t.same(
    list.parameters.filter((p: { in: string }) => p.in === 'query').map((p: { name: string; required: boolean }) => [p.name, p.required]),
    [['status', false], ['sort', false], ['order', false], ['limit', false], ['offset', false]],
    'query parameters from the task-service, optional where they have defaults',
  )
  for (const status of ['401', '403', '429', '502', '503', '504']) t.ok(list.responses[status], `documents ${status}`)
  t.equal(doc.components.securitySchemes.bearerAuth.scheme, 'bearer')
  t.ok(doc.components.schemas.ErrorEnvelope)
  const text = JSON.stringify(doc)
  t.notMatch(text, /password_hash/, 'no hash anywhere in the public contract')
  const refs = new Set([...text.matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]!))
  t.same([...refs].filter((r) => !doc.components.schemas[r]), [], 'every schema reference resolves')

  const ui = await gw.inject({ url: '/docs/' })
  t.equal(ui.statusCode, 200, 'the UI page')
  t.match(ui.headers['content-type'], /text\/html/)
  t.match(String(ui.headers['content-security-policy']), /script-src 'self'/, 'the UI has a policy that lets it run')
})

t.test('with the services down, /docs still answers (the gateway’s own view)', async (t) => {
  const gw = await buildGateway(t, { TASK_SERVICE_URL: 'http://127.0.0.1:1' })
  const res = await gw.inject({ url: '/docs/json' })
  t.equal(res.statusCode, 200)
  t.ok(res.json().paths['/api/{user_id}/tasks'].get, 'routes listed even before their schemas are known')
})

t.test('the document is built when asked for, and again only after an upstream document changed', async (t) => {
  const { createServer } = await import('node:http')
  const { Pool } = await import('undici')
  const { openApiDocument, mergeOpenApi } = await import('../src/docs/openapi.js')
  let served = { openapi: '3.0.3', paths: { '/api/{user_id}/tasks': { get: { summary: 'first', responses: { '200': { description: 'ok' } } } } } }
  let fetches = 0
  const server = createServer((_req, res) => {
    fetches++
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(served))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const pool = new Pool(`http://127.0.0.1:${(server.address() as { port: number }).port}`)
  t.teardown(() => pool.close())
  const { routes } = loadGatewayFile(bundledGatewayFile, gatewayVariables(gatewayConfig(), {}))
  const log = { debug() {} } as never
  const docs = openApiDocument([{ name: 'tasks', pool, path: '/openapi.json' }], routes, log)

  t.equal(docs.builds(), 0, 'nothing built at start')
  await docs.refresh()
  await docs.refresh()
  t.equal(fetches, 2)
  t.equal(docs.builds(), 0, 'fetching does not build it')
  const first = docs.current()
  t.equal(first.paths['/api/{user_id}/tasks'].get.summary, 'first')
  t.same(first, mergeOpenApi({ tasks: JSON.parse(JSON.stringify(served)) }, routes, first.tags), 'the merged document, unchanged by the compaction')
  t.equal(docs.current(), first, 'asked again: the same document')
  await docs.refresh()
  t.equal(docs.current(), first, 'the upstream document unchanged: not rebuilt')
  t.equal(docs.builds(), 1)

  served = { ...served, paths: { '/api/{user_id}/tasks': { get: { summary: 'second', responses: { '200': { description: 'ok' } } } } } }
  await docs.refresh()
  t.equal(docs.current().paths['/api/{user_id}/tasks'].get.summary, 'second', 'a changed document is merged again')
  t.equal(docs.builds(), 2)
  const list = docs.current().paths['/api/{user_id}/tasks'].get
  for (const status of ['200', '401', '403', '429', '502', '503', '504']) t.ok(list.responses[status], `documents ${status}`)
})
