/**
 * The node flags of a workspace's `npm start` (V8 heap sizing, no memory reducer), so the bench runs each process
 * as users do. Its own module, free of the bench's process handling, so infra/test/node-flags.test.ts checks the
 * very parse the bench uses.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

export function nodeFlags(workspace = 'gateway') {
  const start = JSON.parse(readFileSync(`${ROOT}${workspace}/package.json`, 'utf8')).scripts.start
  const m = /^node((?: --[\w-]+(?:=\S+)?)*) dist\/server\.js$/.exec(start)
  if (!m) throw new Error(`${workspace}/package.json start script not understood: ${start}`)
  return m[1].trim().split(' ').filter(Boolean)
}
