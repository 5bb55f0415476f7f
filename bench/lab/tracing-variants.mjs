/**
 * The tracing labs' variants (tracing-cost.mjs, tracing-instructions.mjs):
 * `off`, or a sampling ratio in per cent (`0%`, `1%`) exporting over
 * OTLP/HTTP to the sink at `sinkUrl`; after a colon, comma-separated
 * `NAME=VALUE` pairs for the gateway's environment, `--flags` for node, and
 * `root=/path` for another built checkout.
 */
export function parseVariant(variant, sinkUrl) {
  const [base, extra = ''] = variant.split(':')
  const env = {}
  if (base !== 'off') {
    const percent = /^(\d+(?:\.\d+)?)%$/.exec(base)
    if (!percent) throw new Error(`variant ${variant}: off, or a sampling ratio such as 1%`)
    Object.assign(env, {
      OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl,
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: String(Number(percent[1]) / 100),
    })
  }
  const nodeArgs = []
  let root
  for (const pair of extra.split(',').filter(Boolean)) {
    if (pair.startsWith('--')) {
      nodeArgs.push(pair)
      continue
    }
    const eq = pair.indexOf('=')
    if (pair.slice(0, eq) === 'root') root = pair.slice(eq + 1).replace(/\/?$/, '/')
    else env[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return { env, nodeArgs, root }
}
