/**
 * Lab (not part of `npm run bench`): instructions per request of CORS by
 * @fastify/cors and by the gateway's own (gateway/src/cors.ts), each in a
 * minimal Fastify app with the gateway's security headers and one route,
 * both under valgrind's callgrind at once; counting starts after the
 * warm-up. Needs valgrind and a build (`npm run build`).
 *
 *   node bench/lab/cors-instructions.mjs            # BENCH_LAB_WARMUP (30000), BENCH_LAB_REQUESTS (20000)
 */
import { execFileSync, spawn } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import fastifyCors from '@fastify/cors'
import { Pool } from 'undici'
import { corsEveryAnswer, corsOptionsOf, installCors, pluginOptionsOf } from '../../gateway/dist/cors.js'
import { securityHeaders } from '../../gateway/dist/security-headers.js'

const CONNECTIONS = 10

async function serve(mode, port) {
  const o = corsOptionsOf({ origins: ['http://localhost:3000', 'https://app.example.com'] })
  const app = Fastify()
  const constant = mode === 'ours' ? { ...securityHeaders(), ...corsEveryAnswer(o) } : securityHeaders()
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(constant)
    done()
  })
  if (mode === 'ours') installCors(app, o)
  else await app.register(fastifyCors, pluginOptionsOf(o))
  const body = JSON.stringify(Array.from({ length: 5 }, (_, i) => ({ id: i, title: 'x'.repeat(150) })))
  app.get('/api/:user_id/tasks', (_request, reply) => {
    reply.type('application/json').send(body)
  })
  await app.listen({ port, host: '127.0.0.1' })
  process.stdout.write('ready\n')
}

async function count(mode, port, warmup, n) {
  const out = join(tmpdir(), `tollgate-lab-cors-${process.pid}-${mode}.out`)
  const args = ['--tool=callgrind', '--smc-check=all-non-file', '--instr-atstart=no', `--callgrind-out-file=${out}`]
  const server = spawn('valgrind', [...args, process.execPath, '--max-semi-space-size=16', '--min-semi-space-size=16', fileURLToPath(import.meta.url), 'serve', mode, String(port)], {
    stdio: ['ignore', 'pipe', 'ignore'],
  })
  try {
    await new Promise((resolve, reject) => {
      server.stdout.on('data', (d) => String(d).includes('ready') && resolve())
      server.once('exit', (code) => reject(new Error(`${mode} server exited (${code})`)))
    })
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: CONNECTIONS })
    const requests = async (total) => {
      let left = total
      await Promise.all(
        Array.from({ length: CONNECTIONS }, async () => {
          while (left-- > 0) {
            const res = await pool.request({ path: '/api/u1/tasks', method: 'GET' })
            await res.body.dump()
          }
        }),
      )
    }
    await requests(warmup)
    execFileSync('callgrind_control', ['-i', 'on', String(server.pid)], { stdio: 'ignore' })
    await requests(n)
    execFileSync('callgrind_control', ['-i', 'off', String(server.pid)], { stdio: 'ignore' })
    execFileSync('callgrind_control', ['-d', String(server.pid)], { stdio: 'ignore' })
    await pool.close()
    return Number(/^totals: (\d+)/m.exec(readFileSync(`${out}.1`, 'utf8'))[1]) / n
  } finally {
    server.kill()
    rmSync(out, { force: true })
    rmSync(`${out}.1`, { force: true })
  }
}

if (process.argv[2] === 'serve') {
  await serve(process.argv[3], Number(process.argv[4]))
} else {
  const warmup = Number(process.env.BENCH_LAB_WARMUP ?? 30000)
  const n = Number(process.env.BENCH_LAB_REQUESTS ?? 20000)
  const [plugin, ours] = await Promise.all([count('plugin', 41011, warmup, n), count('ours', 41012, warmup, n)])
  console.log(`instructions/request: @fastify/cors ${Math.round(plugin)}, gateway/src/cors.ts ${Math.round(ours)}; ratio ${(ours / plugin).toFixed(4)}, ${Math.round(plugin - ours)} fewer`)
}
