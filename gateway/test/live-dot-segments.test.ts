/**
 * A live WebSocket route declared with a parameter besides the owner's (the
 * file allows any GET path): a `..` segment in it, raw or percent-encoded, is
 * refused before anything is opened upstream with the answer the other routes
 * give (400 VALIDATION_ERROR, "Invalid path"); the service never sees the
 * upgrade.
 */
import t from 'tap'
import http from 'node:http'
import { parseGatewayConfig } from '../src/gateway-config/load.js'
import { buildGateway, SECRET, startUpstream, subOf, token } from './helper.js'

t.test('a dot segment in a live route parameter: 400 before the upgrade reaches the service', async (t) => {
  const up = await startUpstream(t)
  const definition = parseGatewayConfig(
    `issuers:
  self: { issuer: tollgate, audience: tollgate-api, algorithms: [HS256], secret: "\${SECRET}" }
upstreams:
  auth: { targets: "\${UP}" }
routes:
  - { methods: [GET], path: "/api/:user_id/rooms/:room/live", upstream: auth, access: owner(user_id), stream: websocket }
`,
    'live.yaml',
    { SECRET, UP: up.url },
  )
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: up.url }, { definition })
  await gw.listen({ port: 0, host: '127.0.0.1' })
  const port = (gw.server.address() as { port: number }).port
  const jwt = await token()

  /** An upgrade request as written (a WebSocket client would resolve dot segments first); resolves with the status answered. */
  const upgrade = (path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port,
        path,
        headers: {
          connection: 'Upgrade',
          upgrade: 'websocket',
          'sec-websocket-version': '13',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
          'sec-websocket-protocol': `bearer, ${jwt}`,
        },
      })
      req.on('response', (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode!, body }))
      })
      req.on('upgrade', (res, socket) => {
        socket.destroy()
        resolve({ status: res.statusCode!, body: '' })
      })
      req.on('error', reject)
      req.end()
    })

  const me = `/api/${subOf(jwt)}/rooms`
  for (const room of ['..', '%2e%2e', '.%2E']) {
    const res = await upgrade(`${me}/${room}/live`)
    t.equal(res.status, 400, room)
    t.same(JSON.parse(res.body), { detail: 'Invalid path', error_code: 'VALIDATION_ERROR', status_code: 400 }, `${room}: the answer the other routes give`)
  }
  t.equal(up.seen.length, 0, 'no upgrade reached the service')
})
