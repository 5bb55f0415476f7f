/** What a process costs, read from /proc: resident memory, open fds, CPU time; and per-CPU busy time. */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

const TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100

/** VmRSS in MB (from /proc/<pid>/status), or null when the process is gone. */
export function rssMB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : null
  } catch {
    return null
  }
}

export function fdCount(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return null
  }
}

/** User + system CPU seconds used so far by the whole process (every thread, exited ones included). */
export function cpuSeconds(pid) {
  return statCpuSeconds(`/proc/${pid}/stat`)
}

/**
 * User + system CPU seconds of the process's main thread alone (the JavaScript thread, the one a
 * V8 CPU profile sees); the whole process minus this is GC helpers, the libuv pool and other threads.
 */
export function mainThreadCpuSeconds(pid) {
  return statCpuSeconds(`/proc/${pid}/task/${pid}/stat`)
}

function statCpuSeconds(file) {
  const f = statFields(file)
  return f === null ? null : (Number(f[11]) + Number(f[12])) / TICKS_PER_S
}

/** The fields of a /proc stat file after the ")" of the command name (utime and stime are the 12th and 13th), or null when gone. */
function statFields(file) {
  try {
    return fieldsOf(readFileSync(file, 'utf8'))
  } catch {
    return null
  }
}

const fieldsOf = (stat) => stat.slice(stat.lastIndexOf(')') + 2).split(' ')

/**
 * Where a process's CPU time went, so far: user and system seconds and minor page faults of the whole process
 * (/proc/<pid>/stat), its threads' voluntary and involuntary context switches (/proc/<pid>/task/<tid>/status), and
 * CPU seconds by thread name (`threads`, the main thread as `main`; a thread that ended is not counted there).
 */
export function processCounters(pid) {
  const f = statFields(`/proc/${pid}/stat`)
  if (f === null) return null
  let switches = 0
  const threads = {}
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8')
      for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)) switches += Number(m[1])
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      // Grouped by name, the main thread apart (it is named as the process): V8's helpers, libuv's pool, workers.
      const name = tid === String(pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const t = fieldsOf(stat)
      threads[name] = (threads[name] ?? 0) + (Number(t[11]) + Number(t[12])) / TICKS_PER_S
    } catch {
      // a thread that ended between the listing and the read
    }
  }
  return { user: Number(f[11]) / TICKS_PER_S, sys: Number(f[12]) / TICKS_PER_S, faults: Number(f[7]), switches, threads }
}

/** Busy and total jiffies per CPU, to tell which side (proxy or load) was saturated. */
export function cpuTimes() {
  const out = {}
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^(cpu\d+) (.*)$/.exec(line)
    if (!m) continue
    const v = m[2].trim().split(/\s+/).map(Number)
    const idle = v[3] + (v[4] ?? 0)
    const total = v.reduce((a, b) => a + b, 0)
    out[m[1]] = { busy: total - idle, total }
  }
  return out
}

/** Percent busy per CPU between two cpuTimes() readings. */
export function cpuBusyPct(before, after) {
  const out = {}
  for (const [cpu, a] of Object.entries(after)) {
    const b = before[cpu]
    if (!b || a.total === b.total) continue
    out[cpu] = round((100 * (a.busy - b.busy)) / (a.total - b.total), 1)
  }
  return out
}

/** Samples RSS and fd count of `pid` every `intervalMs` until stopped (bounded by the caller's run). */
export function sampler(pid, intervalMs) {
  const t0 = performance.now()
  const samples = []
  const take = () => samples.push({ t: round((performance.now() - t0) / 1000, 1), rssMB: round(rssMB(pid), 1), fds: fdCount(pid) })
  take()
  const timer = setInterval(take, intervalMs)
  return {
    samples,
    stop() {
      clearInterval(timer)
      take()
      return samples
    },
  }
}

/** The soft limit on open files for this process (children inherit it). */
export function openFilesLimit() {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
  return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : null
}

export function round(x, digits = 2) {
  if (x === null || x === undefined || !Number.isFinite(x)) return x ?? null
  const k = 10 ** digits
  return Math.round(x * k) / k
}

/** inode -> { local, remote } ports of every TCP socket on this host (IPv4 and IPv6). */
function tcpSockets() {
  const byInode = new Map()
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text
    try {
      text = readFileSync(file, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10) continue
      const port = (addr) => parseInt(addr.split(':')[1], 16)
      byInode.set(f[9], { local: port(f[1]), remote: port(f[2]), state: f[3] })
    }
  }
  return byInode
}

/**
 * A process's open fds split by what they are: sockets of clients on
 * `listenPort`, sockets to each of `upstreamPorts`, other sockets, and the
 * rest (files, pipes, epoll...). A leak shows in a class, not just a total.
 */
export function fdBreakdown(pid, { listenPort, upstreamPorts = {} } = {}) {
  let links
  try {
    links = readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`)
      } catch {
        return ''
      }
    })
  } catch {
    return null
  }
  const sockets = tcpSockets()
  const out = { total: links.length, clients: 0, otherSockets: 0, other: 0 }
  for (const name of Object.keys(upstreamPorts)) out[name] = 0
  for (const link of links) {
    const m = /^socket:\[(\d+)\]$/.exec(link)
    if (!m) {
      out.other++
      continue
    }
    const s = sockets.get(m[1])
    const upstream = s && Object.entries(upstreamPorts).find(([, port]) => s.remote === port)
    if (s && s.local === listenPort && s.state !== '0A') out.clients++ // 0A: the listening socket itself
    else if (upstream) out[upstream[0]]++
    else out.otherSockets++
  }
  return out
}
