/**
 * Reading the gateway's declarative file: YAML (or JSON) parsed with line
 * positions, `${VAR}` / `${VAR:-default}` references resolved from the given
 * variables, the result checked against the schema and then for meaning
 * (a route naming an upstream, policy, issuer or schema that is not declared,
 * an owner parameter missing from the path, ...). Every problem is one line
 * `file:line: field.path: message`; a file with any problem is refused whole.
 */
import { readFileSync } from 'node:fs'
import { isScalar, LineCounter, parseDocument, type Document } from 'yaml'
import { Value } from '@tollgate/common/typebox'
import { ConfigError, SigninBody, SignupBody } from '@tollgate/common'
import { GatewayFileSchema, type GatewayFile, type IssuerDecl, type PolicyDecl, type RouteDecl } from './schema.js'

export type Variables = Record<string, string | undefined>

/** All the problems of one file, one line each. */
export class GatewayConfigError extends ConfigError {
  constructor(readonly lines: string[]) {
    super(lines.join('\n'))
    this.name = 'GatewayConfigError'
  }
}

export type BodyMode =
  | { kind: 'stream' }
  | {
      kind: 'json'
      schema?: object
      schemaName?: string
      /** Trim and lower-case `email` before the check, as the auth-service does (its bodies, and bodies an email limit keys on). */
      normaliseEmail: boolean
    }

export interface ResolvedPolicy extends Required<Pick<PolicyDecl, 'key' | 'limit' | 'window_s' | 'count' | 'mode'>> {
  name: string
}

export interface ResolvedRoute {
  methods: string[]
  paths: string[]
  upstream: string
  access: 'anonymous' | 'user' | 'owner'
  /** The path parameter that must equal the token's subject (access owner). */
  ownerParam?: string
  /** Issuer names whose tokens are accepted; undefined: all. */
  issuers?: string[]
  policies: ResolvedPolicy[]
  body: BodyMode
  forwardAuthorization: boolean
  revokes?: 'token' | 'user'
  cache: 'private' | 'public'
  timeoutMs?: number
  /** A live stream: server-sent events, or a WebSocket; governed by the edge while it is open. */
  stream?: 'sse' | 'websocket'
}

export interface ResolvedUpstream {
  name: string
  targets: string[]
  balance?: 'round-robin' | 'least-busy'
  poolSize?: number
  connectTimeoutMs?: number
  timeoutMs?: number
  healthCheck?: { path: string; intervalMs?: number; timeoutMs?: number; unhealthyAfter?: number; healthyAfter?: number }
  openapi?: string
  description?: string
  /** Its name in /ready. */
  service: string
}

export interface ResolvedIssuer extends IssuerDecl {
  name: string
}

export interface ResolvedInternalRoute {
  methods: string[]
  paths: string[]
  upstream: string
  access: 'service' | 'credential'
  policies: ResolvedPolicy[]
}

export interface GatewayDefinition {
  file: string
  issuers: ResolvedIssuer[]
  upstreams: ResolvedUpstream[]
  policies: ResolvedPolicy[]
  routes: ResolvedRoute[]
  internalRoutes: ResolvedInternalRoute[]
  cors: { origins: string[]; methods?: string[]; allowedHeaders?: string[]; exposedHeaders?: string[]; maxAgeS?: number }
  listeners: { public?: { host: string; port: number }; internal?: { host: string; port: number }; admin?: { host: string; port: number } }
  /** The upstream whose /internal/revocations feed the gateway polls. */
  revocationFeed: string
}

/** Body schemas every file may name without declaring them: the bundled auth-service's (emails normalised as it does). */
const BUILT_IN_SCHEMAS: Record<string, object> = { SignupBody, SigninBody }
const NORMALISED_EMAIL = new Set(Object.keys(BUILT_IN_SCHEMAS))

const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^{}]*))?\}/
const WHOLE_REFERENCE = /^\$\{[^{}]*(?:\$\{[^{}]*\}[^{}]*)*\}$/

type Path = Array<string | number>

/** Load and check a file; throws GatewayConfigError listing every problem. */
export function loadGatewayFile(file: string, variables: Variables): GatewayDefinition {
  return parseGatewayConfig(readGatewayText(file), file, variables)
}

/** The file's text, or a GatewayConfigError naming it. */
export function readGatewayText(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    throw new GatewayConfigError([`${file}: cannot be read`])
  }
}

