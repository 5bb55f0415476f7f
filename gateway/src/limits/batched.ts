/**
 * Batched counters for high-rate policies: each replica counts in its own
 * memory and answers at once, and adds its increments to the shared store at
 * most every `syncMs`, in one call per interval for every key touched, reading
 * back the fleet totals, which then drive its own decisions.
 *
 * A key's local count is `fleet + inflight + pending`: the fleet total last read
 * back (this replica's synced increments included), increments on their way
 * to the shared store, and increments not sent yet. Rejected requests count
 * too, as they do in the exact stores.
 *
 * Bound: a replica admits a request only while that sum stays within the
 * limit L. Every admission a replica made before its last read-back that saw
 * the fleet under L is inside a fleet total under L, so across R replicas at
 * most L + R x B requests are admitted per window, B being what one replica
 * admits between two read-backs (its rate x (syncMs + one round trip), never
 * more than L).
 *
 * Windows: a replica opens a key's window at its first hit, as the exact stores
 * do; the shared store starts the window at the first increment it receives
 * and every read-back aligns the replica's window end to the shared one, so
 * all replicas roll over together (within a round trip).
 *
 * When the shared store cannot be reached the counting simply stays local
 * (the whole limit on this replica, its last known fleet count included), and
 * the increments kept meanwhile are added to the fleet total once it is back.
 */
import type { Callback, CounterStore } from './store.js'

export interface SyncItem {
  key: string
  /** Increments since the last sync (negative after refunds). */
  delta: number
  windowMs: number
}

/** The fleet total and the window's remaining ms for each item, in order. */
export type SyncResult = Array<{ count: number; ttl: number }>

export interface BatchedOptions {
  syncMs: number
  /** Adds every item's delta to the shared store in one call and reads back the totals. */
  sync(items: SyncItem[]): Promise<SyncResult>
  /** False while the shared store is known to be away: increments wait, nothing is sent. */
  canSync(): boolean
  onSyncError(err: Error): void
  maxEntries?: number
  now?: () => number
}

export interface BatchedCounters {
  store: CounterStore
  /** Sync now what is waiting (after the shared store came back). */
  kick(): void
  /** Send what is waiting and stop the timer. */
  close(): Promise<void>
}

interface Entry {
  windowEnd: number
  windowMs: number
  fleet: number
  inflight: number
  pending: number
}

const MAX_ENTRIES = 50_000

export function createBatchedCounters(opts: BatchedOptions): BatchedCounters {
  const now = opts.now ?? Date.now
  const maxEntries = opts.maxEntries ?? MAX_ENTRIES
  const entries = new Map<string, Entry>()
  const dirty = new Set<string>()
  let timer: NodeJS.Timeout | null = null
  let syncing: Promise<void> | null = null
  let closed = false

  const schedule = () => {
    if (timer || syncing || closed || dirty.size === 0) return
    timer = setTimeout(flush, opts.syncMs)
    timer.unref()
  }

  function flush(): void {
    timer = null
    if (syncing || !opts.canSync()) return
    const items: SyncItem[] = []
    const sent: Entry[] = []
    for (const key of dirty) {
      const entry = entries.get(key)
      if (!entry || entry.pending === 0) continue
      items.push({ key, delta: entry.pending, windowMs: entry.windowMs })
      sent.push(entry)
      entry.inflight += entry.pending
      entry.pending = 0
    }
    dirty.clear()
    if (items.length === 0) return
    syncing = opts.sync(items).then(
      (result) => {
        const at = now()
        items.forEach((item, i) => {
          const entry = sent[i]!
          entry.inflight -= item.delta
          // A window that rolled over locally meanwhile is a new entry: the old window's total is not its.
          if (entries.get(item.key) !== entry) return
          const fleet = result[i]!
          entry.fleet = fleet.count
          if (fleet.ttl > 0) entry.windowEnd = at + fleet.ttl
        })
      },
      (err: Error) => {
        // Not counted in the fleet: sent again with the next sync.
        items.forEach((item, i) => {
          const entry = sent[i]!
          entry.inflight -= item.delta
          entry.pending += item.delta
          if (entries.get(item.key) === entry) dirty.add(item.key)
        })
        opts.onSyncError(err)
      },
    )
    syncing.finally(() => {
      syncing = null
      schedule()
    })
  }

  const current = (key: string, at: number): Entry | undefined => {
    const entry = entries.get(key)
    return entry && entry.windowEnd > at ? entry : undefined
  }

  const open = (key: string, at: number, windowMs: number): Entry => {
    const entry: Entry = { windowEnd: at + windowMs, windowMs, fleet: 0, inflight: 0, pending: 0 }
    if (entries.size >= maxEntries && !entries.has(key)) evict(at)
    entries.set(key, entry)
    return entry
  }

  // Expired windows first; past that the oldest keys go (as the in-memory store's LRU drops them).
  const evict = (at: number) => {
    for (const [key, entry] of entries) if (entry.windowEnd <= at && entry.pending === 0) entries.delete(key)
    const target = Math.floor(maxEntries * 0.9)
    for (const key of entries.keys()) {
      if (entries.size <= target) break
      entries.delete(key)
      dirty.delete(key)
    }
  }

  const store: CounterStore = {
    incr(key: string, cb: Callback, windowMs: number) {
      const at = now()
      const entry = current(key, at) ?? open(key, at, windowMs)
      entry.pending += 1
      dirty.add(key)
      schedule()
      cb(null, { current: entry.fleet + entry.inflight + entry.pending, ttl: entry.windowEnd - at })
    },
    read(key: string, cb: Callback, windowMs: number) {
      const at = now()
      const entry = current(key, at)
      cb(null, entry ? { current: entry.fleet + entry.inflight + entry.pending, ttl: entry.windowEnd - at } : { current: 0, ttl: windowMs })
    },
    refund(key: string, cb: (err: Error | null) => void) {
      const entry = current(key, now())
      if (entry && entry.fleet + entry.inflight + entry.pending > 0) {
        entry.pending -= 1
        dirty.add(key)
        schedule()
      }
      cb(null)
    },
  }

  return {
    store,
    kick() {
      if (timer) clearTimeout(timer)
      timer = null
      flush()
    },
    async close() {
      if (timer) clearTimeout(timer)
      timer = null
      if (syncing) await syncing
      flush()
      closed = true
      if (syncing) await syncing
    },
  }
}
