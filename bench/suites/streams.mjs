/**
 * Issue 18, item 6: live streams through the gateway. BENCH_STREAMS SSE
 * streams (one user each) held open through a gateway process; the gateway's
 * RSS and fds per open stream; the delivery of one event to every stream
 * (fan-out latency, from the upstream's write to each client); then a tenth
 * of the tokens signed out in the revocation feed, and how long each of their
 * streams takes to end with `event: revoked` (target: within 1 s).
 */
import http from 'node:http'
import { startGateway, signToken, CPU_LOAD } from '../lib/stack.mjs'
import { freePort, startNode, stop } from '../lib/procs.mjs'
import { fdCount, rssMB, round } from '../lib/proc-stats.mjs'
import { check } from '../lib/scenario.mjs'
import { Latencies } from '../lib/load.mjs'
import { randomUUID } from 'node:crypto'

const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity })

function open(base, sub, jwt) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}/api/${sub}/tasks/events`, { agent, headers: { authorization: `Bearer ${jwt}` } }, (res) => {
      const s = { res, text: '', status: res.statusCode, onData: null, ended: false, endedAt: 0 }
      res.setEncoding('utf8')
      res.on('data', (chunk) => {
        s.text += chunk
        if (s.text.length > 4096) s.text = s.text.slice(-1024)
        s.onData?.(chunk)
      })
      res.on('end', () => {
        s.ended = true
        s.endedAt = performance.now()
      })
      res.on('error', () => {})
      resolve(s)
    })
    req.on('error', reject)
  })
}

const post = (url, body) => fetch(url, { method: 'POST', body: body === undefined ? undefined : JSON.stringify(body) }).then((r) => r.json())

export async function streams(cfg, log) {
  const n = cfg.streams
  const port = await freePort()
  const upstream = await startNode({ name: 'live-upstream', args: [new URL('../lib/live-upstream.mjs', import.meta.url).pathname], env: { PORT: String(port) }, cpu: CPU_LOAD, readyLine: `ready ${port}` })
  const upUrl = `http://127.0.0.1:${port}`
  let gw
  const clients = []
  try {
    gw = await startGateway({ tasksUrl: upUrl, authUrl: upUrl })
    const before = { rssMB: round(rssMB(gw.proc.pid), 1), fds: fdCount(gw.proc.pid) }
    log(`  streams: opening ${n} SSE streams (one user each)`)
    const tokens = await Promise.all(Array.from({ length: n }, async () => {
      const sub = randomUUID()
      return { sub, jwt: await signToken(sub), jti: null }
    }))
    for (const t of tokens) t.jti = JSON.parse(Buffer.from(t.jwt.split('.')[1], 'base64url').toString()).jti
    for (let i = 0; i < n; i += 100) {
      clients.push(...(await Promise.all(tokens.slice(i, i + 100).map((t) => open(gw.url, t.sub, t.jwt)))))
    }
    const opened = clients.filter((c) => c.status === 200).length
    await new Promise((r) => setTimeout(r, 1000))
    const held = { rssMB: round(rssMB(gw.proc.pid), 1), fds: fdCount(gw.proc.pid) }
    const perStreamKB = round(((held.rssMB - before.rssMB) * 1024) / Math.max(1, opened), 1)
    log(`  streams: ${opened}/${n} open; gateway RSS ${before.rssMB} -> ${held.rssMB} MB (${perStreamKB} KB/stream), fds ${before.fds} -> ${held.fds}`)

    // Fan-out: one event to every stream, a few times; latency from the upstream's stamp to each client.
    const fanout = new Latencies()
    for (let round_ = 0; round_ < 5; round_++) {
      const got = new Set()
      const all = new Promise((resolve) => {
        for (const [i, c] of clients.entries()) {
          c.onData = (chunk) => {
            const m = /"t":(\d+)/.exec(chunk)
            if (m && !got.has(i)) {
              got.add(i)
              fanout.add(Date.now() - Number(m[1]))
              if (got.size === opened) resolve()
            }
          }
        }
      })
      await post(`${upUrl}/control/emit`)
      await Promise.race([all, new Promise((r) => setTimeout(r, 10_000))])
      await new Promise((r) => setTimeout(r, 200))
    }
    for (const c of clients) c.onData = null
    const fan = fanout.summary()
    log(`  streams: fan-out to ${opened} streams: p50 ${fan.p50} ms, p99 ${fan.p99} ms, max ${fan.max} ms`)

    // Sign-out of a tenth of the tokens, through the feed (as another replica would learn it).
    const cut = tokens.slice(0, Math.max(1, Math.floor(n / 10)))
    const started = performance.now()
    await post(`${upUrl}/control/revoke`, cut.map((t) => t.jti))
    const cutClients = clients.slice(0, cut.length)
    const deadline = performance.now() + 10_000
    while (cutClients.some((c) => !c.ended) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    const closeMs = cutClients.map((c) => (c.ended ? round(c.endedAt - started, 0) : Infinity)).sort((a, b) => a - b)
    const revokedEvents = cutClients.filter((c) => c.text.includes('event: revoked')).length
    const stillOpen = clients.slice(cut.length).filter((c) => c.ended).length === 0
    const closeMax = closeMs.at(-1)
    log(`  streams: ${cut.length} signed out: closed in p50 ${closeMs[Math.floor(closeMs.length / 2)]} ms, max ${closeMax} ms; ${revokedEvents} ended with event: revoked; the others ${stillOpen ? 'all still open' : 'NOT all open'}`)
    return {
      measuredAt: new Date().toISOString(),
      load: { streams: n },
      opened,
      gateway: { before, held, perStreamKB },
      fanoutMs: fan,
      revocation: { streams: cut.length, p50Ms: closeMs[Math.floor(closeMs.length / 2)], maxMs: closeMax, revokedEvents, othersOpen: stillOpen },
      checks: [
        check('streams-open', 'live SSE streams open through one gateway', `${n}`, opened, opened === n),
        check('streams-revoke', 'signed-out streams ended (max, from the feed)', '< 1000 ms', closeMax, closeMax < 1000 && revokedEvents === cut.length),
        check('streams-others', 'streams of other tokens untouched by the sign-out', 'all open', stillOpen ? 'all open' : 'some ended', stillOpen),
      ],
    }
  } finally {
    for (const c of clients) c.res.destroy()
    await stop(gw?.proc)
    await stop(upstream)
  }
}
