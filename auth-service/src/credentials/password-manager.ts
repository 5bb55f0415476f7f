/**
 * bcrypt behind three calls. Async only: hashing runs on libuv's threadpool,
 * never on the event loop. Every hash and comparison passes one bulkhead
 * (BCRYPT_MAX_CONCURRENCY running, BCRYPT_MAX_QUEUE waiting); beyond it the
 * answer is an immediate 503 with Retry-After.
 */
import { randomBytes } from 'node:crypto'
import bcrypt from 'bcrypt'
import { createConcurrencyLimiter, type LimiterStats } from './concurrency-limiter.js'

/** bcrypt reads at most 72 bytes; anything longer would be silently cut. */
export const PASSWORD_MAX_BYTES = 72

/**
 * Why a password cannot be stored as-is, or null when it can.
 *
 * NUL is refused. node bcrypt does read past a NUL, but bcrypt's key schedule
 * repeats "password + NUL" cyclically over 72 bytes, so with a NUL inside,
 * different passwords collide: a hash of "abcdefgh" also verifies
 * "abcdefgh\0abcdefgh", and 8 NULs match 9. Rejecting NUL keeps verification
 * byte-exact.
 */
export function passwordProblem(password: string): string | null {
  if (Buffer.byteLength(password, 'utf8') > PASSWORD_MAX_BYTES) {
    return `body/password must be at most ${PASSWORD_MAX_BYTES} bytes (UTF-8)`
  }
  if (password.includes('\u0000')) return 'body/password must not contain NUL characters'
  return null
}

export interface PasswordManager {
  hash(password: string): Promise<string>
  /**
   * Sign-in: looks the account up and compares the password, both inside one
   * bcrypt slot, so a refused attempt (503) costs no database work. `lookup`
   * resolving null means "no such user": the same work is done, and the answer
   * is null. Resolves with the account when the password matches.
   */
  authenticate<U extends { password_hash: string }>(password: string, lookup: () => Promise<U | null>): Promise<U | null>
  /** True when the hash was made with a lower cost than configured. */
  needsRehash(hash: string): boolean
  stats(): LimiterStats
}

export interface PasswordManagerOptions {
  cost: number
  /** bcrypt operations running at once (about libuv's thread pool size). */
  maxConcurrency: number
  /** Operations allowed to wait for a slot; more are refused with 503. */
  maxQueue: number
}

export async function createPasswordManager(opts: PasswordManagerOptions): Promise<PasswordManager> {
  const { cost } = opts
  // Made once at startup with the configured cost, so an unknown email costs
  // what a wrong password costs.
  const dummyHash = await bcrypt.hash(randomBytes(18).toString('base64url'), cost)
  const limiter = createConcurrencyLimiter({ maxConcurrent: opts.maxConcurrency, maxQueue: opts.maxQueue })
  // Never called with a slot already held (a slot waiting for a slot could deadlock).
  const compare = async (password: string, hash: string | null): Promise<boolean> => {
    if (hash === null || passwordProblem(password) !== null) {
      // No stored password can equal it (unknown user, or one we would never
      // store, which bcrypt would truncate or alias): spend the time anyway.
      await bcrypt.compare(password, dummyHash)
      return false
    }
    return bcrypt.compare(password, hash)
  }
  return {
    hash: (password) => limiter.run(() => bcrypt.hash(password, cost)),
    authenticate: (password, lookup) =>
      limiter.run(async () => {
        const user = await lookup()
        const ok = await compare(password, user?.password_hash ?? null)
        return user && ok ? user : null
      }),
    needsRehash(hash) {
      try {
        return bcrypt.getRounds(hash) < cost
      } catch {
        return false
      }
    },
    stats: () => limiter.stats(),
  }
}