export function parseGatewayConfig(text: string, file: string, variables: Variables): GatewayDefinition {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    // The first syntax error only: the parser's later ones are mostly its consequences.
    const e = doc.errors[0]!
    throw new GatewayConfigError([`${file}:${lineCounter.linePos(e.pos[0]).line}: ${e.message.split('\n')[0]}`])
  }
  const problems: string[] = []
  const report = (path: Path, message: string) => {
    problems.push(`${file}:${lineOf(doc, lineCounter, path)}: ${path.length ? path.join('.') : '(top)'}: ${message}`)
  }
  const value = substitute(doc.toJS(), [], variables, report)
  if (problems.length > 0) throw new GatewayConfigError(problems)
  // A valid file (every start and reload) is checked without building the error list: for 1,000 routes, 1.2 s.
  if (!Value.Check(GatewayFileSchema, value)) for (const error of Value.Errors(GatewayFileSchema, value)) {
    // additionalProperties is reported twice: keep the per-field "schema is false" one.
    if (error.keyword === 'additionalProperties') continue
    const path = pointerToPath(error.instancePath)
    const message = error.keyword === 'boolean' ? 'unknown field' : error.message
    report(path, message)
  }
  if (problems.length > 0) throw new GatewayConfigError([...new Set(problems)])
  const definition = resolve(value as GatewayFile, file, report, variables.RATE_LIMIT_BATCHED)
  if (problems.length > 0) throw new GatewayConfigError(problems)
  return definition
}

/** Resolve every `${...}` in string values; a value that is one whole reference to a number or boolean becomes one. */
function substitute(value: unknown, path: Path, variables: Variables, report: (path: Path, message: string) => void): unknown {
  if (typeof value === 'string') {
    if (!value.includes('${')) return value
    let out = value
    for (let i = 0; i < 16; i++) {
      const m = REFERENCE.exec(out)
      if (!m) break
      const set = variables[m[1]!]
      let replacement: string
      if (set !== undefined && set !== '') replacement = set
      else if (m[2] !== undefined) replacement = m[2]
      else {
        report(path, `\${${m[1]}} is not set`)
        return value
      }
      out = out.slice(0, m.index) + replacement + out.slice(m.index + m[0].length)
    }
    if (WHOLE_REFERENCE.test(value)) {
      if (/^-?\d+$/.test(out)) return Number(out)
      if (out === 'true' || out === 'false') return out === 'true'
    }
    return out
  }
  if (Array.isArray(value)) return value.map((v, i) => substitute(v, [...path, i], variables, report))
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = substitute(v, [...path, k], variables, report)
    return out
  }
  return value
}

function pointerToPath(pointer: string): Path {
  if (!pointer) return []
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s))
}

/** The line of the deepest node of the path the file has (a missing field: its parent's line). */
function lineOf(doc: Document, lineCounter: LineCounter, path: Path): number {
  for (let depth = path.length; depth >= 0; depth--) {
    const node = doc.getIn(path.slice(0, depth), true) as { range?: [number, number, number] } | undefined
    if (node && (isScalar(node) || node.range)) return lineCounter.linePos(node.range![0]).line
  }
  return 1
}

