/**
 * An earlier build of the gateway, measured beside today's in the same run:
 * issue 16 asks that (c) with tracing off stay within 2 % of the gateway
 * before tracing existed, and two builds compared in separate runs differ by
 * the machine's minute (2-3x here), not by their code.
 *
 * The commit is exported with `git archive` into a scratch folder, installed
 * from its own lockfile (`npm ci`, served by the npm cache) and built
 * (`npm run build`): about 30 s, once per commit; the folder is kept under
 * the temp directory for the next run. Its gateway runs with today's bench
 * environment (an older build ignores the variables it does not know) and
 * today's node flags (its own start script had a smaller young generation,
 * --max-semi-space-size=8, which costs CPU per request): only the code differs.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from './stack.mjs'

/** The last commit before tracing landed (ee3370e "Tracing with OpenTelemetry"): the "before" of tracing off. */
export const BEFORE_TRACING = { ref: 'e3e4766', what: 'the last commit before tracing was added' }

/** The full id of `ref` in this checkout, or null (no git, a shallow clone or an export without history). */
function commitOf(ref) {
  try {
    return execFileSync('git', ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || null
  } catch {
    return null
  }
}

/**
 * The built tree of `ref` ({ root }, its path ending in /): exported, installed and built on first use,
 * reused after; or { skipped } saying why not (the commit is not in this checkout, or its install or build
 * failed), so the run goes on without the row built from it.
 */
export function baseline(ref, log) {
  const commit = commitOf(ref)
  if (!commit) return { skipped: `commit ${ref} is not in this checkout (a shallow clone or an export): the row built from it is left out` }
  try {
    return { root: build(ref, commit, log) }
  } catch (err) {
    return { skipped: `${err.message}: the row built from ${ref} is left out` }
  }
}

function build(ref, commit, log) {
  const dir = join(tmpdir(), `tollgate-bench-${commit.slice(0, 12)}`)
  const built = join(dir, '.bench-built')
  if (existsSync(built)) return `${dir}/`
  log(`building ${ref} (${commit.slice(0, 12)}) in ${dir}: git archive, npm ci, npm run build`)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const run = (command, args, opts = {}) => {
    const r = spawnSync(command, args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20, ...opts })
    if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed in ${dir} (exit ${r.status}): ${(r.stderr || r.stdout || String(r.error)).trim().split('\n').slice(-5).join(' | ')}`)
  }
  run('sh', ['-c', `git -C "${ROOT}" archive ${commit} | tar -x -C "${dir}"`])
  run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'])
  run('npm', ['run', 'build'])
  writeFileSync(built, `${commit}\n`)
  return `${dir}/`
}
