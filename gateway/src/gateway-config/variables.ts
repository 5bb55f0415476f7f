/**
 * What `${VAR}` in the gateway's file reads: the environment, overlaid with
 * the validated settings (so the schema's defaults apply, and a test's
 * settings are the ones its file sees).
 */
import type { Config } from '../config.js'

export function gatewayVariables(config: Config, env: Record<string, string | undefined>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = { ...env }
  for (const [k, v] of Object.entries(config)) if (v !== undefined && v !== null) out[k] = String(v)
  return out
}
