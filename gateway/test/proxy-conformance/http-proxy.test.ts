/**
 * The proxy conformance suite (cases.ts) against a plain @fastify/http-proxy
 * app: the reference the forwarder is held to, with the same upstream
 * settings (one connection, the same deadline).
 */
import t from 'tap'
import type net from 'node:net'
import Fastify from 'fastify'
import proxy from '@fastify/http-proxy'
import { cases } from './cases.js'
import { runConformance, UPSTREAM_TIMEOUT_MS } from './harness.js'

await runConformance(t as never, cases, async (t, upstream) => {
  const app = Fastify()
  await app.register(proxy, {
    upstream: upstream.url,
    undici: { connections: 1, pipelining: 1, headersTimeout: UPSTREAM_TIMEOUT_MS, bodyTimeout: UPSTREAM_TIMEOUT_MS },
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return {
    name: 'http-proxy',
    port: (app.server.address() as net.AddressInfo).port,
    item: (id) => `/api/user/tasks/${id}`,
    collection: '/api/user/tasks',
    headers: {},
  }
})
