/**
 * The Authorization header's Bearer token: the fast path for "Bearer <visible ASCII>" must give exactly what the
 * regex rule (RFC 6750's `Bearer 1*SP token`, case-insensitive scheme, trailing spaces allowed) gives, on every
 * input: the same token, or the same refusal (no credentials vs a bad token).
 */
import t from 'tap'
import { errors, HttpError } from '@tollgate/common'
import { bearerToken } from '../src/auth/authenticate.js'

/** The rule as it was written before the fast path, kept here as the reference. */
function reference(header: string | undefined): string | HttpError {
  if (!header) return errors.unauthorized()
  const m = /^Bearer +([^\s]+) *$/i.exec(header)
  if (!m) return /^bearer\b/i.test(header) ? errors.invalidToken() : errors.unauthorized()
  return m[1]!
}

const outcome = (r: string | HttpError) => (r instanceof HttpError ? `error ${r.statusCode} ${r.errorCode}` : `token ${r}`)

t.test('named cases', async (t) => {
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.sig-_x'
  const cases: Array<[string | undefined, string]> = [
    [undefined, 'error 401 UNAUTHORIZED'],
    ['', 'error 401 UNAUTHORIZED'],
    [`Bearer ${jwt}`, `token ${jwt}`],
    [`bearer ${jwt}`, `token ${jwt}`],
    [`BEARER   ${jwt}  `, `token ${jwt}`],
    [`Bearer ${jwt} `, `token ${jwt}`],
    [`Bearer  ${jwt}`, `token ${jwt}`],
    ['Bearer ', 'error 401 INVALID_TOKEN'],
    ['Bearer', 'error 401 INVALID_TOKEN'],
    [`Bearer ${jwt} extra`, 'error 401 INVALID_TOKEN'],
    [`Bearer ${jwt}\t`, 'error 401 INVALID_TOKEN'],
    [`Bearer \u00a0${jwt}`, 'error 401 INVALID_TOKEN'],
    [`Bearer ${jwt}\u00e9`, `token ${jwt}\u00e9`],
    [`Bearerx ${jwt}`, 'error 401 UNAUTHORIZED'],
    [`Basic ${jwt}`, 'error 401 UNAUTHORIZED'],
    [`Token ${jwt}`, 'error 401 UNAUTHORIZED'],
  ]
  for (const [header, expected] of cases) {
    t.equal(outcome(bearerToken(header)), expected, JSON.stringify(header))
    t.equal(outcome(reference(header)), expected, `reference: ${JSON.stringify(header)}`)
  }
})

t.test('the same outcome as the reference on 200,000 generated headers', async (t) => {
  // A seeded generator (xorshift): the same inputs on every run, so a failure is reproducible.
  let seed = 0x2545f491
  const next = () => {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>> 0) / 0x100000000
  }
  const schemes = ['Bearer', 'bearer', 'BEARER', 'BeArEr', 'Bearer\t', 'Basic', 'Bearerx', '', 'Bear']
  const separators = ['', ' ', '  ', '\t', ' \t', '\u00a0', ' \u00a0']
  const alphabet = ['a', 'Z', '0', '.', '-', '_', '~', '+', '/', '=', ' ', '\t', '\u00a0', '\u00e9', '\u007f', '\u0085', '\u0001', '!', '"', ',']
  let mismatches = 0
  let tokens = 0
  for (let i = 0; i < 200_000; i++) {
    const length = Math.floor(next() * 12)
    let body = ''
    for (let j = 0; j < length; j++) body += alphabet[Math.floor(next() * (next() < 0.8 ? 10 : alphabet.length))]
    const trail = next() < 0.3 ? ' '.repeat(1 + Math.floor(next() * 3)) : ''
    const header = schemes[Math.floor(next() * schemes.length)]! + separators[Math.floor(next() * separators.length)]! + body + trail
    const got = outcome(bearerToken(header))
    const want = outcome(reference(header))
    if (got.startsWith('token')) tokens++
    if (got !== want && mismatches++ < 5) t.fail(`${JSON.stringify(header)}: ${got}, reference ${want}`)
  }
  t.equal(mismatches, 0, 'no header answered differently')
  t.ok(tokens > 10_000, `the generator reaches the token path (${tokens} tokens)`)
})
