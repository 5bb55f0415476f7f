/** Short-lived access to the bench database (pg from the root node_modules): verify writes, remove bench rows. */
import pg from 'pg'
import { DATABASE_URL } from './stack.mjs'

export async function withDb(fn) {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 5000, statement_timeout: 30_000 })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}
