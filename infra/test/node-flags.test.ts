/**
 * Every way a service is started runs node with the same V8 flags: each workspace's `npm start`, the launcher's
 * NODE_FLAGS (npm start at the root) and the Dockerfile's CMD (compose, Kubernetes). The bench reads them from each
 * workspace's `npm start` with bench/lib/node-flags.mjs, which this test reads them with too, so a flag that one path
 * lost would be measured but not shipped, or shipped untested.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { NODE_FLAGS } from '../src/processes.js'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const read = (path: string) => readFileSync(`${repoRoot}${path}`, 'utf8')

/** The bench's own reading of a workspace's `npm start` (bench/lib/node-flags.mjs): what it measures is what ships. */
const benchModule = new URL('../../bench/lib/node-flags.mjs', import.meta.url).href
const { nodeFlags: startFlags } = (await import(benchModule)) as { nodeFlags: (workspace: string) => string[] }

function dockerfileFlags(): string[] {
  const cmd = /^CMD (\[.*\])$/m.exec(read('infra/docker/Dockerfile'))
  if (!cmd) throw new Error('no exec-form CMD in infra/docker/Dockerfile')
  const argv = JSON.parse(cmd[1]!) as string[]
  if (argv[0] !== 'node' || argv.at(-1) !== 'dist/server.js') throw new Error(`the Dockerfile's CMD is not node <flags> dist/server.js: ${cmd[1]}`)
  return argv.slice(1, -1)
}

t.test('npm start, the launcher and the image run node with the same flags', async (t) => {
  for (const workspace of ['gateway', 'auth-service', 'task-service']) t.same(startFlags(workspace), NODE_FLAGS, `${workspace}'s npm start`)
  t.same(dockerfileFlags(), NODE_FLAGS, "the Dockerfile's CMD")
})

t.test('the flags keep compiled code across an idle pause and size the young generation', async (t) => {
  t.ok(NODE_FLAGS.includes('--no-memory-reducer'), 'no memory reducer (README, Benchmark)')
  t.ok(NODE_FLAGS.includes('--min-semi-space-size=16') && NODE_FLAGS.includes('--max-semi-space-size=16'))
})

t.test('the node that runs the tests accepts every flag', async (t) => {
  t.equal(execFileSync(process.execPath, [...NODE_FLAGS, '-e', 'process.stdout.write("ok")'], { encoding: 'utf8' }), 'ok')
})
