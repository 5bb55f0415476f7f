/**
 * Lab (not part of `npm run bench`): bytes allocated per request, by the
 * function that allocated them, in (b) the bare @fastify/http-proxy and (c)
 * the gateway with everything on, each under the same wrk load. V8's sampling
 * heap profiler, asked through the inspector to keep the samples of objects
 * the GC has since freed, so the figure is what each request allocates, not
 * what stays. Allocation decides how often the young generation is scavenged
 * (the gateway's semi-spaces are fixed at 16 MB by its start flags; the bare
 * proxy runs with V8's defaults, which grow them further). Needs wrk and a
 * build (`npm run build`).
 *
 *   node bench/lab/allocations.mjs      # BENCH_LAB_SECONDS (5) measured after as many warm-up, BENCH_LAB_TOP (30) rows
 */
import { startBareProxy, startGateway } from '../lib/stack.mjs'
import { runWrk } from '../lib/wrk.mjs'
import { freePort } from '../lib/procs.mjs'
import { withWrkLab } from './wrk-lab.mjs'

const SECONDS = Number(process.env.BENCH_LAB_SECONDS ?? 5)
const TOP = Number(process.env.BENCH_LAB_TOP ?? 30)

/** A Chrome DevTools Protocol session over the inspector's WebSocket (Node's own WebSocket client). */
async function inspector(port) {
  const [target] = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()
  const ws = new WebSocket(target.webSocketDebuggerUrl)
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true })
    ws.addEventListener('error', reject, { once: true })
  })
  let id = 0
  const pending = new Map()
  ws.addEventListener('message', (event) => {
    const message = JSON.parse(event.data)
    pending.get(message.id)?.(message)
    pending.delete(message.id)
  })
  return {
    send: (method, params = {}) =>
      new Promise((resolve) => {
        pending.set(++id, resolve)
        ws.send(JSON.stringify({ id, method, params }))
      }),
    close: () => ws.close(),
  }
}

/** Self bytes by function (name, file, line) over the whole sampled tree. */
function bytesByFunction(profile) {
  const out = new Map()
  const walk = (node) => {
    const f = node.callFrame
    const where = f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/\/.*?\/(gateway|common)\//, '$1/')
    const key = `${f.functionName || '(anonymous)'} ${where}:${f.lineNumber + 1}`
    out.set(key, (out.get(key) ?? 0) + node.selfSize)
    for (const child of node.children) walk(child)
  }
  walk(profile.head)
  return out
}

async function measure(label, start, path, headers) {
  const inspectPort = await freePort()
  const server = await start([`--inspect=127.0.0.1:${inspectPort}`])
  const url = server.url + path
  await runWrk({ url, headers, connections: 50, durationS: SECONDS })
  const session = await inspector(inspectPort)
  await session.send('HeapProfiler.enable')
  await session.send('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true })
  const run = await runWrk({ url, headers, connections: 50, durationS: SECONDS })
  const { result } = await session.send('HeapProfiler.stopSampling')
  session.close()
  const byFunction = bytesByFunction(result.profile)
  const total = [...byFunction.values()].reduce((a, b) => a + b, 0)
  console.log(`\n${label}: ${run.responses} requests, ${Math.round(total / run.responses)} bytes allocated per request`)
  for (const [fn, bytes] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    console.log(`${String(Math.round(bytes / run.responses)).padStart(7)}  ${fn}`)
  }
}

await withWrkLab(async ({ user, tasks, auth }) => {
  await measure('(b) bare @fastify/http-proxy', (nodeArgs) => startBareProxy({ upstreamUrl: tasks.url, nodeArgs }), user.tasksPath, user.headers)
  await measure('(c) the gateway, everything on', (nodeArgs) => startGateway({ tasksUrl: tasks.url, authUrl: auth.url, nodeArgs }), user.tasksPath, user.headers)
})
