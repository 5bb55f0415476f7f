/**
 * The results files: bench/results/<name>.json (every figure) and <name>.md
 * (the same, for people). A run replaces only the sections it measured, so
 * `npm run bench` and `npm run bench -- --soak` together fill one file.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { cpus, release } from 'node:os'
import { fileURLToPath } from 'node:url'
import { pinning } from './procs.mjs'

const DIR = fileURLToPath(new URL('../results/', import.meta.url))
const SECTIONS = ['throughput', 'soak', 'signin', 'faults', 'ledger', 'hostile', 'profile', 'instructions', 'streams']

/** Which code was measured: the gateway changes, figures must say of which version they are. */
export function sourceInfo() {
  const git = (...args) => execFileSync('git', args, { cwd: fileURLToPath(new URL('../../', import.meta.url)), encoding: 'utf8' }).trim()
  try {
    // Only changes outside bench/ matter: the bench's own results are written during the run.
    const dirty = git('status', '--porcelain', '--', '.', ':(exclude)bench').length > 0
    return { commit: git('rev-parse', '--short', 'HEAD'), dirty }
  } catch {
    return { commit: null, dirty: null }
  }
}

export function machineInfo() {
  return {
    cpus: cpus().length,
    model: cpus()[0]?.model,
    node: process.version,
    kernel: release(),
    pinning: pinning.enabled ? pinning.why : `off (${pinning.why})`,
  }
}

/** Merge `sections` into <name>.json, write both files atomically, return the merged results. */
export function saveResults(name, sections, meta) {
  mkdirSync(DIR, { recursive: true })
  const jsonPath = `${DIR}${name}.json`
  const previous = existsSync(jsonPath) ? JSON.parse(readFileSync(jsonPath, 'utf8')) : {}
  const merged = { ...previous, ...meta, ...sections }
  writeAtomic(jsonPath, `${JSON.stringify(merged, null, 2)}\n`)
  writeAtomic(`${DIR}${name}.md`, renderMarkdown(merged))
  return { merged, jsonPath, mdPath: `${DIR}${name}.md` }
}

function writeAtomic(path, text) {
  writeFileSync(`${path}.tmp`, text)
  renameSync(`${path}.tmp`, path)
}

/** Every section's checks, plus one across all of them: no answer anywhere was a 500. */
export function allChecks(results) {
  const checks = SECTIONS.flatMap((s) => (results[s]?.checks ?? []).map((c) => ({ ...c, section: s })))
  const n500 = count500(results)
  checks.push({ id: 'no-500', section: 'all', label: 'responses with status 500, all runs above', target: '0', actual: n500, pass: n500 === 0 })
  return checks
}

function count500(value) {
  if (!value || typeof value !== 'object') return 0
  if (value.statusCounts && typeof value.statusCounts === 'object') return value.statusCounts['500'] ?? 0
  return Object.values(value).reduce((sum, v) => sum + count500(v), 0)
}

const cell = (v) => (v === null || v === undefined ? '-' : String(v))
const row = (cells) => `| ${cells.map(cell).join(' | ')} |`
const table = (head, rows) => [row(head), row(head.map(() => '---')), ...rows.map(row)].join('\n')
/** When and on which commit a section was measured (sections of one file can come from different runs). */
const stamp = (section) => {
  const when = section.measuredAt ? `${section.measuredAt.replace('T', ' ').slice(0, 16)} UTC` : '-'
  const src = section.source?.commit ? `, commit ${section.source.commit}${section.source.dirty ? '+changes' : ''}` : ''
  return `${when}${src}`
}
const codes = (counts) =>
  Object.entries(counts ?? {})
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ') || '-'

const fdKinds = (f) =>
  Object.entries(f.fdKinds ?? {})
    .filter(([k, v]) => k !== 'total' && v)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')

