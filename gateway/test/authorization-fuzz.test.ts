/**
 * 10,000 Authorization headers (a kept corpus, random junk, and mutations of a
 * valid token) never get a 2xx or a 5xx: forged or broken credentials are
 * refused, and nothing they contain can crash the verifier.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { buildGateway, startUpstream, subOf, token } from './helper.js'

const CASES = 10_000

/** Deterministic PRNG (mulberry32), so a failure reproduces from its seed. */
function rng(seed: number) {
  return () => {
    seed |= 0
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

t.test(`${CASES} hostile Authorization headers: never 2xx, never 5xx`, async (t) => {
  const tasks = await startUpstream(t)
  const gw = await buildGateway(t, { TASK_SERVICE_URL: tasks.url, RATE_LIMIT_IP_MAX: 1_000_000 })
  const valid = await token()
  const sub = subOf(valid)
  const [h, p, s] = valid.split('.') as [string, string, string]
  const random = rng(Number(process.env.FUZZ_SEED ?? 20261124))
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!
  const printable = () => String.fromCharCode(0x20 + Math.floor(random() * 95))
  const latin1 = () => String.fromCharCode(0x80 + Math.floor(random() * 128))
  const b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const junk = (n: number, alphabet: () => string) => Array.from({ length: n }, alphabet).join('')
  const b64junk = (n: number) => junk(n, () => pick([...b64]))
  /** Flip one bit of one decoded byte of a part: the bytes really change. */
  const flip = (part: string) => {
    const bytes = Buffer.from(part, 'base64url')
    if (bytes.length === 0) return part + 'A'
    const i = Math.floor(random() * bytes.length)
    bytes[i] = bytes[i]! ^ (1 << Math.floor(random() * 8))
    return bytes.toString('base64url')
  }
  const generators: Array<() => string> = [
    () => `Bearer ${b64junk(1 + Math.floor(random() * 300))}`,
    () => `Bearer ${b64junk(20)}.${b64junk(40)}.${b64junk(43)}`,
    () => `Bearer ${b64junk(20)}.${b64junk(40)}.${b64junk(43)}.${b64junk(10)}.${b64junk(10)}`,
    () => `Bearer ${flip(h)}.${p}.${s}`,
    () => `Bearer ${h}.${flip(p)}.${s}`,
    () => `Bearer ${h}.${p}.${flip(s)}`,
    () => `Bearer ${h}.${p}.${s.slice(0, Math.floor(random() * s.length))}`,
    () => `Bearer ${h}.${p}`,
    () => `Bearer ${h}..${s}`,
    () => `Bearer ${p}.${h}.${s}`,
    () => `Bearer ${valid}${pick(['.', '..', '=', '==', '.x', ' x'])}`,
    () => `${pick(['Basic', 'Digest', 'Token', 'JWT', 'Bearer:', 'Bearer\t'])} ${valid}`,
    () => `Bearer ${junk(1 + Math.floor(random() * 100), printable)}`,
    () => `Bearer ${junk(1 + Math.floor(random() * 50), latin1)}`,
    () => junk(1 + Math.floor(random() * 200), printable),
    () => `Bearer ${Buffer.from(JSON.stringify({ alg: pick(['none', 'HS256', 'RS256', 'EdDSA', 'PBES2-HS256+A128KW']), typ: 'JWT', kid: junk(5, printable) })).toString('base64url')}.${p}.${pick(['', s, b64junk(43)])}`,
    () => `Bearer ${'a'.repeat(Math.floor(random() * 20_000))}`,
  ]
  const corpus = readFileSync(new URL('./fixtures/authorization-corpus.txt', import.meta.url), 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.replace('\\u0000', '\u0000'))

  const bad: string[] = []
  const statuses = new Map<number, number>()
  for (let i = 0; i < CASES; i++) {
    const value = i < corpus.length ? corpus[i]! : pick(generators)()
    let status: number
    try {
      status = (await gw.inject({ url: `/api/${sub}/tasks`, headers: { authorization: value } })).statusCode
    } catch {
      continue // a value the HTTP layer itself cannot carry (Node refuses it before us)
    }
    statuses.set(status, (statuses.get(status) ?? 0) + 1)
    if (status < 400 || status >= 500) bad.push(`${status} ${JSON.stringify(value).slice(0, 200)}`)
  }
  t.same(bad, [], 'no hostile header was accepted or crashed anything')
  t.ok([...statuses.keys()].every((s) => [400, 401, 431].includes(s)), `statuses seen: ${JSON.stringify(Object.fromEntries(statuses))}`)
  t.equal(tasks.seen.length, 0, 'nothing reached the service')
  t.equal((await gw.inject({ url: `/api/${sub}/tasks`, headers: { authorization: `Bearer ${valid}` } })).statusCode, 200, 'positive control')
})
