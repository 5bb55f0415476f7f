/**
 * Logs on stdout are buffered (one write for many lines) but never held
 * back for long or lost at exit: a line shows up within about a second on an
 * idle process, and everything is out when the process exits, crashes
 * included.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const commonLogging = fileURLToPath(new URL('../../common/dist/logging.js', import.meta.url))

function child(script: string) {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'ignore'] })
  const lines: Array<{ msg: string; at: number }> = []
  const started = performance.now()
  let partial = ''
  proc.stdout.on('data', (d: Buffer) => {
    partial += d.toString()
    const parts = partial.split('\n')
    partial = parts.pop()!
    for (const p of parts) lines.push({ msg: JSON.parse(p).msg, at: performance.now() - started })
  })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', resolve))
  return { lines, exited }
}

const prelude = `
import { pino } from 'pino'
import { stdoutDestination } from ${JSON.stringify(commonLogging)}
const log = pino({}, stdoutDestination())
`

t.test('an idle process gets its line out within about a second', async (t) => {
  const { lines, exited } = child(`${prelude}
log.info('first')
setTimeout(() => process.exit(0), 2500)
`)
  await new Promise((r) => setTimeout(r, 1900))
  t.same(
    lines.map((l) => l.msg),
    ['first'],
    'flushed by the periodic flush, long before exit',
  )
  t.equal(await exited, 0)
})

t.test('everything buffered is written at exit, also when the process crashes', async (t) => {
  const clean = child(`${prelude}
for (let i = 0; i < 50; i++) log.info('line ' + i)
process.exit(0)
`)
  t.equal(await clean.exited, 0)
  t.equal(clean.lines.length, 50, 'all 50 lines after a clean exit')

  const crash = child(`${prelude}
for (let i = 0; i < 50; i++) log.info('line ' + i)
setImmediate(() => { throw new Error('boom') })
`)
  t.not(await crash.exited, 0, 'the process crashed')
  t.equal(crash.lines.length, 50, 'and still wrote all 50 lines')
})