const list = (v: string | string[] | undefined): string[] =>
  v === undefined ? [] : (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter(Boolean)

function resolve(f: GatewayFile, file: string, report: (path: Path, message: string) => void, batchedVariable?: string): GatewayDefinition {
  const issuers: ResolvedIssuer[] = []
  const seenIss = new Set<string>()
  for (const [name, i] of Object.entries(f.issuers)) {
    const at = ['issuers', name]
    if (seenIss.has(i.issuer)) report([...at, 'issuer'], 'two issuers declare the same iss')
    seenIss.add(i.issuer)
    const hmac = i.algorithms.includes('HS256')
    // One kind of key per issuer, never a shared secret beside public keys (RFC 8725 3.1).
    if (hmac && i.algorithms.length > 1) report([...at, 'algorithms'], 'HS256 cannot be mixed with other algorithms')
    if (hmac && !i.secret) report(at, 'HS256 needs `secret`')
    if (!hmac && !i.jwks_url) report(at, 'asymmetric algorithms need `jwks_url`')
    // "${AUTH_SERVICE_URL}/.well-known/..." with a base URL that ends in a slash: one slash, as the URL means.
    issuers.push({ name, ...i, ...(i.jwks_url ? { jwks_url: i.jwks_url.replace(/([^:/])\/{2,}/g, '$1/') } : {}) })
  }

  const upstreams: ResolvedUpstream[] = Object.entries(f.upstreams).map(([name, u]) => {
    const targets = list(u.targets)
    targets.forEach((t, i) => {
      if (!/^https?:\/\/[^\s/]+/.test(t)) report(['upstreams', name, 'targets', ...(Array.isArray(u.targets) ? [i] : [])], 'must be an http(s) URL')
    })
    return {
      name,
      targets,
      balance: u.balance,
      poolSize: u.pool_size,
      connectTimeoutMs: u.connect_timeout_ms,
      timeoutMs: u.timeout_ms,
      healthCheck: u.health_check && {
        path: u.health_check.path ?? '/health',
        intervalMs: u.health_check.interval_ms,
        timeoutMs: u.health_check.timeout_ms,
        unhealthyAfter: u.health_check.unhealthy_after,
        healthyAfter: u.health_check.healthy_after,
      },
      openapi: u.openapi,
      description: u.description,
      service: u.service ?? name,
    }
  })

  const schemas: Record<string, object> = { ...BUILT_IN_SCHEMAS, ...f.schemas }
  const policyDecls = f.policies ?? {}
  const usedOn = new Map<string, RouteDecl[]>()
  for (const r of f.routes) for (const p of r.policies ?? []) usedOn.set(p, [...(usedOn.get(p) ?? []), r])
  const internalOnly = new Set((f.internal_routes ?? []).flatMap((r) => r.policies ?? []))
  const policies = new Map<string, ResolvedPolicy>()
  const listed = batchedVariable?.trim()
  const listedBatched = listed ? new Set(listed === 'none' ? [] : listed.split(',').map((n: string) => n.trim()).filter(Boolean)) : null
  for (const [name, p] of Object.entries(policyDecls)) {
    const count = p.count ?? 'all'
    // Budgets that guard credentials are counted exactly; bulk traffic limits may be batched (issue 19).
    const signInShape = (usedOn.get(name) ?? []).length > 0 && usedOn.get(name)!.every((r) => r.access === 'anonymous' && (r.body ?? 'stream') !== 'stream')
    const exact =
      count === 'failures' || p.key === 'service' || p.key === 'email' || p.key === 'email+address' || signInShape || (internalOnly.has(name) && !usedOn.has(name))
    // A mode the file leaves open: RATE_LIMIT_BATCHED names the batched policies (`none`: all exact; names a file
    // does not declare are ignored, as the default `ip,user` names the bundled file's), else the shape decides.
    const mode = p.mode ?? (listedBatched ? (listedBatched.has(name) ? 'batched' : 'exact') : exact ? 'exact' : 'batched')
    if (mode === 'batched' && (count === 'failures' || p.key === 'service')) {
      report(['policies', name, 'mode'], p.mode ? 'failure budgets and service limits count exactly' : `RATE_LIMIT_BATCHED names ${name}, which must count exactly`)
    }
    policies.set(name, { name, key: p.key, limit: p.limit, window_s: p.window_s, count, mode })
  }

  const upstreamNames = new Set(Object.keys(f.upstreams))
  const issuerNames = new Set(Object.keys(f.issuers))
  const declared = new Map<string, number>()
  const routes: ResolvedRoute[] = f.routes.map((r, i) => {
    const at: Path = ['routes', i]
    const paths = Array.isArray(r.path) ? r.path : [r.path]
    if (!upstreamNames.has(r.upstream)) report([...at, 'upstream'], `no upstream named "${r.upstream}"`)
    const owner = /^owner\((.+)\)$/.exec(r.access)
    const access = owner ? 'owner' : (r.access as 'anonymous' | 'user')
    if (owner) {
      for (const p of paths) if (!p.split('/').includes(`:${owner[1]}`)) report([...at, 'access'], `the path ${p} has no :${owner[1]} parameter`)
    }
    const issuers = r.issuers === undefined || r.issuers === 'all' ? undefined : r.issuers
    for (const name of issuers ?? []) if (!issuerNames.has(name)) report([...at, 'issuers'], `no issuer named "${name}"`)
    if (access === 'anonymous' && r.issuers !== undefined) report([...at, 'issuers'], 'an anonymous route checks no token')
    if (access === 'anonymous' && r.revokes) report([...at, 'revokes'], 'an anonymous route has no token to revoke')
    if (access === 'anonymous' && r.forward_authorization) report([...at, 'forward_authorization'], 'an anonymous route checks no token')
    if (r.stream) {
      if (access === 'anonymous') report([...at, 'stream'], 'a live stream is governed by its token: anonymous streams are not supported')
      if (r.methods.some((m) => m !== 'GET')) report([...at, 'methods'], 'a live stream is opened with GET')
      if (r.revokes) report([...at, 'revokes'], 'a live stream revokes nothing')
      if (r.cache === 'public') report([...at, 'cache'], 'a live stream is never cached')
    }
    const bodyText = r.body ?? 'stream'
    let body: BodyMode = { kind: 'stream' }
    if (bodyText !== 'stream') {
      const name = /^json\((.+)\)$/.exec(bodyText)?.[1]
      if (name !== undefined && !schemas[name]) report([...at, 'body'], `no schema named "${name}"`)
      const byEmail = (r.policies ?? []).some((p) => policies.get(p)?.key === 'email' || policies.get(p)?.key === 'email+address')
      const fromFile = name !== undefined && f.schemas?.[name] !== undefined
      const normaliseEmail = byEmail || (name !== undefined && !fromFile && NORMALISED_EMAIL.has(name))
      body = name === undefined ? { kind: 'json', normaliseEmail } : { kind: 'json', schema: schemas[name], schemaName: name, normaliseEmail }
    }
    const routePolicies: ResolvedPolicy[] = []
    for (const [j, name] of (r.policies ?? []).entries()) {
      const policy = policies.get(name)
      if (!policy) {
        report([...at, 'policies', j], `no policy named "${name}"`)
        continue
      }
      if ((policy.key === 'email' || policy.key === 'email+address') && body.kind === 'stream') {
        report([...at, 'policies', j], `policy "${name}" counts by email, which needs body: json(...)`)
      }
      if (policy.key === 'user' && access === 'anonymous') report([...at, 'policies', j], `policy "${name}" counts by user, and this route has none`)
      if (policy.key === 'service') report([...at, 'policies', j], `policy "${name}" counts by service: internal routes only`)
      routePolicies.push(policy)
    }
    for (const p of paths) {
      for (const m of r.methods) {
        const key = `${m} ${p.replace(/:[A-Za-z0-9_]+/g, ':')}`
        if (declared.has(key)) report([...at, 'path'], `${m} ${p} is already declared by routes.${declared.get(key)}`)
        declared.set(key, i)
      }
    }
    return {
      methods: r.methods,
      paths,
      upstream: r.upstream,
      access,
      ...(owner ? { ownerParam: owner[1] } : {}),
      ...(issuers ? { issuers } : {}),
      policies: routePolicies,
      body,
      forwardAuthorization: r.forward_authorization ?? false,
      ...(r.revokes ? { revokes: r.revokes } : {}),
      cache: r.cache ?? 'private',
      ...(r.timeout_ms ? { timeoutMs: r.timeout_ms } : {}),
      ...(r.stream ? { stream: r.stream } : {}),
    }
  })

  const internalRoutes: ResolvedInternalRoute[] = (f.internal_routes ?? []).map((r, i) => {
    const at: Path = ['internal_routes', i]
    if (!upstreamNames.has(r.upstream)) report([...at, 'upstream'], `no upstream named "${r.upstream}"`)
    const routePolicies: ResolvedPolicy[] = []
    for (const [j, name] of (r.policies ?? []).entries()) {
      const policy = policies.get(name)
      if (!policy) report([...at, 'policies', j], `no policy named "${name}"`)
      else if (policy.key !== 'address' && policy.key !== 'service') report([...at, 'policies', j], `policy "${name}": internal routes count by address or service`)
      else if (policy.key === 'service' && r.access !== 'service') report([...at, 'policies', j], `policy "${name}" counts by service, and this route has none`)
      else routePolicies.push(policy)
    }
    return { methods: r.methods, paths: Array.isArray(r.path) ? r.path : [r.path], upstream: r.upstream, access: r.access, policies: routePolicies }
  })

  const revocationFeed = f.revocation_feed?.upstream ?? 'auth'
  if (!upstreamNames.has(revocationFeed)) {
    report(f.revocation_feed ? ['revocation_feed', 'upstream'] : [], `no upstream named "${revocationFeed}" for the revocation feed (declare one, or set revocation_feed.upstream)`)
  }
  return {
    file,
    revocationFeed,
    issuers,
    upstreams,
    policies: [...policies.values()],
    routes,
    internalRoutes,
    cors: {
      origins: list(f.cors?.origins),
      methods: f.cors?.methods,
      allowedHeaders: f.cors?.allowed_headers,
      exposedHeaders: f.cors?.exposed_headers,
      maxAgeS: f.cors?.max_age_s,
    },
    listeners: { public: f.listeners?.public, internal: f.listeners?.internal, admin: f.listeners?.admin },
  }
}
