/**
 * Issue 18, item 6: live streams through the gateway. BENCH_STREAMS SSE
 * streams (default 5,000; one user each) held open and idle through one
 * gateway process: its RSS (target under 300 MB) and fds per open stream;
 * one event fanned out to 1,000 of them (latency from the upstream's write to
 * each client, target p99 under 100 ms); then 1,000 users' tokens signed out
 * in the revocation feed: exactly their streams end with `event: revoked`,
 * each within 1 s, and every other stream stays open.
 */
import http from 'node:http'
import { startGateway, signToken, CPU_LOAD } from '../lib/stack.mjs'
import { freePort, startNode, stop } from '../lib/procs.mjs'
import { fdCount, rssMB, round } from '../lib/proc-stats.mjs'
import { check } from '../lib/scenario.mjs'

export const STREAM_TARGETS = { rssMB: 300, fanoutP99Ms: 100, revokeMs: 1000, fanout: 1000, revoke: 1000 }
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

/** One event to `streams` (the `skip`-th opened on the upstream onwards), five times: each client's latency from the upstream's stamp. */
async function fanOut(streams, upUrl, skip) {
  const latencies = new Latencies()
  for (let round_ = 0; round_ < 5; round_++) {
    const got = new Set()
    const all = new Promise((resolve) => {
      for (const [i, c] of streams.entries()) {
        c.onData = (chunk) => {
          const m = /"t":(\d+)/.exec(chunk)
          if (m && !got.has(i)) {
            got.add(i)
            latencies.add(Date.now() - Number(m[1]))
            if (got.size === streams.length) resolve()
          }
        }
      }
    })
    await post(`${upUrl}/control/emit?skip=${skip}&count=${streams.length}`)
    await Promise.race([all, new Promise((r) => setTimeout(r, 10_000))])
    await new Promise((r) => setTimeout(r, 200))
  }
  for (const c of streams) c.onData = null
  return latencies
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

    // Fan-out: one event to the first 1,000 streams (all of them if fewer), a few times; latency from the
    // upstream's stamp to each client. The other streams stay open and idle meanwhile. The same fan-out to
    // as many streams opened on the upstream directly is the baseline: what the upstream and this one
    // client process take by themselves (both share the load CPU).
    const fanTo = Math.min(STREAM_TARGETS.fanout, opened)
    const fanout = await fanOut(clients.slice(0, fanTo), upUrl, 0)
    const direct = []
    for (let i = 0; i < fanTo; i += 100) {
      direct.push(...(await Promise.all(tokens.slice(i, Math.min(i + 100, fanTo)).map((t) => open(upUrl, t.sub, t.jwt)))))
    }
    clients.push(...direct)
    const directFan = await fanOut(direct, upUrl, n)
    const fan = fanout.summary()
    const base = directFan.summary()
    log(`  streams: fan-out to ${fanTo} of ${opened} streams: p50 ${fan.p50} ms, p99 ${fan.p99} ms, max ${fan.max} ms (straight from the upstream: p50 ${base.p50} ms, p99 ${base.p99} ms)`)

    // Sign-out of 1,000 users' tokens (a fifth when fewer streams), through the feed (as another replica would learn it).
    const cut = tokens.slice(0, Math.max(1, Math.min(STREAM_TARGETS.revoke, Math.floor(n / 5))))
    const started = performance.now()
    await post(`${upUrl}/control/revoke`, cut.map((t) => t.jti))
    const cutClients = clients.slice(0, cut.length)
    const deadline = performance.now() + 10_000
    while (cutClients.some((c) => !c.ended) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    const closeMs = cutClients.map((c) => (c.ended ? round(c.endedAt - started, 0) : Infinity)).sort((a, b) => a - b)
    const revokedEvents = cutClients.filter((c) => c.text.includes('event: revoked')).length
    const stillOpen = clients.slice(cut.length, n).filter((c) => c.ended).length === 0
    const closeMax = closeMs.at(-1)
    log(`  streams: ${cut.length} signed out: closed in p50 ${closeMs[Math.floor(closeMs.length / 2)]} ms, max ${closeMax} ms; ${revokedEvents} ended with event: revoked; the others ${stillOpen ? 'all still open' : 'NOT all open'}`)
    return {
      measuredAt: new Date().toISOString(),
      load: { streams: n, fanoutTo: fanTo, signedOut: cut.length },
      opened,
      gateway: { before, held, perStreamKB },
      fanoutMs: fan,
      fanoutDirectMs: base,
      revocation: { streams: cut.length, p50Ms: closeMs[Math.floor(closeMs.length / 2)], maxMs: closeMax, revokedEvents, othersOpen: stillOpen },
      checks: [
        check('streams-open', 'live SSE streams open through one gateway', `${n}`, opened, opened === n),
        check('streams-rss', `gateway RSS with ${opened} idle streams open`, `< ${STREAM_TARGETS.rssMB} MB`, held.rssMB, held.rssMB < STREAM_TARGETS.rssMB),
        check('streams-fanout', `one event fanned out to ${fanTo} streams, p99`, `< ${STREAM_TARGETS.fanoutP99Ms} ms`, fan.p99, fan.p99 < STREAM_TARGETS.fanoutP99Ms),
        check('streams-revoke', `${cut.length} signed-out users' streams ended with event: revoked (max, from the feed)`, `< ${STREAM_TARGETS.revokeMs} ms`, closeMax, closeMax < STREAM_TARGETS.revokeMs && revokedEvents === cut.length),
        check('streams-others', 'streams of other tokens untouched by the sign-out', 'all open', stillOpen ? 'all open' : 'some ended', stillOpen),
      ],
    }
  } finally {
    for (const c of clients) c.res.destroy()
    await stop(gw?.proc)
    await stop(upstream)
  }
}
