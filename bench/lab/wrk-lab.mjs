/**
 * What the wrk labs share: wrk present, this process on the load CPU, one
 * bench user, the two plain upstreams (tasks and auth) the proxies forward to,
 * and every process stopped at the end, whatever happened.
 */
import { startUpstream } from '../lib/stack.mjs'
import { benchUser } from '../lib/scenario.mjs'
import { wrkMissing } from '../lib/wrk.mjs'
import { pinSelf, stopAll } from '../lib/procs.mjs'

/** Runs `lab({ user, tasks, auth })`. */
export async function withWrkLab(lab) {
  const missing = wrkMissing()
  if (missing) throw new Error(missing)
  pinSelf()
  const user = await benchUser()
  try {
    const tasks = await startUpstream({ name: 'tasks-upstream' })
    const auth = await startUpstream({ name: 'auth-upstream' })
    await lab({ user, tasks, auth })
  } finally {
    await stopAll()
  }
}
