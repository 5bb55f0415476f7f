/** The proxy conformance suite (cases.ts) against the gateway's forwarder. */
import t from 'tap'
import type net from 'node:net'
import { buildGateway, subOf, token } from '../helper.js'
import { cases } from './cases.js'
import { runConformance, UPSTREAM_TIMEOUT_MS } from './harness.js'

await runConformance(t as never, cases, async (t, upstream) => {
  const gw = await buildGateway(t, {
    TASK_SERVICE_URL: upstream.url,
    UPSTREAM_CONNECTIONS: 1,
    UPSTREAM_TIMEOUT_MS,
    RATE_LIMIT_IP_MAX: 100_000,
    RATE_LIMIT_USER_MAX: 100_000,
  })
  await gw.listen({ port: 0, host: '127.0.0.1' })
  const jwt = await token()
  const user = subOf(jwt)
  return {
    name: 'forwarder',
    port: (gw.server.address() as net.AddressInfo).port,
    item: (id) => `/api/${user}/tasks/${id}`,
    collection: `/api/${user}/tasks`,
    headers: { authorization: `Bearer ${jwt}` },
  }
})
