/**
 * What to run and for how long: command-line mode plus BENCH_* overrides.
 *   (default)  throughput a/b/c, sign-in under load, faults (i)-(v)
 *   --quick    the same with short durations (about 2 min smoke); writes quick.*
 *   --soak     5 minutes of (c), sampling the gateway's RSS
 *   --profile  CPU profiles of (b) and (c) under the same load: what the gateway adds per request
 *   --instructions  instructions per request of (b) and (c) (and c+trace1% with --tracing) under callgrind
 *   --streams  live SSE streams through the gateway: memory per stream, fan-out latency, sign-out close time
 *   --only=throughput,signin,faults,ledger,hostile   a subset (combinable with --quick)
 *   --tool=autocannon|wrk|both   load generator(s) of the throughput suite (default both)
 *   --tracing  throughput also with tracing on, sampling 1 % and 100 % (rows c+trace1%, c+trace100%), and
 *              the gateway before tracing existed (row c before tracing, built from its commit: bench/lib/baseline.mjs)
 */
const SUITES = ['throughput', 'signin', 'faults', 'ledger', 'hostile']
const TOOLS = { autocannon: ['autocannon'], wrk: ['wrk'], both: ['autocannon', 'wrk'] }

export function readConfig(argv = process.argv.slice(2), env = process.env) {
  const flags = new Set(argv.filter((a) => a.startsWith('--') && !a.includes('=')))
  const only = argv.find((a) => a.startsWith('--only='))?.slice(7).split(',').filter(Boolean)
  const tool = argv.find((a) => a.startsWith('--tool='))?.slice(7) ?? 'both'
  const unknown = [...flags].filter((f) => !['--quick', '--soak', '--profile', '--instructions', '--streams', '--help', '--tracing'].includes(f))
  const badValued = argv.filter((a) => a.startsWith('--') && a.includes('=') && !a.startsWith('--only=') && !a.startsWith('--tool='))
  if (unknown.length || badValued.length || (only && only.some((s) => !SUITES.includes(s)))) {
    throw new Error(`unknown option ${[...unknown, ...badValued].join(' ') || `--only=${only}`}; see bench/lib/config.mjs`)
  }
  if (!TOOLS[tool]) throw new Error(`--tool must be autocannon, wrk or both (see bench/lib/config.mjs)`)
  const quick = flags.has('--quick')
  const num = (name, normal, short) => {
    const v = env[name]
    if (v !== undefined && v !== '') {
      const n = Number(v)
      if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number of seconds (or a count), got ${v}`)
      return n
    }
    return quick ? short : normal
  }
  const warmupS = num('BENCH_WARMUP_S', 6, 2)
  let suites = only ?? SUITES
  if (flags.has('--soak')) suites = ['soak']
  if (flags.has('--profile')) suites = ['profile']
  if (flags.has('--instructions')) suites = ['instructions']
  if (flags.has('--streams')) suites = ['streams']
  return {
    help: flags.has('--help'),
    quick,
    suites,
    tools: TOOLS[tool],
    // Throughput also with OpenTelemetry on (OTLP/HTTP to a local sink), sampling 1 % and 100 %.
    tracing: flags.has('--tracing'),
    // Quick runs never overwrite the figures the README quotes.
    outName: quick ? 'quick' : 'latest',
    connections: num('BENCH_CONNECTIONS', 50, 50),
    warmupS,
    // Throughput: each proxy process's first warm-up (with the first tool; V8's compiled code outlives a change of
    // tool) lasts this long, never less than warmupS, the same for every contender. Code a request runs rarely, as
    // the sampled path at 1 % tracing, reaches V8's optimising compiler late: session 34's `--log-code` timeline had it compiled
    // after some 40 s of load, inside the measured slices when a process had 6 s; with 90 s of warm-up (three
    // processes at once) the 1 % lab figure fell from 1.058 to 1.044 and V8's helper threads' excess went away.
    firstWarmupS: Math.max(warmupS, num('BENCH_FIRST_WARMUP_S', 60, 2)),
    // Throughput: each measured slice follows this much load of its own on the same process, discarded. An instance
    // idles for minutes between its slices (every other contender takes the rounds meanwhile), and its first seconds
    // back cost all contenders 40-70 % more CPU per request (JIT and GC warming up again; lab, session 19, 4 min idle).
    sliceWarmupS: num('BENCH_SLICE_WARMUP_S', 2, 1),
    durationS: num('BENCH_DURATION_S', 64, 6),
    // The measured time per target is taken in this many interleaved rounds (each target in turn, the order reversed every other round).
    rounds: Math.max(1, Math.round(num('BENCH_ROUNDS', 16, 2))),
    // Throughput: each proxy contender runs as this many processes, taking the rounds in turn.
    instances: Math.max(1, Math.round(num('BENCH_INSTANCES', 3, 1))),
    soakS: num('BENCH_SOAK_S', 300, 60),
    soakSampleS: num('BENCH_SOAK_SAMPLE_S', 5, 5),
    profileS: num('BENCH_PROFILE_S', 15, 5),
    // Requests before and during callgrind's count (--instructions).
    instrWarmup: Math.round(num('BENCH_INSTR_WARMUP', 30000, 3000)),
    instrRequests: Math.max(1, Math.round(num('BENCH_INSTR_REQUESTS', 10000, 1000))),
    streams: Math.max(10, Math.round(num('BENCH_STREAMS', 5000, 200))),
    signinS: num('BENCH_SIGNIN_DURATION_S', 20, 5),
    signinConnections: num('BENCH_SIGNIN_CONNECTIONS', 16, 16),
    faultS: num('BENCH_FAULT_DURATION_S', 10, 3),
    bigConnections: num('BENCH_BIG_CONNECTIONS', 1000, 1000),
    settleS: num('BENCH_SETTLE_S', 10, 3),
    recoverS: num('BENCH_RECOVER_S', 60, 3),
    // The machine may be shared: wait this long at most for idle CPUs before each measurement.
    quietWaitS: num('BENCH_QUIET_WAIT_S', 30, 2),
  }
}
