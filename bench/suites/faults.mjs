/** Issue item 4 (i)-(iii): each fault a scripted run with its own gateway and upstreams. */
import { upstreamDown } from './fault-upstream-down.mjs'
import { slowUpstream } from './fault-slow-upstream.mjs'
import { manyConnections } from './fault-connections.mjs'

export async function faults(cfg, log) {
  log('(i) task upstream killed under load')
  const down = await upstreamDown(cfg, log)
  log('(ii) slow upstream')
  const slow = await slowUpstream(cfg, log)
  log('(iii) many connections')
  const many = await manyConnections(cfg, log)
  return {
    measuredAt: new Date().toISOString(),
    upstreamDown: down,
    slowUpstream: slow,
    manyConnections: many,
    checks: [...down.checks, ...slow.checks, ...many.checks],
  }
}
