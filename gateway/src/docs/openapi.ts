/**
 * /docs: one OpenAPI document for the public contract, generated from the
 * services' own route schemas (each publishes /openapi.json), keeping only
 * what the gateway routes publicly, and adding what the gateway adds: bearer
 * auth on protected routes and its own error answers.
 */
import type { Dispatcher } from 'undici'
import type { FastifyBaseLogger } from 'fastify'
import type { RouteGroup, UpstreamName } from '../routes/public-api.js'

type Json = Record<string, any>

const ENVELOPE_REF = { $ref: '#/components/schemas/ErrorEnvelope' }
const ENVELOPE_SCHEMA = {
  type: 'object',
  required: ['detail', 'error_code', 'status_code'],
  properties: {
    detail: { type: 'string', description: 'Short, human-readable; never internals' },
    error_code: { type: 'string', description: 'Stable machine code, e.g. INVALID_TOKEN' },
    status_code: { type: 'integer', description: 'Equals the HTTP status' },
  },
}
const GATEWAY_ERRORS: Record<string, string> = {
  '413': 'Body over the limit (PAYLOAD_TOO_LARGE)',
  '429': 'Rate limit hit (RATE_LIMITED); see Retry-After and RateLimit',
  '502': 'Upstream refused or broke the connection (BAD_GATEWAY)',
  '503': 'Upstream, database or key source unavailable (SERVICE_UNAVAILABLE)',
  '504': 'Upstream did not answer in time (GATEWAY_TIMEOUT)',
}
const AUTH_ERRORS: Record<string, string> = {
  '401': 'No token (UNAUTHORIZED), or INVALID_TOKEN, TOKEN_EXPIRED, TOKEN_REVOKED',
}
const OWNER_ERRORS: Record<string, string> = { '403': 'The path user id is not the caller (FORBIDDEN)' }

/** `/api/:user_id/tasks/:id` -> `/api/{user_id}/tasks/{id}` */
const toOpenApiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')

/** Prefix a service's component names so two services' schemas never collide. */
function namespaced(doc: Json, prefix: string): Json {
  const text = JSON.stringify(doc).replaceAll('"#/components/schemas/', `"#/components/schemas/${prefix}`)
  const out = JSON.parse(text) as Json
  const schemas = out.components?.schemas ?? {}
  out.components = { ...out.components, schemas: Object.fromEntries(Object.entries(schemas).map(([k, v]) => [`${prefix}${k}`, v])) }
  return out
}

export function mergeOpenApi(services: Partial<Record<UpstreamName, Json>>, routes: RouteGroup[]): Json {
  const paths: Json = {}
  const schemas: Json = { ErrorEnvelope: ENVELOPE_SCHEMA }
  const docs: Partial<Record<UpstreamName, Json>> = {}
  for (const [name, doc] of Object.entries(services) as Array<[UpstreamName, Json]>) {
    docs[name] = namespaced(doc, `${name}_`)
    Object.assign(schemas, docs[name]!.components.schemas)
  }
  for (const group of routes) {
    const doc = docs[group.upstream]
    for (const url of group.urls) {
      const path = toOpenApiPath(url)
      for (const method of group.methods) {
        const op: Json | undefined = doc?.paths?.[path]?.[method.toLowerCase()]
        const operation: Json = structuredClone(op ?? { summary: `${method} ${path}`, responses: {} })
        operation.tags = [group.upstream === 'auth' ? 'auth' : 'tasks']
        // Parameters with a default are optional to the caller, whatever the schema's `required` says.
        for (const p of operation.parameters ?? []) if (p.in !== 'path' && p.schema?.default !== undefined) p.required = false
        const extra = { ...GATEWAY_ERRORS, ...(group.access === 'anonymous' ? {} : AUTH_ERRORS), ...(group.access === 'owner' ? OWNER_ERRORS : {}) }
        for (const [status, description] of Object.entries(extra)) {
          operation.responses[status] ??= { description, content: { 'application/json': { schema: ENVELOPE_REF } } }
        }
        if (group.access !== 'anonymous') operation.security = [{ bearerAuth: [] }]
        ;(paths[path] ??= {})[method.toLowerCase()] = operation
      }
    }
  }
  return {
    openapi: '3.0.3',
    info: {
      title: 'Tollgate API',
      version: '0.1.0',
      description:
        'The public contract of the Tollgate gateway. Every error is `{detail, error_code, status_code}`; ' +
        'every response carries `x-request-id`.',
    },
    tags: [
      { name: 'auth', description: 'Accounts and tokens (auth-service)' },
      { name: 'tasks', description: "A user's tasks (task-service); the path user id must be the token's subject" },
    ],
    paths,
    components: {
      schemas,
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
    },
  }
}

/** Keeps the merged document current: fetched from each service at start, then refreshed. */
export function openApiDocument(upstreams: Record<UpstreamName, Dispatcher>, routes: RouteGroup[], log: FastifyBaseLogger) {
  const fetched: Partial<Record<UpstreamName, Json>> = {}
  let merged = mergeOpenApi(fetched, routes)
  let timer: NodeJS.Timeout | undefined

  async function refresh(): Promise<void> {
    await Promise.all(
      (Object.entries(upstreams) as Array<[UpstreamName, Dispatcher]>).map(async ([name, pool]) => {
        try {
          const res = await pool.request({ method: 'GET', path: '/openapi.json', headersTimeout: 2000, bodyTimeout: 2000 })
          if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`)
          fetched[name] = (await res.body.json()) as Json
        } catch (err) {
          log.debug({ upstream: name, err: { message: (err as Error).message } }, 'OpenAPI document not fetched yet')
        }
      }),
    )
    merged = mergeOpenApi(fetched, routes)
  }

  return {
    current: () => merged,
    start() {
      const tick = async () => {
        await refresh()
        const complete = Object.keys(fetched).length === Object.keys(upstreams).length
        timer = setTimeout(tick, complete ? 300_000 : 5_000)
        timer.unref()
      }
      void tick()
    },
    refresh,
    stop: () => clearTimeout(timer),
  }
}
