/**
 * Ed25519 signing keys for JWT_ALG=EdDSA, kept in the `signing_keys` table so
 * every replica signs with the same keys and they survive restarts.
 *
 * - Private keys are stored encrypted: AES-256-GCM under a key derived by HKDF
 *   from SIGNING_KEY_SECRET (or BETTER_AUTH_SECRET), with the kid as
 *   additional data, so a ciphertext only decrypts in its own row.
 * - A key is published (JWKS) from the moment it is inserted, signs from
 *   `activates_at` (set ahead, so every verifier can know it first) until
 *   `retired_at`, and stays published until the tokens it signed have expired.
 * - Creating the first key and rotating take an advisory lock inside one
 *   short transaction: replicas starting at once create one key, not several.
 *   (On the embedded PGlite every connection shares one session and a
 *   transaction holds the whole database, so nothing slow happens inside it:
 *   keys are generated before BEGIN.)
 * - Each process keeps the keys in memory and reloads them every
 *   JWT_KEY_REFRESH_S, which is how a rotation made by another replica or by
 *   the CLI reaches it.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose'
import type pg from 'pg'
import type { FastifyBaseLogger } from 'fastify'
import { ConfigError, errors } from '@tollgate/common'
import { isDatabaseUnavailable } from '@tollgate/common/db'

type CryptoKey = import('node:crypto').webcrypto.CryptoKey

export const SIGNING_ALG = 'EdDSA'
/** Advisory lock of key creation and rotation (7301 is the auth-service's migrations, 7302 the task-service's). */
export const SIGNING_KEYS_LOCK = 7303
/**
 * Tokens are accepted up to the verifiers' clock tolerance past `exp`
 * (JWT_CLOCK_TOLERANCE_S, 30 s by default): a retired key stays published
 * this much longer than TOKEN_TTL_S, so such a token still finds its key.
 */
export const RETENTION_GRACE_S = 60

export interface PublicJwk {
  kty: 'OKP'
  crv: 'Ed25519'
  x: string
  kid: string
  alg: 'EdDSA'
  use: 'sig'
}

// ---------------------------------------------------------------------------
// Encryption at rest

export function signingKeyEncryptionKey(betterAuthSecret: string, explicit?: string): Buffer {
  return Buffer.from(hkdfSync('sha256', explicit ?? betterAuthSecret, 'tollgate', 'signing-key-encryption-v1', 32))
}

const ENC_VERSION = 'v1'

/** `v1.<iv>.<ciphertext>.<tag>`, base64url; the kid is authenticated with it. */
export function encryptPrivateJwk(key: Buffer, kid: string, jwk: JWK): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(Buffer.from(kid, 'utf8'))
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(jwk), 'utf8'), cipher.final()])
  const tag = cipher.getAuthTag()
  return [ENC_VERSION, iv.toString('base64url'), ciphertext.toString('base64url'), tag.toString('base64url')].join('.')
}

/** Throws when the key is wrong, the text was altered or it belongs to another kid. */
export function decryptPrivateJwk(key: Buffer, kid: string, text: string): JWK {
  const [version, iv, ciphertext, tag] = text.split('.')
  if (version !== ENC_VERSION || !iv || !ciphertext || !tag) throw new Error('unknown private key format')
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'))
  decipher.setAAD(Buffer.from(kid, 'utf8'))
  decipher.setAuthTag(Buffer.from(tag, 'base64url'))
  const plain = Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()])
  return JSON.parse(plain.toString('utf8')) as JWK
}

// ---------------------------------------------------------------------------
// The table

export interface SigningKeyRow {
  kid: string
  alg: string
  public_jwk: PublicJwk
  private_jwk_enc: string
  created_at: Date
  activates_at: Date
  retired_at: Date | null
}

interface NewKey {
  kid: string
  publicJwk: PublicJwk
  privateEnc: string
}

