/** Reads the auth-service's revocation feed over the gateway's pooled connection, as the gateway itself. */
import { randomUUID } from 'node:crypto'
import type { Dispatcher } from 'undici'
import { Compile } from '@tollgate/common/typebox'
import { REQUEST_ID_HEADER, signIdentity } from '@tollgate/common'
import { RevocationFeed, type RevocationPage } from '@tollgate/common/contracts'

/** The auth-service answers with this schema; a page that does not match it is refused, not half-applied. */
const validPage = Compile(RevocationFeed.page)

export function revocationFeed(pool: Dispatcher, proofKey: Buffer, timeoutMs: number) {
  return async function fetchPage(after: number): Promise<RevocationPage> {
    const path = RevocationFeed.path
    const requestId = randomUUID()
    const res = await pool.request({
      method: RevocationFeed.method,
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
    const page: unknown = await res.body.json()
    if (!validPage.Check(page)) throw new Error('malformed revocation feed')
    return page
  }
}
