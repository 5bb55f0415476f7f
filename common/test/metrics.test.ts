/**
 * The process metrics every service exports: the event-loop lag histogram samples every EVENT_LOOP_SAMPLE_MS (not
 * prom-client's 10 ms, whose timer cost an idle process 0.9 % of a core) and still reports the lag the dashboard
 * plots (its "event loop lag p99" panel).
 */
import t from 'tap'
import { createMetricsKit, EVENT_LOOP_SAMPLE_MS } from '../src/metrics.js'

/** One scrape, as Prometheus reads it: metric name (labels dropped) to value. */
const scrape = async (kit: ReturnType<typeof createMetricsKit>) =>
  new Map((await kit.registry.metrics()).split('\n').filter((l) => l && !l.startsWith('#')).map((l) => {
    const [name, value] = [l.slice(0, l.search(/[{ ]/)), l.slice(l.lastIndexOf(' ') + 1)]
    return [name, Number(value)] as const
  }))

t.test('the event-loop lag is measured at the sampling interval, and a blocked loop shows in it', async (t) => {
  t.equal(EVENT_LOOP_SAMPLE_MS, 100)
  const kit = createMetricsKit('metrics-test')
  await new Promise((r) => setTimeout(r, 3 * EVENT_LOOP_SAMPLE_MS + 50))
  // The loop blocked for 300 ms: the sample due inside it comes late by about that much.
  const until = Date.now() + 300
  while (Date.now() < until) {
    // busy on purpose
  }
  await new Promise((r) => setTimeout(r, 2 * EVENT_LOOP_SAMPLE_MS + 50))
  const values = await scrape(kit)
  for (const name of ['nodejs_eventloop_lag_p50_seconds', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_eventloop_lag_max_seconds']) {
    t.type(values.get(name), 'number', `${name} reported`)
  }
  const max = values.get('nodejs_eventloop_lag_max_seconds')!
  t.ok(max >= 0.15, `the 300 ms block shows as the max lag (${max} s)`)
})
