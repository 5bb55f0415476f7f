/**
 * Replicas starting at once, each migrating the same database: in-process
 * calls and separate migrate-CLI processes, all released together.
 */
import pg from 'pg'
import { runNodeScript } from './processes.js'
import { waitUntil } from './timing.js'

export interface MigrationReplica {
  /** For messages, e.g. "task-service cli #2". */
  name: string
  /** Resolves with the migrations this replica applied. */
  run(databaseUrl: string): Promise<string[]>
}

/**
 * A migrate CLI as a replica: `node <entry>` with DATABASE_URL set. It prints
 * `<service>: applied a, b` when it applied something; any other successful
 * output means nothing was applied; a non-zero exit rejects.
 */
export function cliReplica(name: string, entry: string, env: Record<string, string> = {}): MigrationReplica {
  return {
    name,
    async run(databaseUrl) {
      const r = await runNodeScript(entry, { ...env, DATABASE_URL: databaseUrl })
      if (r.code !== 0) throw new Error(`${name} exited ${r.code}: ${r.stderr.trim()}`)
      const m = /: applied (.+)$/m.exec(r.stdout)
      return m ? m[1]!.split(', ').map((s) => s.trim()) : []
    },
  }
}

/**
 * All replicas at once; resolves with what each applied, by name.
 *
 * Processes boot at different speeds, so "at once" is made exact: the test
 * holds each advisory lock the replicas use, waits until every replica is
 * blocked on one, then lets go; they all contend in the same instant.
 */
export async function raceMigrations(
  databaseUrl: string,
  replicas: MigrationReplica[],
  lockValues: number[],
): Promise<Record<string, string[]>> {
  const holder = new pg.Client({ connectionString: databaseUrl })
  holder.on('error', () => {})
  await holder.connect()
  try {
    for (const v of lockValues) await holder.query('SELECT pg_advisory_lock($1)', [v])
    const running = replicas.map((r) => r.run(databaseUrl))
    for (const p of running) p.catch(() => {}) // awaited below; never an unhandled rejection meanwhile
    // Surface a replica failing early instead of waiting for it to block. The deadline is a liveness bound:
    // migrate-CLI processes booting on a loaded 2-core machine take tens of seconds.
    const failed = Promise.race(running.map((p) => p.then(() => new Promise<never>(() => {}))))
    const waiting = async () => {
      const { rows } = await holder.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_locks
          WHERE locktype = 'advisory' AND NOT granted AND objid = ANY($1::int[]) AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
        [lockValues],
      )
      return rows[0]!.n === replicas.length
    }
    await Promise.race([waitUntil(waiting, { timeoutMs: 90_000, intervalMs: 20, what: `${replicas.length} replicas waiting on the lock` }), failed])
    for (const v of lockValues) await holder.query('SELECT pg_advisory_unlock($1)', [v])
    const results = await Promise.all(running)
    return Object.fromEntries(replicas.map((r, i) => [r.name, results[i]!]))
  } finally {
    await holder.end().catch(() => {})
  }
}