async function generateSigningKey(encryptionKey: Buffer): Promise<NewKey> {
  const { publicKey, privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true })
  const pub = await exportJWK(publicKey)
  // RFC 7638 thumbprint: unique per key and says nothing else.
  const kid = await calculateJwkThumbprint(pub)
  const publicJwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: pub.x!, kid, alg: 'EdDSA', use: 'sig' }
  const privateEnc = encryptPrivateJwk(encryptionKey, kid, await exportJWK(privateKey))
  return { kid, publicJwk, privateEnc }
}

/** One short transaction holding the signing-keys advisory lock. */
async function underLock<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [SIGNING_KEYS_LOCK])
      const result = await fn(client)
      await client.query('COMMIT')
      return result
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw err
    }
  } finally {
    client.release()
  }
}

/**
 * Creates a key that signs at once when no key can sign now; resolves with
 * its kid, or null when one could already. Safe with replicas starting
 * together: the check and the insert happen under the advisory lock.
 */
export async function ensureSigningKey(pool: pg.Pool, encryptionKey: Buffer): Promise<string | null> {
  const candidate = await generateSigningKey(encryptionKey) // before the lock: keep the transaction short
  return underLock(pool, async (client) => {
    // The time of the statement, not now() (the transaction's start): this transaction may have begun before a
    // replica that held the lock inserted its key (activating at its own time) and committed.
    const { rowCount } = await client.query(
      `SELECT 1 FROM signing_keys
        WHERE alg = $1 AND activates_at <= statement_timestamp() AND (retired_at IS NULL OR retired_at > statement_timestamp())
        LIMIT 1`,
      [SIGNING_ALG],
    )
    if (rowCount) return null
    // A rotation made before any key existed left a key waiting: this one hands over to it.
    await client.query(
      `INSERT INTO signing_keys (kid, alg, public_jwk, private_jwk_enc, activates_at, retired_at)
       VALUES ($1, $2, $3, $4, statement_timestamp(),
               (SELECT min(activates_at) FROM signing_keys WHERE alg = $2 AND activates_at > statement_timestamp() AND retired_at IS NULL))`,
      [candidate.kid, SIGNING_ALG, JSON.stringify(candidate.publicJwk), candidate.privateEnc],
    )
    return candidate.kid
  })
}

export interface Rotation {
  kid: string
  activatesAt: Date
  /** Keys that stop signing when the new one starts. */
  retired: string[]
}

/**
 * Adds a key that signs from now + publishAheadS (published at once) and
 * retires, at that moment, every key that would otherwise still sign then.
 * With `ifOlderThanDays`, only when the newest unretired key is at least that
 * old (automatic rotation: replicas racing rotate once); resolves null then.
 */
export async function rotateSigningKey(
  pool: pg.Pool,
  encryptionKey: Buffer,
  publishAheadS: number,
  opts: { ifOlderThanDays?: number } = {},
): Promise<Rotation | null> {
  const candidate = await generateSigningKey(encryptionKey)
  return underLock(pool, async (client) => {
    if (opts.ifOlderThanDays) {
      const { rows } = await client.query<{ due: boolean | null }>(
        `SELECT max(created_at) <= now() - make_interval(days => $2) AS due
           FROM signing_keys WHERE alg = $1 AND retired_at IS NULL`,
        [SIGNING_ALG, opts.ifOlderThanDays],
      )
      if (!rows[0]?.due) return null
    }
    const inserted = await client.query<{ activates_at: Date }>(
      `INSERT INTO signing_keys (kid, alg, public_jwk, private_jwk_enc, activates_at)
       VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
       RETURNING activates_at`,
      [candidate.kid, SIGNING_ALG, JSON.stringify(candidate.publicJwk), candidate.privateEnc, publishAheadS],
    )
    const activatesAt = inserted.rows[0]!.activates_at
    const retired = await client.query<{ kid: string }>(
      `UPDATE signing_keys SET retired_at = $2
        WHERE kid <> $1 AND (retired_at IS NULL OR retired_at > $2)
        RETURNING kid`,
      [candidate.kid, activatesAt],
    )
    return { kid: candidate.kid, activatesAt, retired: retired.rows.map((r) => r.kid) }
  })
}

