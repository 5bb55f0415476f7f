/**
 * bcrypt behind three calls. Async only: hashing runs on libuv's threadpool,
 * never on the event loop.
 */
import { randomBytes } from 'node:crypto'
import bcrypt from 'bcrypt'

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
  /** `hash` null means "no such user": the same work is done, and the answer is false. */
  verify(password: string, hash: string | null): Promise<boolean>
  /** True when the hash was made with a lower cost than configured. */
  needsRehash(hash: string): boolean
}

export async function createPasswordManager(cost: number): Promise<PasswordManager> {
  // Made once at startup with the configured cost, so an unknown email costs
  // what a wrong password costs.
  const dummyHash = await bcrypt.hash(randomBytes(18).toString('base64url'), cost)
  return {
    hash: (password) => bcrypt.hash(password, cost),
    async verify(password, hash) {
      if (hash === null || passwordProblem(password) !== null) {
        // No stored password can equal it (unknown user, or one we would never
        // store, which bcrypt would truncate or alias): spend the time anyway.
        await bcrypt.compare(password, dummyHash)
        return false
      }
      return bcrypt.compare(password, hash)
    },
    needsRehash(hash) {
      try {
        return bcrypt.getRounds(hash) < cost
      } catch {
        return false
      }
    },
  }
}
