/**
 * `npm run rotate-keys -w auth-service`: add a new signing key (JWT_ALG=EdDSA).
 * It is published in the JWKS at once and signs from JWT_KEY_PUBLISH_AHEAD_S
 * later; the key signing now retires at that moment and stays published until
 * its tokens have expired. Running replicas pick the change up at their next
 * reload (JWT_KEY_REFRESH_S). A failure exits 1 with one line on stderr.
 */
import pg from 'pg'
import { configOrExit, describeError } from '@tollgate/common'
import { configSchema } from './config.js'
import { rotateSigningKey, signingKeyEncryptionKey } from './credentials/signing-keys.js'

const config = configOrExit(configSchema, 'auth-service')
const fail = (line: string) => {
  process.stderr.write(`auth-service: rotate-keys failed: ${line}\n`)
  process.exitCode = 1
}

if (config.JWT_ALG !== 'EdDSA') {
  fail('JWT_ALG is HS256; signing keys are used only with JWT_ALG=EdDSA')
} else {
  const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 1, connectionTimeoutMillis: config.DB_CONNECT_TIMEOUT_MS })
  pool.on('error', () => {}) // reported by the query that sees it
  try {
    const r = await rotateSigningKey(
      pool,
      signingKeyEncryptionKey(config.BETTER_AUTH_SECRET, config.SIGNING_KEY_SECRET),
      config.JWT_KEY_PUBLISH_AHEAD_S,
    )
    const retired = r!.retired.length ? `; ${r!.retired.join(', ')} stop signing then` : ''
    process.stdout.write(`auth-service: signing key ${r!.kid} published, signs from ${r!.activatesAt.toISOString()}${retired}\n`)
  } catch (err) {
    fail(describeError(err))
  } finally {
    await pool.end().catch(() => {})
  }
}