export function renderMarkdown(r) {
  const out = ['# Tollgate benchmark results', '']
  out.push(
    `Written by \`npm run bench\` (soak section: \`npm run bench -- --soak\`); every figure is also in \`${r.name ?? 'latest'}.json\`.`,
    `Last run on commit ${r.source?.commit ?? '-'}${r.source?.dirty ? ' plus uncommitted changes' : ''} (built by the bench first); each section says when and on which commit it was measured.`,
    `Machine: ${r.machine?.cpus} x ${r.machine?.model}, Node ${r.machine?.node}, Linux ${r.machine?.kernel}; ${r.machine?.pinning}.`,
    'All traffic on 127.0.0.1; load from autocannon 9 in the bench process and, for throughput, also from wrk (its own process, on the load CPU).',
    '',
    '## Targets',
    '',
    table(
      ['Check', 'Target', 'Measured', 'Result'],
      allChecks(r).map((c) => [c.label, c.target, c.actual, c.pass ? 'PASS' : '**FAIL**']),
    ),
    '',
  )
  if (r.throughput) out.push(...throughputMd(r.throughput))
  if (r.soak) out.push(...soakMd(r.soak))
  if (r.signin) out.push(...signinMd(r.signin))
  if (r.faults) out.push(...faultsMd(r.faults))
  if (r.ledger) out.push(...ledgerMd(r.ledger))
  if (r.hostile) out.push(...hostileMd(r.hostile))
  if (r.profile) out.push(...profileMd(r.profile))
  if (r.instructions) out.push(...instructionsMd(r.instructions))
  if (r.streams) out.push(...streamsMd(r.streams))
  return `${out.join('\n')}\n`
}

const THROUGHPUT_ROWS = {
  a: '(a) upstream direct',
  b: '(b) bare @fastify/http-proxy',
  c: '(c) Tollgate gateway, everything on',
  cr: '(c+redis) the same, counters in Redis',
  c1k: '(c 1k routes) the same, 1,000 declared routes',
  ct1: '(c+trace1%) the same, OpenTelemetry tracing sampling 1 %',
  ct100: '(c+trace100%) the same, sampling 100 %',
  cb: '(c before tracing) the gateway at the last commit before tracing',
}

