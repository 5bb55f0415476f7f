/**
 * `npm test`: run every tap suite against a real PostgreSQL. Without
 * TEST_DATABASE_URL it starts the embedded one (in memory) for the run and
 * points the suites at it; with it set, the suites use that server.
 *
 * `npm test -- --coverage` also records V8 coverage of the test processes and
 * of every process they start (into .tap/coverage, for `npm run coverage`,
 * which holds each workspace to its floor). Other arguments go to tap.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres.js'

// tap's own floors stay at 0: the per-workspace floor is `npm run coverage`'s (tap's is over all files at once).
const COVERAGE_ARGS = ['--no-disable-coverage', '--coverage-report=none', '--lines=0', '--statements=0', '--functions=0', '--branches=0']
const args = process.argv.slice(2).flatMap((arg) => (arg === '--coverage' ? COVERAGE_ARGS : [arg]))
let embedded: EmbeddedPostgres | undefined
const env = { ...process.env }
if (!env.TEST_DATABASE_URL) {
  embedded = await startEmbeddedPostgres()
  env.TEST_DATABASE_URL = embedded.url
  process.stdout.write(`# embedded PostgreSQL (PGlite) for this run at ${embedded.url}\n`)
} else {
  process.stdout.write(`# tests use TEST_DATABASE_URL ${env.TEST_DATABASE_URL.replace(/\/\/[^@]*@/, '//')}\n`)
}

// tap's CLI entry, from the hoisted workspace install.
const tapBin = fileURLToPath(new URL('../../node_modules/tap/dist/esm/run.mjs', import.meta.url))
const child = spawn(process.execPath, [tapBin, ...args], { stdio: 'inherit', env })
const forward = (sig: NodeJS.Signals) => child.kill(sig)
process.on('SIGINT', forward)
process.on('SIGTERM', forward)
const code: number = await new Promise((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))))
await embedded?.stop()
process.exit(code)
