/**
 * Where (c)'s time goes: CPU profiles (node --cpu-prof, written when the
 * process exits on SIGTERM) of the bare proxy (b) and of the gateway (c)
 * under the same load, summarised over the measured seconds only. Self time
 * per request, by package and by function, shows what the gateway adds.
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startBareProxy, startGateway, startUpstream } from '../lib/stack.mjs'
import { stop } from '../lib/procs.mjs'
import { runLoad } from '../lib/load.mjs'
import { round } from '../lib/proc-stats.mjs'
import { benchUser, expectStatus, waitQuiet } from '../lib/scenario.mjs'
import { summarise } from '../lib/cpuprofile.mjs'

const DIR = fileURLToPath(new URL('../results/profiles/', import.meta.url))
// V8 stamps profile samples with the monotonic clock, as process.hrtime does.
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n)

/** Profile one server (started by `start(nodeArgs)`) under the load; its summary and request count. */
async function profileOne(name, start, { user, cfg, log }) {
  const dir = join(DIR, `${name}-${Date.now()}`)
  mkdirSync(dir, { recursive: true })
  const server = await start(['--cpu-prof', `--cpu-prof-dir=${dir}`])
  const span = {}
  let run
  try {
    const url = server.url + user.tasksPath
    await expectStatus(url, { headers: user.headers })
    await waitQuiet(log)
    log(`  profile ${name}: warm-up ${cfg.warmupS}s, then ${cfg.profileS}s profiled`)
    await runLoad({ url, headers: user.headers, connections: cfg.connections, durationS: cfg.warmupS })
    span.fromUs = monotonicUs()
    run = await runLoad({ url, headers: user.headers, connections: cfg.connections, durationS: cfg.profileS })
    span.toUs = monotonicUs()
  } finally {
    await stop(server.proc) // SIGTERM: the process closes and exits, which writes the profile
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))
  if (!file) throw new Error(`${name}: no .cpuprofile written in ${dir}`)
  // Every function (top: Infinity): the comparison with the other profile needs them all.
  const summary = summarise(JSON.parse(readFileSync(join(dir, file), 'utf8')), { top: Infinity, window: span })
  return { file: join(dir, file).slice(join(DIR, '../..').length + 1), rps: run.rps, responses: run.responses, ...summary }
}

export async function profile(cfg, log) {
  const user = await benchUser()
  const tasks = await startUpstream({ name: 'tasks-upstream' })
  const auth = await startUpstream({ name: 'auth-upstream' })
  let b
  let c
  try {
    const ctx = { user, cfg, log }
    b = await profileOne('bare-proxy', (nodeArgs) => startBareProxy({ upstreamUrl: tasks.url, nodeArgs }), ctx)
    c = await profileOne('gateway', (nodeArgs) => startGateway({ tasksUrl: tasks.url, authUrl: auth.url, nodeArgs }), ctx)
  } finally {
    await Promise.all([stop(tasks.proc), stop(auth.proc)])
  }

  // CPU microseconds per request, by package/file: what the gateway adds over the bare proxy.
  const perReq = (x, owner) => round(((x.byOwner.find((o) => o.owner === owner)?.selfMs ?? 0) * 1000) / x.responses, 1)
  const owners = [...new Set([...b.byOwner, ...c.byOwner].map((o) => o.owner))]
  const added = owners
    .map((owner) => ({ owner, bUs: perReq(b, owner), cUs: perReq(c, owner) }))
    .map((o) => ({ ...o, addedUs: round(o.cUs - o.bUs, 1) }))
    .sort((x, y) => y.addedUs - x.addedUs)
  // The same per function: which of the gateway's functions cost the most beyond what (b) spends in them.
  const fnKey = (f) => `${f.fn} ${f.where}`
  const bFn = new Map(b.topSelf.map((f) => [fnKey(f), (f.selfMs * 1000) / b.responses]))
  const addedFunctions = c.topSelf
    .map((f) => {
      const cUs = (f.selfMs * 1000) / c.responses
      const bUs = bFn.get(fnKey(f)) ?? 0
      return { fn: f.fn, where: f.where, owner: f.owner, bUs: round(bUs, 1), cUs: round(cUs, 1), addedUs: round(cUs - bUs, 1) }
    })
    .sort((x, y) => y.addedUs - x.addedUs)
    .slice(0, 25)
  const totalUs = (x) => round((x.busyS * 1e6) / x.responses, 1)
  const cTotalUs = totalUs(c)
  const topSelf = c.topSelf.slice(0, 25).map((f) => ({ ...f, usPerRequest: round((f.selfMs * 1000) / c.responses, 1) }))
  log(`  profile: CPU per request: bare proxy ${totalUs(b)} us, gateway ${cTotalUs} us; top self time in the gateway:`)
  for (const r of topSelf.slice(0, 10)) log(`    ${String(r.selfPct).padStart(5)}%  ${String(r.usPerRequest).padStart(6)} us/req  ${r.fn}  ${r.where}`)
  return {
    measuredAt: new Date().toISOString(),
    profiledS: cfg.profileS,
    connections: cfg.connections,
    cpuUsPerRequest: { b: totalUs(b), c: cTotalUs },
    bare: { file: b.file, rps: b.rps, busyS: b.busyS, byOwner: b.byOwner.slice(0, 15) },
    gateway: { file: c.file, rps: c.rps, busyS: c.busyS, sampledS: c.sampledS, topSelf, byOwner: c.byOwner.slice(0, 20), projectInclusive: c.projectInclusive.slice(0, 25) },
    addedByOwner: added.slice(0, 15),
    addedFunctions,
  }
}
