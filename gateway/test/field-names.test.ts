/**
 * The forwarder's field names (src/proxy/field-names.ts, with its dropped fields): whatever bytes an
 * upstream sends as a name, the result is exactly what
 * `buf.toString('latin1').toLowerCase()` gives, and a common name comes back as
 * the same constant string whatever its case.
 */
import t from 'tap'
import { randomInt } from 'node:crypto'
import { fieldName } from '../src/proxy/forwarder.js'

const reference = (raw: Buffer) => raw.toString('latin1').toLowerCase()
const COMMON = ['content-type', 'content-length', 'date', 'connection', 'keep-alive', 'cache-control', 'vary', 'set-cookie', 'etag', 'x-request-id', 'access-control-allow-origin', 'transfer-encoding', 'te', 'ratelimit-policy']
/** RFC 9110 token characters. */
const TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

function randomCase(name: string): string {
  return [...name].map((c) => (randomInt(2) ? c.toUpperCase() : c)).join('')
}

t.test('common names, in any case, are their lower-case constant', async (t) => {
  for (const name of COMMON) {
    for (const form of [name, name.toUpperCase(), randomCase(name), randomCase(name)]) {
      t.equal(fieldName(Buffer.from(form, 'latin1')), name, form)
    }
  }
})

t.test('a name one byte away from a common one is not taken for it', async (t) => {
  let checked = 0
  for (const name of COMMON) {
    for (let i = 0; i < name.length; i++) {
      // Every byte value in place of one character: case-folding must not match a non-letter to a letter or a dash.
      for (let byte = 0; byte < 256; byte++) {
        const raw = Buffer.from(name, 'latin1')
        raw[i] = byte
        const got = fieldName(raw)
        if (got !== reference(raw)) t.fail(`${JSON.stringify(raw.toString('latin1'))}: ${got} against ${reference(raw)}`)
        checked++
      }
    }
  }
  t.pass(`${checked} variants agree with toString('latin1').toLowerCase()`)
})

t.test('random names agree with toString().toLowerCase()', async (t) => {
  for (let n = 0; n < 5000; n++) {
    const length = randomInt(1, 40)
    let name = ''
    for (let i = 0; i < length; i++) name += TCHAR[randomInt(TCHAR.length)]
    const raw = Buffer.from(name, 'latin1')
    if (fieldName(raw) !== reference(raw)) t.fail(name)
  }
  t.pass('5,000 random names')
  t.equal(fieldName(Buffer.alloc(0)), '')
  t.equal(fieldName(Buffer.from('content\rtype', 'latin1')), 'content\rtype', 'a carriage return is not a dash')
  t.equal(fieldName(Buffer.from('Content\u00c4Type', 'latin1')), 'content\u00e4type', 'latin-1 letters fold as toLowerCase folds them')
})
