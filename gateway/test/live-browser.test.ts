/**
 * Live task updates in a real browser (issue 18, item 5): a page on another
 * origin (allowed by CORS_ORIGINS) subscribes with fetch, a bearer token and
 * Last-Event-ID (a preflighted request), and opens the WebSocket with the
 * token as its second subprotocol. Both receive an event; a sign-out ends the
 * SSE stream with `event: revoked` and the WebSocket with 4401. Needs
 * Debian's Chromium (or CHROMIUM_PATH); skipped without it.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { chromium } from 'playwright-core'
import { proofKey } from '@tollgate/common'
import { buildGateway, SECRET, startUpstream, token } from './helper.js'
import { startLiveTasks } from './fixtures/live-tasks.js'

/** The page's global, inside tab.evaluate (this project's types have no DOM). */
declare const window: any

const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
const noChromium = existsSync(chromiumPath) ? false : `Chromium not installed at ${chromiumPath}: apt-get install -y chromium (or set CHROMIUM_PATH)`

function pageHtml(cfg: { gateway: string; user: string; token: string }): string {
  return `<!doctype html><html><head><meta charset="utf-8"></head><body><script>
const CFG = ${JSON.stringify(cfg).replace(/</g, '\\u003c')};
const R = window.__r = { sse: '', sseStatus: null, sseDone: false, ws: [], wsProtocol: null, wsClose: null, errors: [] };
(async () => {
  try {
    const res = await fetch(CFG.gateway + '/api/' + CFG.user + '/tasks/events', { headers: { Authorization: 'Bearer ' + CFG.token, 'Last-Event-ID': '7' } });
    R.sseStatus = res.status;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) { const { value, done } = await reader.read(); if (done) break; R.sse += value; }
    R.sseDone = true;
  } catch (err) { R.errors.push(String(err)); }
})();
const ws = new WebSocket(CFG.gateway.replace('http', 'ws') + '/api/' + CFG.user + '/tasks/live', ['bearer', CFG.token]);
ws.onopen = () => { R.wsProtocol = ws.protocol; };
ws.onmessage = (m) => R.ws.push(JSON.parse(m.data));
ws.onclose = (e) => { R.wsClose = [e.code, e.reason]; };
</script></body></html>`
}

t.test('in Chromium: fetch + bearer SSE and a bearer-subprotocol WebSocket, both cut off at sign-out', { skip: noChromium }, async (t) => {
  const page = createServer()
  await new Promise<void>((resolve) => page.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(page.address() as AddressInfo).port}`
  t.teardown(() => new Promise((resolve) => page.close(resolve)))

  const auth = await startUpstream(t)
  const tasks = await startLiveTasks(t, proofKey(SECRET))
  const gw = await buildGateway(t, { AUTH_SERVICE_URL: auth.url, TASK_SERVICE_URL: tasks.url, CORS_ORIGINS: origin })
  const gateway = await gw.listen({ port: 0, host: '127.0.0.1' })
  const user = randomUUID()
  const jwt = await token({ sub: user })
  const html = pageHtml({ gateway, user, token: jwt })
  page.on('request', (_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(html))

  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    timeout: 60_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
  })
  t.teardown(() => browser.close())
  const tab = await (await browser.newContext()).newPage()
  tab.setDefaultTimeout(20_000)
  await tab.goto(`${origin}/`, { waitUntil: 'load' })
  const r = () => tab.evaluate(() => (window as any).__r)
  await tab.waitForFunction(() => (window as any).__r.sse.includes(': connected') && (window as any).__r.wsProtocol !== null)
  t.equal((await r()).sseStatus, 200, 'the preflighted subscription is allowed')
  t.equal((await r()).wsProtocol, 'bearer', 'the browser accepted the echoed subprotocol')
  await new Promise<void>((resolve, reject) => {
    const started = Date.now()
    const tick = () => (tasks.live(user).length === 2 ? resolve() : Date.now() - started > 10_000 ? reject(new Error('upstream opens')) : setTimeout(tick, 10))
    tick()
  })
  t.equal(tasks.live(user).find((o) => o.kind === 'sse')!.headers['last-event-id'], '7', 'Last-Event-ID from the browser reaches the service')

  tasks.emit(user, 'created', { id: 't1', title: 'from the service' })
  await tab.waitForFunction(() => (window as any).__r.sse.includes('"t1"') && (window as any).__r.ws.length === 1)
  t.match((await r()).ws[0], { type: 'created', task: { id: 't1' } })

  auth.behave.status = 204
  t.equal((await gw.inject({ method: 'POST', url: '/api/auth/signout', headers: { authorization: `Bearer ${jwt}` } })).statusCode, 204)
  await tab.waitForFunction(() => (window as any).__r.sseDone && (window as any).__r.wsClose !== null)
  const end = await r()
  t.match(end.sse, /event: revoked\ndata: \{"reason":"token_revoked"\}\n\n$/, 'the stream ends with the revoked event')
  t.same(end.wsClose, [4401, 'token_revoked'], 'the WebSocket closes with 4401')
  t.same(end.errors, [])
})
