/**
 * HmacSha256 gives exactly what createHmac('sha256') gives: RFC 4231's test
 * vectors, keys of every length around the block size, texts of every kind
 * a proof can hold (ASCII, latin-1 from Node's parser, other Unicode, lone
 * surrogates), the edge where the fast path hands over to createHmac, and one
 * instance used for many texts in a row (its buffer is reused).
 */
import t from 'tap'
import { createHmac, randomBytes } from 'node:crypto'
import { HmacSha256 } from '../src/hmac.js'
import { signIdentity, verifyIdentity } from '../src/identity.js'

const reference = (key: Buffer, text: string) => createHmac('sha256', key).update(text).digest('base64url')
const hex = (s: string) => Buffer.from(s, 'hex')
const b64url = (hexDigest: string) => Buffer.from(hexDigest, 'hex').toString('base64url')

t.test("RFC 4231's HMAC-SHA-256 vectors (those whose data is text)", async (t) => {
  // Test cases 1, 2, 6 and 7 (3 and 4 have binary data, 5 a truncated output): key, data, HMAC-SHA-256.
  const cases: Array<[string, Buffer, string, string]> = [
    ['1', hex('0b'.repeat(20)), 'Hi There', 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'],
    ['2', Buffer.from('Jefe'), 'what do ya want for nothing?', '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'],
    [
      '6 (key longer than the block)',
      hex('aa'.repeat(131)),
      'Test Using Larger Than Block-Size Key - Hash Key First',
      '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
    ],
    [
      '7 (key and data longer than the block)',
      hex('aa'.repeat(131)),
      'This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.',
      '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
    ],
  ]
  for (const [name, key, data, mac] of cases) t.equal(new HmacSha256(key).base64url(data), b64url(mac), `test case ${name}`)
})

t.test('random keys of every length up to three blocks, random texts: equal to createHmac', async (t) => {
  let checked = 0
  for (let len = 0; len <= 192; len++) {
    const key = randomBytes(len)
    const mac = new HmacSha256(key)
    for (const text of ['', 'x', randomText(40), randomText(300)]) {
      if (mac.base64url(text) !== reference(key, text)) t.fail(`key of ${len} bytes, text ${JSON.stringify(text)}`)
      checked++
    }
  }
  t.equal(checked, 193 * 4)
})

t.test('texts of every kind, one instance for all of them in a row', async (t) => {
  const key = randomBytes(32)
  const mac = new HmacSha256(key)
  const texts = [
    'v1\nuser\n3f0c8a2e-1111-2222-3333-444455556666\nGET\n/api/3f0c8a2e-1111-2222-3333-444455556666/tasks\nreq-1\n1796290689715',
    'caf\u00e9 \u00ff\u0080 latin-1 as Node parses a URL',
    '\u20ac \u4e2d\u6587 \ud83d\ude00 three- and four-byte UTF-8',
    'lone surrogates \ud800 and \udfff',
    'a long one '.repeat(300),
    'short after long',
  ]
  for (let round = 0; round < 3; round++) {
    for (const text of texts) t.equal(mac.base64url(text), reference(key, text), `${JSON.stringify(text.slice(0, 30))} (round ${round})`)
  }
  // 2,000 random texts, lengths 0-600, any UTF-16 unit.
  let mismatches = 0
  for (let i = 0; i < 2000; i++) {
    const text = randomText(Math.floor(Math.random() * 600), true)
    if (mac.base64url(text) !== reference(key, text)) mismatches++
  }
  t.equal(mismatches, 0)
})

t.test('where the fast path hands over: the longest texts it takes, of three-byte characters, and one unit more', async (t) => {
  const key = randomBytes(32)
  const mac = new HmacSha256(key)
  for (const n of [4095, 4096, 4097, 20_000]) {
    const text = '\u20ac'.repeat(n) // 3 UTF-8 bytes each: the buffer's worst case
    t.equal(mac.base64url(text), reference(key, text), `${n} three-byte characters`)
    t.equal(mac.base64url('z'), reference(key, 'z'), `a short text after ${n}`)
  }
})

t.test('two keys used in turn keep their own state; the identity proof verifies across them', async (t) => {
  const k1 = randomBytes(32)
  const k2 = randomBytes(32)
  for (let i = 0; i < 5; i++) {
    const key = i % 2 === 0 ? k1 : k2
    const other = i % 2 === 0 ? k2 : k1
    const headers = signIdentity(key, { caller: 'user', userId: `u${i}` }, 'GET', `/api/u${i}/tasks?x=1`, `r${i}`)
    t.same(verifyIdentity(key, headers, 'GET', `/api/u${i}/tasks`, `r${i}`, 30_000), { caller: 'user', userId: `u${i}` })
    t.equal(verifyIdentity(other, headers, 'GET', `/api/u${i}/tasks`, `r${i}`, 30_000), null, 'the other key refuses it')
    const expected = reference(key, `v1\nuser\nu${i}\nGET\n/api/u${i}/tasks\nr${i}\n${headers['x-tollgate-timestamp'] ?? ''}`)
    t.equal(headers['x-tollgate-signature'], `v1=${expected}`, 'the proof is the HMAC createHmac gives')
  }
})

function randomText(n: number, anyUnit = false): string {
  let s = ''
  for (let i = 0; i < n; i++) {
    const r = Math.random()
    s += String.fromCharCode(anyUnit ? Math.floor(Math.random() * 0x10000) : r < 0.7 ? 32 + Math.floor(Math.random() * 95) : r < 0.9 ? 0x80 + Math.floor(Math.random() * 0x80) : 0x100 + Math.floor(Math.random() * 0x2000))
  }
  return s
}