/** Every key still published (retired less than retentionS ago), and the database's clock. */
export async function loadSigningKeys(pool: pg.Pool, retentionS: number): Promise<{ rows: SigningKeyRow[]; dbNow: Date }> {
  const { rows } = await pool.query<SigningKeyRow & { db_now: Date }>(
    `SELECT kid, alg, public_jwk, private_jwk_enc, created_at, activates_at, retired_at, now() AS db_now
       FROM signing_keys
      WHERE alg = $1 AND (retired_at IS NULL OR retired_at > now() - make_interval(secs => $2))
      ORDER BY activates_at DESC, created_at DESC`,
    [SIGNING_ALG, retentionS],
  )
  if (rows.length === 0) {
    const { rows: clock } = await pool.query<{ now: Date }>('SELECT now()')
    return { rows: [], dbNow: clock[0]!.now }
  }
  return { rows, dbNow: rows[0]!.db_now }
}

// ---------------------------------------------------------------------------
// The in-memory view each process signs and verifies with

export interface SigningKeyStoreOptions {
  pool: pg.Pool
  encryptionKey: Buffer
  /** TOKEN_TTL_S: how long a retired key must keep verifying (a grace is added). */
  tokenTtlS: number
  refreshMs: number
  publishAheadS: number
  /** 0: no automatic rotation. */
  rotationDays: number
  log: FastifyBaseLogger
}

export interface SigningKeyStore {
  /** Creates the first key if needed and loads the keys; a key that cannot be decrypted is a ConfigError. */
  start(): Promise<void>
  stop(): void
  /** Reloads from the database now (coalesced). */
  refresh(): Promise<void>
  /** The key to sign with now; a 503 HttpError when there is none. */
  signingKey(): Promise<{ kid: string; key: CryptoKey }>
  /** A published key by kid, for verification; throws when unknown. */
  verificationKey(kid: unknown): Promise<CryptoKey>
  /** The published public keys; null until loaded once. */
  jwks(): { keys: PublicJwk[] } | null
  readonly loaded: boolean
}

/** An unknown kid reloads the keys at most this often. */
const UNKNOWN_KID_COOLDOWN_MS = 5000

