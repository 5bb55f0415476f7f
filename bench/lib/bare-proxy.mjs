/**
 * Target (b): a bare @fastify/http-proxy with nothing else (no auth, no
 * limits, no logging), the floor the gateway is compared with. Run as its own
 * process. env: PORT, UPSTREAM. Prints "ready <port>".
 */
import Fastify from 'fastify'
import proxy from '@fastify/http-proxy'

const app = Fastify({ logger: false })
await app.register(proxy, { upstream: process.env.UPSTREAM })
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) })
process.stdout.write(`ready ${process.env.PORT}\n`)
process.on('SIGTERM', () => app.close().then(() => process.exit(0)))
