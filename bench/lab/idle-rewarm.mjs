/**
 * Lab (not part of `npm run bench`): does a process that idled for minutes
 * cost more CPU per request when load comes back, and does the gateway (c)
 * suffer more than the bare @fastify/http-proxy (b)? The bench's instances
 * idle minutes between their slices; an outside harness loads each proxy
 * without a pause. BENCH_LAB_INSTANCES processes of each, visited in turn
 * (order reversed every other round), so each idles while the others are
 * loaded; each visit: 2 s of discarded load, then three measured slices back
 * to back: A (the first after the idle), B and C (hot). CPU per request is
 * user + sys of the whole process, as in the bench. Needs wrk and a build.
 *
 *   node bench/lab/idle-rewarm.mjs   # BENCH_LAB_INSTANCES (5), BENCH_LAB_ROUNDS (5), BENCH_LAB_SLICE_S (4)
 */
import { startBareProxy, startGateway } from '../lib/stack.mjs'
import { runWrk } from '../lib/wrk.mjs'
import { cpuSeconds } from '../lib/proc-stats.mjs'
import { withWrkLab } from './wrk-lab.mjs'

const INSTANCES = Number(process.env.BENCH_LAB_INSTANCES ?? 5)
const ROUNDS = Number(process.env.BENCH_LAB_ROUNDS ?? 5)
const SLICE_S = Number(process.env.BENCH_LAB_SLICE_S ?? 4)
const SLICES = ['A', 'B', 'C']

await withWrkLab(async ({ user, tasks, auth }) => {
  const servers = []
  for (let i = 0; i < INSTANCES; i++) {
    servers.push({ key: 'b', ...(await startBareProxy({ upstreamUrl: tasks.url })) })
    servers.push({ key: 'c', ...(await startGateway({ tasksUrl: tasks.url, authUrl: auth.url })) })
  }
  const load = async (server, durationS) => {
    const cpu0 = cpuSeconds(server.proc.pid)
    const run = await runWrk({ url: server.url + user.tasksPath, headers: user.headers, connections: 50, durationS })
    return { cpuS: cpuSeconds(server.proc.pid) - cpu0, responses: run.responses }
  }
  for (const server of servers) await load(server, SLICE_S) // first warm-up
  const totals = {} // 'bA' -> { cpuS, responses }
  for (let r = 1; r <= ROUNDS; r++) {
    for (const server of r % 2 ? servers : [...servers].reverse()) {
      await load(server, 2)
      const figures = []
      for (const slice of SLICES) {
        const { cpuS, responses } = await load(server, SLICE_S)
        const t = (totals[server.key + slice] ??= { cpuS: 0, responses: 0 })
        t.cpuS += cpuS
        t.responses += responses
        figures.push(`${slice} ${((cpuS * 1e6) / responses).toFixed(1)}`)
      }
      console.log(`round ${r} (${server.key}) pid ${server.proc.pid}: us/request ${figures.join(', ')}`)
    }
  }
  const usPerRequest = (key) => (totals[key].cpuS * 1e6) / totals[key].responses
  for (const slice of SLICES) {
    console.log(`slice ${slice}: (b) ${usPerRequest(`b${slice}`).toFixed(1)}, (c) ${usPerRequest(`c${slice}`).toFixed(1)} us/request, (b)/(c) ${(usPerRequest(`b${slice}`) / usPerRequest(`c${slice}`)).toFixed(3)}`)
  }
})
