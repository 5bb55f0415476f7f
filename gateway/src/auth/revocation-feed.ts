/** Reads the auth-service's revocation feed over the gateway's pooled connection, as the gateway itself. */
import { randomUUID } from 'node:crypto'
import type { Dispatcher } from 'undici'
import { REQUEST_ID_HEADER, signIdentity } from '@tollgate/common'
import type { RevocationPage } from './revocation-list.js'

export function revocationFeed(pool: Dispatcher, proofKey: Buffer, timeoutMs: number) {
  return async function fetchPage(after: number): Promise<RevocationPage> {
    const path = '/internal/revocations'
    const requestId = randomUUID()
    const res = await pool.request({
      method: 'GET',
      path: `${path}?after=${after}`,
      headers: {
        ...signIdentity(proofKey, { caller: 'service:gateway', userId: '' }, 'GET', path, requestId),
        [REQUEST_ID_HEADER]: requestId,
      },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    })
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw new Error(`revocation feed answered ${res.statusCode}`)
    }
    const page = (await res.body.json()) as RevocationPage
    if (typeof page?.cursor !== 'number' || !Array.isArray(page.revoked)) throw new Error('malformed revocation feed')
    return page
  }
}
