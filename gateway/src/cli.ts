#!/usr/bin/env node
/**
 * `tollgate`: the gateway's file, checked and shown without starting anything.
 *
 *   tollgate check <file>    prints `ok`, or one line per problem (exit 1)
 *   tollgate routes <file>   prints the route table
 *   tollgate schema          prints the file's JSON Schema (tollgate.schema.json)
 *
 * `${VAR}` references read the environment, with the gateway's defaults for
 * the variables it knows (as `npm start` would see them).
 */
import { Value } from '@tollgate/common/typebox'
import { configSchema } from './config.js'
import { GatewayConfigError, loadGatewayFile, type GatewayDefinition } from './gateway-config/load.js'
import { GatewayFileSchema } from './gateway-config/schema.js'

const USAGE = 'usage: tollgate check <file> | tollgate routes <file> | tollgate schema\n'

function variables(): Record<string, string | undefined> {
  const defaults = Value.Default(configSchema, {}) as Record<string, unknown>
  const out: Record<string, string | undefined> = {}
  for (const [k, v] of Object.entries(defaults)) if (v !== undefined) out[k] = String(v)
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && v !== '') out[k] = v
  return out
}

function load(file: string): GatewayDefinition | undefined {
  try {
    return loadGatewayFile(file, variables())
  } catch (err) {
    if (!(err instanceof GatewayConfigError)) throw err
    process.stderr.write(`${err.lines.join('\n')}\n`)
    process.exitCode = 1
    return undefined
  }
}

/** One line per declared route: what the gateway does with it. */
export function routeTable(definition: GatewayDefinition): string {
  const rows = [['METHODS', 'PATH', 'UPSTREAM', 'ACCESS', 'ISSUERS', 'POLICIES', 'BODY', 'EXTRAS']]
  for (const r of definition.routes) {
    const access = r.access === 'owner' ? `owner(${r.ownerParam})` : r.access
    const body = r.body.kind === 'stream' ? 'stream' : r.body.schemaName ? `json(${r.body.schemaName})` : 'json'
    const extras = [
      r.forwardAuthorization ? 'forwards-authorization' : '',
      r.revokes ? `revokes-${r.revokes}` : '',
      r.cache === 'public' ? 'cache-public' : '',
      r.timeoutMs ? `timeout=${r.timeoutMs}ms` : '',
      r.stream ? `live-${r.stream}` : '',
    ].filter(Boolean)
    for (const path of r.paths) {
      rows.push([
        r.methods.join(','),
        path,
        r.upstream,
        access,
        r.access === 'anonymous' ? '-' : (r.issuers?.join(',') ?? 'all'),
        r.policies.map((p) => p.name).join(',') || '-',
        body,
        extras.join(',') || '-',
      ])
    }
  }
  for (const r of definition.internalRoutes) {
    for (const path of r.paths) {
      rows.push([r.methods.join(','), path, r.upstream, `internal:${r.access}`, '-', r.policies.map((p) => p.name).join(',') || '-', 'stream', '-'])
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n'
}

const [command, file] = process.argv.slice(2)
if (command === 'schema') {
  process.stdout.write(`${JSON.stringify(GatewayFileSchema, null, 2)}\n`)
} else if ((command === 'check' || command === 'routes') && file) {
  const definition = load(file)
  if (definition) process.stdout.write(command === 'check' ? 'ok\n' : routeTable(definition))
} else {
  process.stderr.write(USAGE)
  process.exitCode = 2
}