function throughputMd(t) {
  // Sections written before the wrk mode hold autocannon's runs and ratios at the top level.
  const byTool = t.byTool ?? { autocannon: { runs: t.runs, ratios: t.ratios } }
  const first = Object.values(byTool)[0].runs.a
  const out = [
    `## Throughput (${stamp(t)})`,
    '',
    `${t.load.path}, ${t.load.connections} keep-alive connections, ${t.load.firstWarmupS && t.load.firstWarmupS !== t.load.warmupS ? `${t.load.firstWarmupS} s warm-up per process with the first tool and ${t.load.warmupS} s with the next (discarded; code a request runs rarely, as 1 % tracing's sampled path, is compiled late)` : `${t.load.warmupS} s warm-up (discarded)`} then ${t.load.durationS} s measured per target and load tool${t.load.sliceWarmupS ? ` (each slice after ${t.load.sliceWarmupS} s of load on its process, discarded: an instance idles between its slices)` : ''}, in ${t.load.rounds} interleaved rounds (each round: every tool loads ${t.load.order ? t.load.order.join(', ') : `a, b, c${byTool.autocannon?.runs.cr || byTool.wrk?.runs.cr ? ', c+redis' : ''}`} in turn, in reverse order every other round) so background load hits all alike;${t.load.instances > 1 ? ` each proxy ran as ${t.load.instances} processes started alike, taking the rounds in turn (two processes of one build differ for their whole life, so one process's figure is partly its luck);` : ''} same token and headers for all. Load tools: ${Object.keys(byTool).join(', ')}${t.load.wrk ? ` (wrk: ${t.load.wrk})` : ''}. Before measuring, CPUs were ${JSON.stringify(first.machine?.idleBusyPct)} % busy${first.machine?.quiet ? '' : ' (not quiet: a shared machine)'}.`,
    '',
    'Server CPU us/req: user + system CPU time of the whole server process (every thread: GC helpers, libuv pool) read from /proc/<pid>/stat over its own slices, divided by the answers of those slices; split into the main (JavaScript) thread, the only one a V8 CPU profile sees, and all other threads (/proc/<pid>/task/<pid>/stat). Server = the upstream for (a), the proxy for (b), (c) and (c+redis).',
    '',
  ]
  for (const why of Object.values(t.skipped ?? {})) out.push(`Skipped: ${why}.`, '')
  for (const [tool, { runs, ratios }] of Object.entries(byTool)) {
    const keys = Object.keys(THROUGHPUT_ROWS).filter((k) => runs[k])
    out.push(
      `### ${tool}`,
      '',
      table(
        ['Target', 'req/s (per slice)', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'non-2xx', 'server CPU %', 'server CPU us/req (per slice)', 'per instance', 'of which main thread / other threads', 'Redis ops/req', 'server RSS max MB', 'CPU0 / CPU1 busy %'],
        keys.map((k) => {
          const x = runs[k]
          const l = x.latencyMs
          const perSlice = x.cpuUsPerRequestPerSlice ? ` (${x.cpuUsPerRequestPerSlice.join(', ')})` : ''
          return [THROUGHPUT_ROWS[k], `${x.rps} (${x.rpsPerSlice?.join(', ')})`, l.p50, l.p99, l.p999, l.max, x.non2xx + x.errors + x.timeouts, x.cpuPct.server, `${x.serverCpuUsPerRequest}${perSlice}`, x.cpuUsPerRequestByInstance?.join(', ') ?? '-', x.cpuUsPerRequestByThread ? `${x.cpuUsPerRequestByThread.main} / ${x.cpuUsPerRequestByThread.otherThreads}` : '-', x.opsPerRequest, x.serverRssMB?.max, `${x.cpuPct.perCpu.cpu0} / ${x.cpuPct.perCpu.cpu1}`]
        }),
      ),
      '',
      `Ratios: req/s c/a **${ratios.rps_c_over_a}**, c/b **${ratios.rps_c_over_b}**; p99 c/a ${ratios.p99_c_over_a}, c/b **${ratios.p99_c_over_b}**. CPU per request (b)/(c): **${ratios.cpu_per_request_b_over_c ?? '-'}**${ratios.cpu_per_request_b_over_c_per_round ? ` (per round ${ratios.cpu_per_request_b_over_c_per_round.join(', ')})` : ''}, i.e. (c) costs ${ratios.cpu_per_request_c_over_b ?? '-'} x (b) (the req/s ratio if each proxy had a whole core to itself).${ratios.cpu_per_request_c_instance_spread == null ? '' : ` Resolution: (c)'s processes, the same build, differed by ${ratios.cpu_per_request_c_instance_spread} (highest / lowest CPU per request), (b)'s by ${ratios.cpu_per_request_b_instance_spread}; a ratio nearer its target than that is within this run's noise.`}${ratios.cpu_per_request_memory_over_redis === undefined ? '' : ` Redis counters: CPU per request memory/Redis **${ratios.cpu_per_request_memory_over_redis}** (per round ${ratios.cpu_per_request_memory_over_redis_per_round.join(', ')}), req/s Redis/memory ${ratios.rps_redis_over_memory}, **${ratios.redis_ops_per_request}** Redis commands per protected request (INFO commandstats before and after each slice: ${redisDetail(runs.cr)}).`}${ratios.rps_1k_routes_over_c === undefined ? '' : ` 1,000 declared routes / the bundled file's: req/s **${ratios.rps_1k_routes_over_c}**, p99 ${ratios.p99_1k_routes_over_c}, CPU per request **${ratios.cpu_per_request_1k_routes_over_c}**, RSS max ${ratios.rss_max_mb_1k_routes_over_c} (the RSS target is the bundled file's).`}${ratios.cpu_per_request_trace1_over_c === undefined ? '' : ` Tracing (OTLP/HTTP to a local sink): CPU per request over (c) **${ratios.cpu_per_request_trace1_over_c}** at 1 %, **${ratios.cpu_per_request_trace100_over_c}** at 100 %; req/s over (c) ${ratios.rps_trace1_over_c} / ${ratios.rps_trace100_over_c}; p99 over (c) ${ratios.p99_trace1_over_c} / ${ratios.p99_trace100_over_c}.`}${ratios.cpu_per_request_c_over_before === undefined ? '' : ` Tracing off against the gateway before tracing (${t.load.before}): CPU per request (c)/(before) **${ratios.cpu_per_request_c_over_before}** (per round ${ratios.cpu_per_request_c_over_before_per_round.join(', ')}), req/s ${ratios.rps_c_over_before}.`}`,
      '',
    )
  }
  return out
}

/** Commands per request by name, and where the gateway counted after each slice. */
function redisDetail(x) {
  const byName = Object.entries(x?.opsPerRequestByName ?? {})
    .filter(([, v]) => v)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')
  const where = x?.statePerSlice ? `; the gateway's readiness after each slice: ${x.statePerSlice.join(', ')}` : ''
  return `${byName || 'none'} per request, Redis counting a script's own commands as calls too${where}`
}

function streamsMd(s) {
  return [
    `## Live streams (${stamp(s)})`,
    '',
    `${s.load.streams} SSE streams through one gateway process (one user each), \`npm run bench -- --streams\`; one event to all of them, five times; then a tenth of the tokens signed out in the revocation feed.`,
    '',
    table(
      ['open', 'RSS before MB', 'RSS held MB', 'KB per stream', 'fds held', 'fan-out p50 ms', 'fan-out p99 ms', 'sign-out close p50 ms', 'max ms', 'others open'],
      [[s.opened, s.gateway.before.rssMB, s.gateway.held.rssMB, s.gateway.perStreamKB, s.gateway.held.fds, s.fanoutMs.p50, s.fanoutMs.p99, s.revocation.p50Ms, s.revocation.maxMs, s.revocation.othersOpen ? 'all' : 'no']],
    ),
    '',
  ]
}

function soakMd(s) {
  return [
    `## Soak (${stamp(s)})`,
    '',
    `(c) for ${s.load.durationS} s after ${s.load.warmupS} s warm-up, ${s.load.connections} connections; gateway RSS from /proc every ${s.load.sampleEveryS} s.`,
    '',
    table(
      ['req/s', 'p99 ms', 'non-2xx', `RSS first ${s.rss.windowS} s avg MB`, `RSS last ${s.rss.windowS} s avg MB`, 'drift', 'RSS max MB'],
      [[s.run.rps, s.run.latencyMs.p99, s.run.non2xx + s.run.errors, s.rss.firstAvgMB, s.rss.lastAvgMB, `${Math.round(s.rss.drift * 1000) / 10} %`, s.rss.maxMB]],
    ),
    '',
    `RSS samples (MB): ${s.rss.samples.map((x) => x.rssMB).join(', ')}`,
    '',
  ]
}

function signinMd(s) {
  const l = s.signins.latencyMs
  return [
    `## Sign-in under load (${stamp(s)})`,
    '',
    `POST /api/auth/signin through the gateway to the real auth-service (bcrypt cost ${s.load.bcryptCost}, PostgreSQL), ${s.load.connections} connections for ${s.load.durationS} s; meanwhile ${s.load.probe.path} at ${s.load.probe.ratePerS}/s over ${s.load.probe.connections} connections. The auth-service and the gateway share CPU 1 (so bcrypt has one core); the load runs on CPU 0.`,
    '',
    table(
      ['sign-ins/s (200)', 'p50 ms', 'p99 ms', 'max ms', '503 (shed)', 'other non-200', 'probe p50 ms', 'probe p99 ms', 'probe non-2xx', 'event-loop delay p99, worst / median 1 s window (ms)'],
      [[s.signinsPerS, l.p50, l.p99, l.max, s.shed503, s.otherNon200, s.probe.latencyMs.p50, s.probe.latencyMs.p99, s.probe.non2xx + s.probe.errors, `${s.eventLoop.delayP99MaxMs} / ${s.eventLoop.delayP99MedianMs}`]],
    ),
    '',
    `Event-loop delay: ${s.eventLoop.source}; ${s.eventLoop.note}.`,
    '',
  ]
}

function faultsMd(f) {
  const d = f.upstreamDown
  const s = f.slowUpstream
  const m = f.manyConnections
  return [
    `## Faults (${stamp(f)})`,
    '',
    `**(i) Task upstream SIGKILLed under load**, restarted on the same port (${d.timeline.totalS} s run, kill at ${d.timeline.killAtS} s, restart at ${d.timeline.restartAtS} s):`,
    '',
    table(
      ['kill -> first error', 'upstream back -> first 200', 'before', 'while down', 'after', 'max latency ms', 'timeouts', 'auth route non-2xx'],
      [[`${d.killToFirstErrorMs} ms`, `${d.restartReadyToFirst200Ms} ms`, codes(d.statusByPhase.before), codes(d.statusByPhase.outage), codes(d.statusByPhase.after), d.tasks.latencyMs.max, d.tasks.timeouts, d.auth.non2xx + d.auth.errors]],
    ),
    '',
    `Sample answer while down: ${d.sampleErrorAnswer?.status} \`${JSON.stringify(d.sampleErrorAnswer?.body)}\`${d.sampleErrorAnswer?.retryAfter ? `, Retry-After ${d.sampleErrorAnswer.retryAfter}` : ''}.`,
    '',
    `**(ii) Slow upstream** (answers after ${s.config.upstreamDelayMs} ms, UPSTREAM_TIMEOUT_MS=${s.config.upstreamTimeoutMs}), ${s.config.connections} connections for ${s.config.durationS} s:`,
    '',
    table(
      ['answers', 'latency min / p50 / p99 / max ms', 'fds baseline / max / after / after a second run', 'fds after, by kind', 'RSS MB baseline / max / after / after a second run'],
      [[codes(s.run.statusCounts), `${s.run.latencyMs.min} / ${s.run.latencyMs.p50} / ${s.run.latencyMs.p99} / ${s.run.latencyMs.max}`, `${s.baseline.fds} / ${s.during.fdMax} / ${s.after.fds} / ${s.secondAfter?.fds ?? '-'}`, fdKinds(s.after), `${s.baseline.rssMB} / ${s.during.rssMaxMB} / ${s.after.rssMB} / ${s.secondAfter?.rssMB ?? '-'}`]],
    ),
    '',
    `**(iii) ${m.connections} concurrent connections** for ${m.run.durationS} s, twice (ulimit -n ${m.openFilesLimit}); "after" is ${m.settleS} s later, "settled" ${m.recoverS} s later. Baseline: ${m.baseline.rssMB} MB RSS, ${m.baseline.fds} fds (${fdKinds(m.baseline)}).`,
    '',
    table(
      ['burst', 'req/s', 'p50 / p99 / max ms', 'answers', 'errors', 'fds max / after / settled', 'fds after, by kind', 'RSS MB max / after / settled'],
      m.bursts.map((b, i) => [i + 1, b.run.rps, `${b.run.latencyMs.p50} / ${b.run.latencyMs.p99} / ${b.run.latencyMs.max}`, codes(b.run.statusCounts), b.run.errors + b.run.timeouts, `${b.during.fdMax} / ${b.after.fds} / ${b.settled?.fds ?? '-'}`, fdKinds(b.after), `${b.during.rssMaxMB} / ${b.after.rssMB} / ${b.settled?.rssMB ?? '-'}`]),
    ),
    '',
    `${m.recoverS} s after the second burst: ${m.recovered.rssMB} MB RSS, ${m.recovered.fds} fds (${fdKinds(m.recovered)}).`,
    '',
  ]
}

function ledgerMd(g) {
  return [
    `## Write ledger (${stamp(g)})`,
    '',
    `**(iv)** POST /api/:user/tasks through the gateway to the real task-service, ${g.load.connections} connections for ${g.load.durationS} s; task-service SIGKILLed at ${g.load.killAtS} s and restarted at once (back after ${g.restartMs} ms).`,
    '',
    table(
      ['acknowledged (201)', 'in database', 'lost acknowledged', 'unknown outcomes', 'of which committed', 'unknown outcomes, ms after kill'],
      [[g.acknowledged, g.inDatabase, g.lostAcknowledged, codes(g.unknownOutcomes.byStatus), g.unknownOutcomes.committedAnyway, `${g.unknownOutcomes.firstMsAfterKill} .. ${g.unknownOutcomes.lastMsAfterKill}`]],
    ),
    '',
  ]
}

function hostileMd(h) {
  const c = h.config
  const l = h.probe.latencyMs
  return [
    `## Hostile bodies (${stamp(h)})`,
    '',
    `**(v)** ${c.requests} POST /api/auth/signin with ${c.depth} nested arrays (${Math.round(c.bodyBytes / 1024)} KiB each), ${c.inFlight} in flight, while GET /health is asked over one keep-alive connection, ${c.probeGapMs} ms apart:`,
    '',
    table(
      ['nested-body answers', 'their latency p50 / max ms', '/health probes', '/health p50 / p99 / max ms', 'idle /health p99 ms'],
      [[codes(h.hostile.statusCounts), `${h.hostile.latencyMs.p50} / ${h.hostile.latencyMs.max}`, h.probe.samples, `${l.p50} / ${l.p99} / ${l.max}`, h.probeIdle.latencyMs.p99]],
    ),
    '',
  ]
}

function instructionsMd(x) {
  return [
    `## Instructions per request, callgrind (${stamp(x)})`,
    '',
    `Every thread of each server counted by valgrind's callgrind over ${x.countedRequests} requests after ${x.warmupRequests} of warm-up (${x.connections} connections, the contenders at the same time): the same count for the same work whatever the machine's speed. A guide for code on the path, not a target: it counts instructions, not what they cost.`,
    '',
    table(['contender', 'instructions/request', 'non-200 answers'], Object.values(x.rows).map((r) => [r.label, r.instructionsPerRequest, r.non200])),
    '',
    `(c)/(b): **${x.ratios.c_over_b}**${x.ratios.trace1_over_c === undefined ? '' : `; (c+trace1%)/(c): **${x.ratios.trace1_over_c}**`}${x.ratios.c_over_before_tracing === undefined ? '' : `; (c)/(c before tracing): **${x.ratios.c_over_before_tracing}**`}`,
    '',
  ]
}

function profileMd(p) {
  const g = p.gateway
  return [
    `## CPU profiles, bare proxy vs gateway (${stamp(p)})`,
    '',
    `\`node --cpu-prof\` on (b) and on (c) in turn under the same load (${p.connections} connections); only the ${p.profiledS} s after warm-up are counted. The profiler itself slows both (compare the req/s below with the throughput table); shares are what matter. CPU per request: (b) **${p.cpuUsPerRequest.b} us**, (c) **${p.cpuUsPerRequest.c} us** (${p.bare.rps} vs ${g.rps} req/s while profiled).`,
    '',
    'What the gateway adds, self time per request by package or file (us):',
    '',
    table(['package / file', '(b) us/req', '(c) us/req', 'added us/req'], p.addedByOwner.map((x) => [x.owner, x.bUs, x.cUs, x.addedUs])),
    '',
    'What the gateway adds, by function (self time per request, us; functions (b) never runs count from 0):',
    '',
    table(['added us/req', '(b) us/req', '(c) us/req', 'function', 'where'], (p.addedFunctions ?? []).map((x) => [x.addedUs, x.bUs, x.cUs, `\`${x.fn}\``, x.where || x.owner])),
    '',
    'Gateway, top functions by self time:',
    '',
    table(['self %', 'us/req', 'function', 'where'], g.topSelf.map((x) => [x.selfPct, x.usPerRequest, `\`${x.fn}\``, x.where])),
    '',
    'Gateway, project functions by inclusive time (a callback-style hook that calls done() synchronously also counts the hooks and the reply that run after it):',
    '',
    table(['inclusive %', 'function'], g.projectInclusive.map((x) => [x.inclusivePct, `\`${x.fn}\``])),
    '',
  ]
}
