/**
 * Logs on stdout are buffered (one write for many lines) but never held
 * back for long or lost at exit: a line shows up on an idle process by the
 * periodic flush (every second), and everything is out when the process
 * exits, crashes included.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const commonLogging = fileURLToPath(new URL('../../common/dist/logging.js', import.meta.url))

function child(script: string) {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'ignore'] })
  const lines: Array<{ msg: string; whileRunning: boolean }> = []
  let partial = ''
  proc.stdout.on('data', (d: Buffer) => {
    partial += d.toString()
    const parts = partial.split('\n')
    partial = parts.pop()!
    for (const p of parts) lines.push({ msg: JSON.parse(p).msg, whileRunning: proc.exitCode === null && proc.signalCode === null })
  })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', resolve))
  return { proc, lines, exited }
}

const prelude = `
import { pino } from 'pino'
import { stdoutDestination } from ${JSON.stringify(commonLogging)}
const log = pino({}, stdoutDestination())
`

t.test('an idle process gets its line out by the periodic flush, not only at exit', async (t) => {
  // The child stays idle until told to exit (its stdin closed): the line can only come from the periodic flush.
  // The 60 s backstop (exit 3) only keeps a broken flush from hanging the run.
  const { proc, lines, exited } = child(`${prelude}
log.info('first')
process.stdin.resume()
process.stdin.on('end', () => process.exit(0))
setTimeout(() => process.exit(3), 60_000).unref()
`)
  const arrived = new Promise<void>((resolve) => proc.stdout.on('data', () => lines.length > 0 && resolve()))
  await Promise.race([arrived, exited])
  t.same(
    lines.map((l) => l.msg),
    ['first'],
    'flushed by the periodic flush',
  )
  t.ok(lines[0]?.whileRunning, 'while the process was running and idle, long before exit')
  proc.stdin.end()
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
