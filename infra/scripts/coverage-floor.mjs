// `npm run coverage`: lines covered per workspace over its src/, from the V8 coverage that a
// `npm run test:coverage` run left in .tap/coverage (the test processes and every process they
// started, mapped back to the TypeScript through the source maps). Every src file counts, loaded
// by a test or not. Prints a table and exits 1 when a workspace is under the floor.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join, resolve, sep } from 'node:path'
import { Report } from 'c8'

const FLOOR = 90
const WORKSPACES = ['common', 'auth-service', 'task-service', 'gateway', 'infra']
const root = resolve(import.meta.dirname, '../..')
const coverageDir = resolve(root, '.tap/coverage')

process.chdir(root) // c8 matches files relative to the working directory
if (!existsSync(coverageDir) || readdirSync(coverageDir).length === 0) {
  console.log('no coverage recorded in .tap/coverage: run `npm run test:coverage` first')
  process.exit(1)
}

// c8 merges the processes' coverage by file URL. When two processes ran different code under one URL (a src/ file
// compiled by tap's TypeScript loader in a test and by another loader in a child it started), their offsets do not
// line up and the merged figures are wrong, by as much as 20 points, depending on the order the files are read in.
const transforms = new Map()
for (const name of readdirSync(coverageDir)) {
  const { 'source-map-cache': cache = {} } = JSON.parse(readFileSync(join(coverageDir, name), 'utf8'))
  for (const [url, { lineLengths }] of Object.entries(cache)) {
    const shape = lineLengths.join(',')
    if (!transforms.has(url)) transforms.set(url, new Set())
    transforms.get(url).add(shape)
  }
}
const mixed = [...transforms].filter(([, shapes]) => shapes.size > 1).map(([url]) => url)
if (mixed.length > 0) {
  console.log('coverage not measurable: these files ran as different code in different processes (a process started')
  console.log('with another TypeScript loader? start the built dist/ entry instead):')
  for (const url of mixed) console.log(`  ${url}`)
  process.exit(1)
}

const report = new Report({
  tempDirectory: coverageDir,
  reportsDirectory: resolve(root, '.tap/report'),
  reporter: [],
  excludeNodeModules: true,
  // Files no test loaded count as uncovered: the built dist/ of each workspace, mapped to src/.
  all: true,
  src: WORKSPACES.map((w) => resolve(root, w, 'dist')),
})
const map = await report.getCoverageMapFromAllCoverageFiles()

const totals = new Map(WORKSPACES.map((w) => [w, { total: 0, covered: 0, files: [] }]))
for (const file of map.files()) {
  const [workspace, dir] = file.slice(root.length + 1).split(sep)
  const entry = totals.get(workspace)
  // Only sources that still exist (a stale dist/ file maps to a deleted one).
  if (!entry || dir !== 'src' || !existsSync(file)) continue
  const { lines } = map.fileCoverageFor(file).toSummary()
  entry.total += lines.total
  entry.covered += lines.covered
  entry.files.push({ file: file.slice(root.length + 1), missed: lines.total - lines.covered, pct: lines.pct })
}

const pct = ({ total, covered }) => (total === 0 ? 100 : (100 * covered) / total)
const below = []
console.log(`lines covered per workspace (src/, floor ${FLOOR} %)`)
console.log(`${'workspace'.padEnd(14)} ${'lines'.padStart(6)} ${'covered'.padStart(8)} ${'%'.padStart(6)}`)
for (const [workspace, entry] of totals) {
  const p = pct(entry)
  if (p < FLOOR) below.push(workspace)
  console.log(`${workspace.padEnd(14)} ${String(entry.total).padStart(6)} ${String(entry.covered).padStart(8)} ${p.toFixed(1).padStart(6)}${p < FLOOR ? '  below the floor' : ''}`)
}
for (const workspace of below) {
  console.log(`${workspace}: the files missing the most lines`)
  const worst = totals.get(workspace).files.sort((a, b) => b.missed - a.missed).slice(0, 8)
  for (const f of worst) console.log(`  ${f.file}: ${f.missed} lines uncovered (${f.pct} %)`)
}
if (below.length) {
  console.log(`coverage under ${FLOOR} % of lines in: ${below.join(', ')}`)
  process.exit(1)
}
