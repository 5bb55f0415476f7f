/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time per function and
 * per package/file, and inclusive time for the project's own functions, as
 * percentages of the busy (non-idle) time.
 * CLI: node bench/lib/cpuprofile.mjs FILE.cpuprofile [TOP]
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { round } from './proc-stats.mjs'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const META = new Set(['(idle)', '(root)', '(program)', '(garbage collector)'])

/** Where a frame's code lives: a package, node's internals, or a project file. */
function owner(url) {
  if (!url) return 'native / V8'
  if (url.startsWith('node:')) return 'node core'
  const path = url.replace(/^file:\/\//, '')
  // The innermost package: nested copies (reply-from's own undici) count as that package.
  const m = [...path.matchAll(/node_modules\/((?:@[^/]+\/)?[^/]+)/g)].at(-1)
  if (m) return m[1]
  return path.startsWith(ROOT) ? path.slice(ROOT.length) : path
}

function location(frame) {
  const url = frame.url.replace(/^file:\/\//, '')
  // Inside a package: its own path, wherever the copy is installed (so two profiles compare).
  const short = url.includes('node_modules/') ? url.replace(/.*node_modules\//, '') : url.startsWith(ROOT) ? url.slice(ROOT.length) : url
  return short ? `${short}:${frame.lineNumber + 1}` : ''
}

/**
 * `window` ({ fromUs, toUs }, CLOCK_MONOTONIC microseconds like
 * process.hrtime.bigint() / 1000n) keeps only samples taken in it: the
 * measured load, without start-up and warm-up.
 */
export function summarise(profile, { top = 20, window } = {}) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)

  // A sample's time is the gap to the next sample (as DevTools counts it).
  const { samples, timeDeltas } = profile
  const selfUs = new Map()
  let at = profile.startTime
  for (let i = 0; i < samples.length; i++) {
    at += timeDeltas[i]
    if (window && (at < window.fromUs || at > window.toUs)) continue
    const dt = timeDeltas[i + 1] ?? 0
    selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + dt)
  }

  let totalUs = 0
  let idleUs = 0
  const byFunction = new Map()
  const byOwner = new Map()
  const inclusive = new Map()
  const add = (map, key, us, extra) => {
    const e = map.get(key) ?? { us: 0, ...extra }
    e.us += us
    map.set(key, e)
  }
  for (const [id, us] of selfUs) {
    const node = nodes.get(id)
    const f = node.callFrame
    totalUs += us
    if (f.functionName === '(idle)') {
      idleUs += us
      continue
    }
    const name = f.functionName || '(anonymous)'
    const key = META.has(name) ? name : `${name} ${location(f)}`
    add(byFunction, key, us, { fn: name, where: location(f), owner: META.has(name) ? name : owner(f.url) })
    add(byOwner, META.has(name) ? name : owner(f.url), us)
    // Inclusive time of project functions: each counted once per sample stack.
    const seen = new Set()
    for (let n = id; n !== undefined; n = parent.get(n)) {
      const fr = nodes.get(n).callFrame
      const file = fr.url.replace(/^file:\/\//, '')
      if (!file.startsWith(ROOT) || file.includes('node_modules')) continue
      const k = `${fr.functionName || '(anonymous)'} ${location(fr)}`
      if (seen.has(k)) continue
      seen.add(k)
      add(inclusive, k, us)
    }
  }
  const busyUs = totalUs - idleUs
  const pct = (us) => round((100 * us) / busyUs, 1)
  const sorted = (map) => [...map.entries()].sort((a, b) => b[1].us - a[1].us)
  return {
    sampledS: round(totalUs / 1e6, 1),
    busyS: round(busyUs / 1e6, 1),
    topSelf: sorted(byFunction)
      .slice(0, top)
      .map(([, e]) => ({ fn: e.fn, where: e.where, owner: e.owner, selfPct: pct(e.us), selfMs: round(e.us / 1000, 1) })),
    // Every owner (not only the top): the per-request comparison needs them all.
    byOwner: sorted(byOwner).map(([name, e]) => ({ owner: name, selfPct: pct(e.us), selfMs: round(e.us / 1000, 1) })),
    projectInclusive: sorted(inclusive)
      .slice(0, top)
      .map(([key, e]) => ({ fn: key, inclusivePct: pct(e.us) })),
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, top] = process.argv.slice(2)
  if (!file) {
    console.error('usage: node bench/lib/cpuprofile.mjs FILE.cpuprofile [TOP]')
    process.exit(2)
  }
  const s = summarise(JSON.parse(readFileSync(file, 'utf8')), { top: Number(top) || 20 })
  console.log(`busy ${s.busyS}s of ${s.sampledS}s sampled\n\nself time by function:`)
  for (const r of s.topSelf) console.log(`${String(r.selfPct).padStart(6)}%  ${r.fn}  ${r.where}`)
  console.log('\nself time by package / file:')
  for (const r of s.byOwner.slice(0, Number(top) || 20)) console.log(`${String(r.selfPct).padStart(6)}%  ${r.owner}`)
  console.log('\ninclusive time, project code:')
  for (const r of s.projectInclusive) console.log(`${String(r.inclusivePct).padStart(6)}%  ${r.fn}`)
}
