/**
 * Fault (iv), the write ledger: task creates through the gateway to the REAL
 * task-service (PostgreSQL), which is SIGKILLed mid-run and restarted on the
 * same port. Every create acknowledged with 201 must be in the database
 * afterwards; 502/503/504 (and client-side errors) are unknown outcomes,
 * listed apart, never counted as lost.
 */
import { startGateway, startTaskService, startUpstream } from '../lib/stack.mjs'
import { sleep, stop } from '../lib/procs.mjs'
import { runLoad } from '../lib/load.mjs'
import { round } from '../lib/proc-stats.mjs'
import { withDb } from '../lib/db.mjs'
import { benchUser, check, expectStatus, waitQuiet } from '../lib/scenario.mjs'

const CONNECTIONS = 20

export async function ledger(cfg, log) {
  const user = await benchUser()
  let tasks = await startTaskService()
  const auth = await startUpstream({ name: 'auth-upstream' })
  const totalS = Math.max(cfg.faultS, 4)
  const killAtMs = totalS * 300
  const acked = new Set()
  const unknown = {} // status (or client error) -> count
  const at = { kill: null, restartReady: null, firstUnknown: null, lastUnknown: null }
  let gw
  let run
  try {
    gw = await startGateway({ tasksUrl: tasks.url, authUrl: auth.url })
    const url = gw.url + user.tasksPath
    const headers = { ...user.headers, 'content-type': 'application/json' }
    const body = JSON.stringify({ title: 'bench ledger' })
    acked.add(JSON.parse(await expectStatus(url, { method: 'POST', status: 201, headers, body })).id)
    await waitQuiet(log)
    log(`  (iv) ${totalS}s of POST tasks (${CONNECTIONS} conns) to the real task-service; SIGKILL at ${killAtMs / 1000}s, restart at once`)

    const noteUnknown = (key, when) => {
      unknown[key] = (unknown[key] ?? 0) + 1
      at.firstUnknown ??= when
      at.lastUnknown = when
    }
    const loadDone = runLoad(
      {
        url,
        connections: CONNECTIONS,
        durationS: totalS,
        timeoutS: 15,
        headers,
        requests: [
          {
            method: 'POST',
            path: user.tasksPath,
            headers,
            body,
            // Bodies are read only here: the id of every acknowledged create.
            onResponse: (status, resBody) => {
              if (status === 201) acked.add(JSON.parse(resBody).id)
            },
          },
        ],
      },
      {
        onResponse: (status, when) => status !== 201 && noteUnknown(String(status), when),
        onError: (err, when) => noteUnknown(err.code ?? 'client timeout', when),
      },
    )
    const t0 = performance.now()
    await sleep(killAtMs)
    process.kill(tasks.proc.pid, 'SIGKILL')
    at.kill = performance.now()
    await tasks.proc.exitPromise
    tasks = await startTaskService({ port: tasks.port })
    at.restartReady = performance.now()
    log(`  (iv) task-service killed at ${round((at.kill - t0) / 1000, 1)}s, back after ${round(at.restartReady - at.kill, 0)} ms`)
    run = await loadDone
  } finally {
    await stop(gw?.proc)
    await Promise.all([stop(tasks.proc), stop(auth.proc)])
  }

  const rows = await withDb(async (db) => {
    const { rows: found } = await db.query('SELECT id FROM tasks WHERE user_id = $1', [user.sub])
    await db.query('DELETE FROM tasks WHERE user_id = $1', [user.sub]) // bench rows only (a fresh random user id)
    return new Set(found.map((r) => r.id))
  })
  const lost = [...acked].filter((id) => !rows.has(id))
  const unknownTotal = Object.values(unknown).reduce((a, b) => a + b, 0)
  // Rows nobody was told about: unknown outcomes that did commit.
  const committedUnacked = [...rows].filter((id) => !acked.has(id)).length
  const rel = (x) => (x === null ? null : round(x - at.kill, 0))
  const result = {
    measuredAt: new Date().toISOString(),
    load: { connections: CONNECTIONS, durationS: totalS, killAtS: killAtMs / 1000 },
    acknowledged: acked.size,
    inDatabase: rows.size,
    lostAcknowledged: lost.length,
    lostIds: lost.slice(0, 20),
    unknownOutcomes: { total: unknownTotal, byStatus: unknown, committedAnyway: committedUnacked, firstMsAfterKill: rel(at.firstUnknown), lastMsAfterKill: rel(at.lastUnknown) },
    restartMs: round(at.restartReady - at.kill, 0),
    run,
  }
  log(`  (iv) acknowledged ${acked.size}, in database ${rows.size}, lost ${lost.length}; unknown outcomes ${JSON.stringify(unknown)} (${committedUnacked} committed anyway)`)
  const only5xxUnknown = Object.keys(unknown).every((k) => ['502', '503', '504'].includes(k))
  result.checks = [
    check('iv-lost', '(iv) acknowledged (201) creates missing from the database', '0', lost.length, lost.length === 0 && acked.size > 1),
    check('iv-unknown', '(iv) unknown outcomes are 502/503/504 only', '502/503/504', JSON.stringify(unknown), only5xxUnknown),
  ]
  return result
}