export function createSigningKeyStore(opts: SigningKeyStoreOptions): SigningKeyStore {
  const retentionS = opts.tokenTtlS + RETENTION_GRACE_S
  let rows: SigningKeyRow[] | null = null
  /** Database clock minus ours, so all replicas agree on when a key activates. */
  let offsetMs = 0
  let lastLoadAt = 0
  let pending: Promise<void> | undefined
  let timer: NodeJS.Timeout | undefined
  const publicKeys = new Map<string, Promise<CryptoKey>>()
  const privateKeys = new Map<string, Promise<CryptoKey>>()

  const now = () => Date.now() + offsetMs

  function current(at = now()): SigningKeyRow | undefined {
    // rows are newest activation first
    return rows?.find((r) => r.activates_at.getTime() <= at && (r.retired_at === null || r.retired_at.getTime() > at))
  }

  function privateKey(row: SigningKeyRow): Promise<CryptoKey> {
    let key = privateKeys.get(row.kid)
    if (!key) {
      key = (async () => importJWK(decryptPrivateJwk(opts.encryptionKey, row.kid, row.private_jwk_enc), SIGNING_ALG) as Promise<CryptoKey>)()
      privateKeys.set(row.kid, key)
      key.catch(() => privateKeys.delete(row.kid)) // retried at the next use
    }
    return key
  }

  async function load(): Promise<void> {
    const started = Date.now()
    const loaded = await loadSigningKeys(opts.pool, retentionS)
    offsetMs = loaded.dbNow.getTime() - Math.round((started + Date.now()) / 2)
    rows = loaded.rows
    lastLoadAt = Date.now()
    // Forget keys no longer published.
    const kids = new Set(rows.map((r) => r.kid))
    for (const kid of [...publicKeys.keys()]) if (!kids.has(kid)) publicKeys.delete(kid)
    for (const kid of [...privateKeys.keys()]) if (!kids.has(kid)) privateKeys.delete(kid)
  }

  function refresh(): Promise<void> {
    pending ??= load().finally(() => {
      pending = undefined
    })
    return pending
  }

  /** Timer work: rotate when due, create a key when none can sign, reload. */
  async function tick(): Promise<void> {
    if (opts.rotationDays > 0 && rows) {
      const newest = rows.filter((r) => r.retired_at === null).reduce((a, r) => Math.max(a, r.created_at.getTime()), 0)
      if (newest && now() - newest >= opts.rotationDays * 86_400_000) {
        const rotation = await rotateSigningKey(opts.pool, opts.encryptionKey, opts.publishAheadS, { ifOlderThanDays: opts.rotationDays })
        if (rotation) {
          opts.log.info({ kid: rotation.kid, activatesAt: rotation.activatesAt.toISOString(), retired: rotation.retired }, 'signing key rotated (JWT_KEY_ROTATION_DAYS)')
        }
      }
    }
    if (!rows || !current()) {
      const kid = await ensureSigningKey(opts.pool, opts.encryptionKey)
      if (kid) opts.log.warn({ kid }, 'no signing key could sign: created one')
    }
    await refresh()
    const signing = current()
    if (signing) await privateKey(signing).catch((err) => opts.log.error({ kid: signing.kid, err: { message: (err as Error).message } }, 'the signing key cannot be decrypted (SIGNING_KEY_SECRET changed?)'))
  }

  function schedule(): void {
    timer = setInterval(() => {
      tick().catch((err) => opts.log.warn({ err: { message: (err as Error).message } }, 'signing keys refresh failed; keeping the keys loaded'))
    }, opts.refreshMs)
    timer.unref()
  }

  return {
    async start() {
      try {
        const kid = await ensureSigningKey(opts.pool, opts.encryptionKey)
        if (kid) opts.log.info({ kid }, 'created the first signing key')
        await refresh()
      } catch (err) {
        // A database that is down now may be back soon: serve 503s meanwhile and keep trying.
        if (!isDatabaseUnavailable(err)) throw err
        opts.log.warn({ err: { message: (err as Error).message } }, 'signing keys not loaded yet (database unavailable); retrying')
        schedule()
        return
      }
      const signing = current()
      if (signing) {
        try {
          await privateKey(signing)
        } catch {
          throw new ConfigError(
            'SIGNING_KEY_SECRET (or BETTER_AUTH_SECRET when it is unset) does not decrypt the signing keys in the database; restore the secret they were created with',
          )
        }
      }
      schedule()
    },

    stop() {
      if (timer) clearInterval(timer)
      timer = undefined
    },

    refresh,

    async signingKey() {
      if (!rows) await refresh().catch(() => {})
      const row = current()
      if (!row) throw errors.unavailable('Signing key unavailable')
      try {
        return { kid: row.kid, key: await privateKey(row) }
      } catch (err) {
        opts.log.error({ kid: row.kid, err: { message: (err as Error).message } }, 'the signing key cannot be decrypted')
        throw errors.unavailable('Signing key unavailable')
      }
    },

    async verificationKey(kid) {
      if (typeof kid !== 'string') throw new Error('no kid')
      let row = rows?.find((r) => r.kid === kid)
      if (!row && Date.now() - lastLoadAt >= UNKNOWN_KID_COOLDOWN_MS) {
        // Perhaps created since the last reload (by another replica or the CLI).
        await refresh().catch(() => {})
        row = rows?.find((r) => r.kid === kid)
      }
      if (!row) throw new Error('unknown kid')
      let key = publicKeys.get(kid)
      if (!key) {
        const { kty, crv, x } = row.public_jwk
        key = importJWK({ kty, crv, x }, SIGNING_ALG) as Promise<CryptoKey>
        publicKeys.set(kid, key)
      }
      return key
    },

    jwks() {
      if (!rows) return null
      const at = now()
      const keys = rows
        .filter((r) => r.retired_at === null || r.retired_at.getTime() > at - retentionS * 1000)
        // Only the public members, whatever the column holds.
        .map((r): PublicJwk => ({ kty: 'OKP', crv: 'Ed25519', x: r.public_jwk.x, kid: r.kid, alg: 'EdDSA', use: 'sig' }))
      return { keys }
    },

    get loaded() {
      return rows !== null
    },
  }
}
