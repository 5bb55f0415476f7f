/**
 * /docs: one OpenAPI document for the public contract, merged from the
 * documents of every upstream that publishes one (its `openapi:` path in the
 * gateway's file), keeping only what the gateway routes publicly, tagged by
 * upstream name, and adding what the gateway adds: bearer auth on protected
 * routes and its own error answers.
 */
import type { Dispatcher } from 'undici'
import type { FastifyBaseLogger } from 'fastify'
import type { ResolvedRoute } from '../gateway-config/load.js'

/** An upstream whose OpenAPI document is merged. */
export interface DocumentedUpstream {
  name: string
  description?: string
  pool: Dispatcher
  /** Where it publishes its document, e.g. /openapi.json. */
  path: string
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- OpenAPI documents of any shape, walked by path
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

export function mergeOpenApi(services: Record<string, Json>, routes: ResolvedRoute[], tags: Array<{ name: string; description?: string }>): Json {
  const paths: Json = {}
  const schemas: Json = { ErrorEnvelope: ENVELOPE_SCHEMA }
  const docs: Record<string, Json> = {}
  for (const [name, doc] of Object.entries(services)) {
    docs[name] = namespaced(doc, `${name}_`)
    Object.assign(schemas, docs[name]!.components.schemas)
  }
  for (const group of routes) {
    const doc = docs[group.upstream]
    for (const url of group.paths) {
      const path = toOpenApiPath(url)
      for (const method of group.methods) {
        const op: Json | undefined = doc?.paths?.[path]?.[method.toLowerCase()]
        const operation: Json = structuredClone(op ?? { summary: `${method} ${path}`, responses: {} })
        operation.tags = [group.upstream]
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
    tags: tags.map((t) => (t.description ? { name: t.name, description: t.description } : { name: t.name })),
    paths,
    components: {
      schemas,
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
    },
  }
}

/**
 * Keeps the merged document current: fetched from each upstream that publishes one at start, then refreshed.
 * The document is built when first asked for and again only after an upstream's document changed. Built at
 * start and at every refresh (every 5 s while an upstream has not published yet), a file of 1,000 routes cost
 * every gateway 12 MB it kept (responses objects, see compact) and a rebuild of 2,500 operations every 5 s,
 * promoted to the old generation and collected there: in the bench, 1.12-1.20x the bundled file's CPU per
 * request and 1.33x its RSS, whether anyone read /docs or not.
 */
export function openApiDocument(upstreams: DocumentedUpstream[], routes: ResolvedRoute[], log: FastifyBaseLogger) {
  const fetched: Record<string, Json> = {}
  /** Each upstream's document as last fetched, to tell whether it changed. */
  const texts: Record<string, string> = {}
  // Every routed upstream is a tag, documented or not, in the order the file declares them.
  const routed = new Set(routes.map((r) => r.upstream))
  const tags = [...routed].map((name) => ({ name, description: upstreams.find((u) => u.name === name)?.description }))
  /** null: not built since the last change. */
  let merged: Json | null = null
  let builds = 0
  let timer: NodeJS.Timeout | undefined

  async function refresh(): Promise<void> {
    await Promise.all(
      upstreams.map(async ({ name, pool, path }) => {
        try {
          const res = await pool.request({ method: 'GET', path, headersTimeout: 2000, bodyTimeout: 2000 })
          if (res.statusCode !== 200) {
            await res.body.dump()
            throw new Error(`status ${res.statusCode}`)
          }
          const text = await res.body.text()
          if (texts[name] === text) return
          fetched[name] = JSON.parse(text) as Json
          texts[name] = text
          merged = null
        } catch (err) {
          log.debug({ upstream: name, err: { message: (err as Error).message } }, 'OpenAPI document not fetched yet')
        }
      }),
    )
  }

  return {
    current: (): Json => {
      if (merged === null) {
        merged = compact(mergeOpenApi(fetched, routes, tags))
        builds++
      }
      return merged
    },
    /** How many times the document was built (tests). */
    builds: () => builds,
    start() {
      const tick = async () => {
        await refresh()
        const complete = Object.keys(fetched).length === upstreams.length
        timer = setTimeout(tick, complete ? 300_000 : 5_000)
        timer.unref()
      }
      void tick()
    },
    refresh,
    stop: () => clearTimeout(timer),
  }
}

/**
 * The document as JSON.parse builds it. An operation's `responses` is keyed by status codes, which V8 keeps
 * as array elements: set one by one, in an array as long as the largest code (about 4.5 KB each for 401-504);
 * parsed from JSON text, sparse keys go into a small dictionary. 6.1 KB against 1.6 KB an operation (lab,
 * Node 24, eight codes 200-504 with their answers).
 */
function compact(doc: Json): Json {
  return JSON.parse(JSON.stringify(doc)) as Json
}
