/**
 * The most commonly used passwords (ASVS 2.1.7), refused at sign-up only:
 * accounts made before the list existed still sign in.
 *
 * The list is zxcvbn-ts's `passwords-common` dictionary (MIT, about 49,000
 * entries from public breach corpora, ranked by frequency, lower-case), held
 * in memory: no network call. Only entries a sign-up could use at all (8 to 72
 * bytes) are kept.
 */
import { dictionary } from '@zxcvbn-ts/language-common'
import { PASSWORD_MAX_BYTES } from './password-manager.js'

const PASSWORD_MIN_CHARS = 8

const common: ReadonlySet<string> = new Set(
  (dictionary['passwords-common'] as string[]).filter(
    (p) => p.length >= PASSWORD_MIN_CHARS && Buffer.byteLength(p, 'utf8') <= PASSWORD_MAX_BYTES,
  ),
)

/** How many entries the check uses (17,950 of 8 to 72 bytes with 4.1.3). */
export const commonPasswordCount = common.size

/** True for a password on the list, whatever its letter case ("Password" is as guessable as "password"). */
export function isCommonPassword(password: string): boolean {
  return common.has(password.toLowerCase())
}
