/**
 * The scrape-time counter and histogram expose exactly what prom-client's own
 * Counter and Histogram expose for the same observations (text and JSON, with
 * default labels, bounds hit exactly, values past the last bound, several
 * series in first-seen order, reset), so swapping them changed no scrape.
 */
import t from 'tap'
import { Counter, Histogram, Registry } from 'prom-client'
import { scrapeTimeCounter, ScrapeTimeHistogram } from '../src/scrape-time-metrics.js'

const BUCKETS = [0.001, 0.005, 0.01, 0.5, 1]
const labelNames = ['route', 'status'] as const

function pair() {
  const ours = new Registry()
  const theirs = new Registry()
  for (const r of [ours, theirs]) r.setDefaultLabels({ service: 'test' })
  const config = { name: 'x_seconds', help: 'time', labelNames, buckets: BUCKETS }
  const counterConfig = { name: 'x_total', help: 'count', labelNames }
  return {
    ours,
    theirs,
    histogram: new ScrapeTimeHistogram({ ...config, registers: [ours] }),
    reference: new Histogram({ ...config, registers: [theirs] }),
    counter: scrapeTimeCounter({ ...counterConfig, registers: [ours] }),
    referenceCounter: new Counter({ ...counterConfig, registers: [theirs] }),
  }
}

// Bounds hit exactly (le is inclusive), between bounds, past the last one, zero.
const VALUES = [0, 0.001, 0.0011, 0.005, 0.2, 0.5, 0.9999, 1, 1.5, 42]

t.test('the same observations give the same exposition, text and JSON', async (t) => {
  const p = pair()
  const series = [
    { route: '/a', status: '200' },
    { route: '/b', status: '404' },
    { route: '/a', status: '500' },
  ]
  let i = 0
  for (const v of VALUES) {
    for (const labels of series) {
      if (labels.status === '500' && i++ % 3 !== 0) continue
      p.histogram.labels(labels).observe(v)
      p.reference.labels(labels).observe(v)
      p.counter.series(labels).inc()
      p.referenceCounter.labels(labels).inc()
    }
  }
  t.equal(await p.ours.metrics(), await p.theirs.metrics(), 'Prometheus text')
  t.same(await p.ours.getMetricsAsJSON(), await p.theirs.getMetricsAsJSON(), 'JSON')
  // Counted again after a scrape: the counter hands over only what came since.
  p.counter.series(series[0]!).inc()
  p.referenceCounter.labels(series[0]!).inc()
  t.equal(await p.ours.metrics(), await p.theirs.metrics(), 'a second scrape')
})

t.test('a series appears at its first observation, not when its handle is made', async (t) => {
  const p = pair()
  p.histogram.labels({ route: '/never', status: '200' })
  p.counter.series({ route: '/never', status: '200' })
  p.reference.labels({ route: '/never', status: '200' })
  p.referenceCounter.labels({ route: '/never', status: '200' })
  t.equal(await p.ours.metrics(), await p.theirs.metrics())
  t.notMatch(await p.ours.metrics(), /never/)
})

t.test('the same labels give the same handle; reset zeroes what handles still feed', async (t) => {
  const p = pair()
  const a = p.histogram.labels({ route: '/a', status: '200' })
  t.equal(p.histogram.labels({ route: '/a', status: '200' }), a)
  t.equal(p.counter.series({ route: '/a', status: '200' }), p.counter.series({ route: '/a', status: '200' }))
  a.observe(0.002)
  p.reference.labels({ route: '/a', status: '200' }).observe(0.002)
  p.ours.resetMetrics()
  p.theirs.resetMetrics()
  t.equal(await p.ours.metrics(), await p.theirs.metrics(), 'both empty after a reset')
  a.observe(0.003)
  p.reference.labels({ route: '/a', status: '200' }).observe(0.003)
  t.equal(await p.ours.metrics(), await p.theirs.metrics(), 'the old handle counts on after the reset')
})

t.test('buckets given out of order are sorted, as prom-client needs them', async (t) => {
  const registry = new Registry()
  const h = new ScrapeTimeHistogram({ name: 'y', help: 'y', labelNames: ['k'] as const, buckets: [1, 0.1, 0.5], registers: [registry] })
  h.labels({ k: 'v' }).observe(0.3)
  const [metric] = await registry.getMetricsAsJSON()
  t.same(
    metric!.values.filter((v) => v.metricName === 'y_bucket').map((v) => [v.labels.le, v.value]),
    [
      [0.1, 0],
      [0.5, 1],
      [1, 1],
      ['+Inf', 1],
    ],
  )
})
