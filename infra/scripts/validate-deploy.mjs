#!/usr/bin/env node
/**
 * Offline checks of Tollgate's deployment files; exits 1 listing every problem found, 0 when all pass.
 *
 *   node infra/scripts/validate-deploy.mjs [root]        (root: the repository root, default: this checkout)
 *
 * 1. docker-compose.yml: dclint (schema + best-practice rules); `docker-compose config -q` (and `docker compose`)
 *    when installed, with dummy values for the required variables and no .env; then Tollgate's invariants: only the
 *    gateway publishes a port (8000), every other service is on internal networks only, every depends_on waits
 *    for service_healthy on a service that has a healthcheck, no secret value is written in the file.
 * 2. Every Dockerfile (infra/docker/**, and any at the root): dockerfilelint, plus the runtime stage runs as a
 *    non-root USER, has a HEALTHCHECK and an exec-form CMD, and EXPOSEs a port number or a declared ARG.
 * 3. infra/k8s: every YAML document validated against its kubernetes-models class (an unknown apiVersion/kind or an
 *    unknown field is an error); every reference resolved among the manifests kustomization.yaml lists (or the
 *    documented Secret tollgate-secrets); the security invariants of the brief (probes, resources, securityContext,
 *    network isolation).
 *
 * Plain Node ESM, so it needs no build step. Tools: dclint, dockerfilelint, kubernetes-models, yaml (infra devDeps).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments, parseDocument } from 'yaml'

const require = createRequire(import.meta.url)
const root = resolve(process.argv[2] ?? fileURLToPath(new URL('../../', import.meta.url)))

/** Tollgate's shape: the one public service and its ports. */
const GATEWAY = 'gateway'
const PUBLIC_PORT = 8000
const INTERNAL_PORT = 8001
/** The gateway's admin listener (/ready, /metrics): the readiness probe and the monitoring namespace only. */
const ADMIN_PORT_DEFAULT = 9000
const ADMIN_HOST_DEFAULT = '127.0.0.1'
/** The service that sends the account purge to the gateway's internal listener. */
const PURGE_SENDER = 'auth-service'
/** Where the gateway's internal listener binds when INTERNAL_HOST is unset (gateway/src/config.ts). */
const INTERNAL_HOST_DEFAULT = '127.0.0.1'
const isLoopback = (host) => /^(127\.|localhost$|::1$|\[::1\]$)/.test(String(host))
/** Services only the gateway may reach. */
const PRIVATE_SERVICES = ['auth-service', 'task-service']
/** The Secret documented in infra/k8s/README.md (created with kubectl, never committed) and its keys. */
const DOCUMENTED_SECRET = 'tollgate-secrets'
const DOCUMENTED_SECRET_KEYS = new Set(['BETTER_AUTH_SECRET', 'DATABASE_URL', 'REDIS_URL', 'INTERNAL_PROOF_SECRET'])
/** Environment names whose values are secrets: never written in a committed file. */
const SECRET_NAME = /SECRET|PASSWORD|PASSWD|PRIVATE_KEY|API_KEY|CREDENTIAL|(^|_)TOKEN$/i

const problems = []
const rel = (file) => relative(root, file) || file
const fail = (file, message) => problems.push(`${rel(file)}: ${message}`)
const note = (message) => process.stdout.write(`  - ${message}\n`)
const section = (title) => process.stdout.write(`\n${title}\n`)

function readYaml(file) {
  const doc = parseDocument(readFileSync(file, 'utf8'), { merge: true, prettyErrors: true })
  if (doc.errors.length > 0) {
    for (const err of doc.errors) fail(file, `YAML: ${err.message.split('\n')[0]}`)
    return undefined
  }
  return doc.toJS()
}

function walk(dir, keep) {
  if (!existsSync(dir)) return []
  const out = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...walk(full, keep))
    else if (keep(entry.name)) out.push(full)
  }
  return out.sort()
}

function onPath(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' })
  return !r.error && r.status === 0
}

// ---------------------------------------------------------------------------------------------------------------
// Dockerfiles (parsed first: compose checks use their ARGs and HEALTHCHECK)
// ---------------------------------------------------------------------------------------------------------------

/** Instructions with line numbers, continuation lines joined, comments dropped. */
function dockerInstructions(text) {
  const out = []
  let buf = ''
  let start = 0
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim()
    if (!buf && (line === '' || line.startsWith('#'))) return
    if (buf && line.startsWith('#')) return
    if (!buf) start = i + 1
    if (line.endsWith('\\')) {
      buf += line.slice(0, -1) + ' '
      return
    }
    buf += line
    const m = /^(\S+)\s*(.*)$/s.exec(buf)
    out.push({ line: start, cmd: m[1].toUpperCase(), args: m[2].trim() })
    buf = ''
  })
  return out
}

/** Stages of a Dockerfile: FROM, declared ARGs (global ones are re-declared per stage), the rest. */
function dockerStages(text) {
  const stages = []
  for (const ins of dockerInstructions(text)) {
    if (ins.cmd === 'ARG' && stages.length === 0) {
      const [name, ...dflt] = ins.args.split('=')
      globalArgs(stages).set(name.trim(), dflt.length > 0 ? dflt.join('=') : undefined)
    } else if (ins.cmd === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?/i.exec(ins.args)
      stages.push({ from: m[1], name: m[2], line: ins.line, args: new Map(), instructions: [] })
    } else if (stages.length > 0) {
      const stage = stages.at(-1)
      if (ins.cmd === 'ARG') {
        const [name, ...dflt] = ins.args.split('=')
        stage.args.set(name.trim(), dflt.length > 0 ? dflt.join('=') : undefined)
      }
      stage.instructions.push(ins)
    }
  }
  return stages
}

/** ARGs declared before the first FROM (usable in FROM lines), kept on the stage list. */
function globalArgs(stages) {
  stages.globalArgs ??= new Map()
  return stages.globalArgs
}

/** `FROM ${ARG}` whose ARG's default names a tagged image: dockerfilelint cannot see the tag, this can. */
function fromTaggedArg(stages, line) {
  const stage = stages.find((s) => s.line === line)
  const m = stage && /^\$\{?(\w+)\}?$/.exec(stage.from)
  const dflt = m && globalArgs(stages).get(m[1])
  return Boolean(dflt && /^[^:@\s]+(:[\w][\w.-]*|@sha256:[0-9a-f]{64})$/.test(dflt.replace(/^["']|["']$/g, '').split('/').at(-1)))
}

const dockerfileInfo = new Map()

/** Base images an air-gapped build makes for itself (not the services' images): linted only. */
const BASE_IMAGE_DIR = 'infra/docker/local-images'

function checkDockerfile(file) {
  const text = readFileSync(file, 'utf8')
  const { run } = require('dockerfilelint')
  // dockerfilelint reads .dockerfilelintrc from the folder given here, as its CLI does with the file's folder.
  const stages = dockerStages(text)
  for (const item of run(dirname(file), text)) {
    if (item.rule === 'missing_tag' && fromTaggedArg(stages, item.line)) continue
    fail(file, `line ${item.line}: dockerfilelint ${item.rule}: ${item.title}`)
  }
  if (stages.length === 0) {
    fail(file, 'no FROM instruction')
    return
  }
  if (rel(file).startsWith(`${BASE_IMAGE_DIR}/`)) return
  const final = stages.at(-1)
  const last = (cmd) => final.instructions.filter((i) => i.cmd === cmd).at(-1)
  const user = last('USER')
  if (!user || /^(root|0)(:|$)/.test(user.args)) {
    fail(file, `final stage (line ${final.line}) must switch to a non-root USER`)
  }
  const health = last('HEALTHCHECK')
  if (!health || /^NONE$/i.test(health.args)) fail(file, 'final stage has no HEALTHCHECK')
  const cmd = last('CMD')
  if (!cmd) fail(file, 'final stage has no CMD')
  else if (!cmd.args.startsWith('[')) fail(file, `line ${cmd.line}: CMD must be exec form (JSON array) so signals reach node`)
  else {
    try {
      JSON.parse(cmd.args)
    } catch {
      fail(file, `line ${cmd.line}: CMD is not a valid JSON array`)
    }
  }
  const exposed = final.instructions.filter((i) => i.cmd === 'EXPOSE')
  if (exposed.length === 0) fail(file, 'final stage EXPOSEs no port')
  for (const ins of exposed) {
    for (const token of ins.args.split(/\s+/)) {
      const m = /^\$\{?(\w+)\}?(\/(tcp|udp))?$/.exec(token)
      if (m) {
        if (!final.args.has(m[1])) fail(file, `line ${ins.line}: EXPOSE ${token} names no ARG of this stage`)
      } else if (!/^\d{1,5}(\/(tcp|udp))?$/.test(token) || Number.parseInt(token, 10) > 65535) {
        fail(file, `line ${ins.line}: EXPOSE ${token} is not a port number`)
      }
    }
  }
  // Build arguments without a default must be given by whoever builds (checked against compose below).
  const required = new Set()
  const declared = new Set(globalArgs(stages).keys())
  for (const s of stages) {
    for (const [name, dflt] of s.args) {
      declared.add(name)
      if (dflt === undefined) required.add(name)
    }
  }
  dockerfileInfo.set(resolve(file), { declared, required, healthcheck: Boolean(health && !/^NONE$/i.test(health.args)) })
}

// ---------------------------------------------------------------------------------------------------------------
// docker-compose.yml
// ---------------------------------------------------------------------------------------------------------------

/** Replace ${...} (which may hold ':' or '-') by a marker so port strings can be split. */
const maskVars = (s) => s.replace(/\$\{[^}]*\}/g, 'VAR')

/** Parse one interpolation `${NAME...}`: the name, the operator and the default/message. */
function interpolation(value) {
  const m = /^\$\{(\w+)(?:(:?[-?+])(.*))?\}$/s.exec(value)
  return m ? { name: m[1], op: m[2] ?? '', rest: m[3] ?? '' } : undefined
}

/** A secret value in compose must come from the environment: `${X:?msg}`, `${X}` or an empty default. */
function secretFromEnv(value) {
  const i = interpolation(String(value))
  if (!i) return false
  return i.op === '' || i.op.endsWith('?') || (i.op.endsWith('-') && i.rest === '')
}

function checkSecretValue(file, where, name, value) {
  if (value === null || value === undefined) return // `- NAME` passes the host's value through
  const v = String(value)
  if (SECRET_NAME.test(name) && !secretFromEnv(v)) {
    fail(file, `${where}: ${name} must come from .env/the environment (\${${name}:?...}), not be written here`)
  }
  // Credentials inside URLs: scheme://user:password@host
  for (const m of v.matchAll(/[a-z][a-z0-9+.-]*:\/\/[^:@/\s]*:([^@\s]+)@/gi)) {
    if (!secretFromEnv(m[1])) fail(file, `${where}: ${name} has a password written in its URL; interpolate it (\${VAR:?...})`)
  }
}

function entries(listOrMap) {
  if (!listOrMap) return []
  if (Array.isArray(listOrMap)) {
    return listOrMap.map((item) => {
      const s = String(item)
      const eq = s.indexOf('=')
      return eq === -1 ? [s, null] : [s.slice(0, eq), s.slice(eq + 1)]
    })
  }
  return Object.entries(listOrMap)
}

function runComposeConfig(label, cmd, baseArgs, composeFile, text) {
  // Dummy values for every variable the file requires (${X:?...} / ${X?...}), and an empty env file instead of .env.
  const requiredVars = [...new Set([...text.matchAll(/\$\{(\w+):?\?/g)].map((m) => m[1]))]
  const env = { ...process.env }
  for (const name of requiredVars) env[name] = `validate-deploy-dummy-${name.toLowerCase()}-0123456789abcdef`
  const dir = mkdtempSync(join(tmpdir(), 'validate-deploy-'))
  const emptyEnv = join(dir, 'empty.env')
  writeFileSync(emptyEnv, '')
  try {
    const args = [...baseArgs, '--env-file', emptyEnv, '-f', composeFile, 'config', '-q']
    const ok = spawnSync(cmd, args, { cwd: root, env, encoding: 'utf8' })
    if (ok.status !== 0) {
      fail(composeFile, `${label} config -q failed: ${(ok.stderr || ok.stdout || String(ok.error)).trim()}`)
    } else {
      note(`${label} config -q: ok (dummy ${requiredVars.join(', ') || 'nothing'}, no .env)`)
    }
    if (requiredVars.includes('BETTER_AUTH_SECRET')) {
      delete env.BETTER_AUTH_SECRET
      const refused = spawnSync(cmd, args, { cwd: root, env, encoding: 'utf8' })
      if (refused.status === 0) fail(composeFile, `${label} config accepted the file without BETTER_AUTH_SECRET`)
      else note(`${label} config refuses to run without BETTER_AUTH_SECRET: ok`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function checkCompose(file) {
  if (!existsSync(file)) {
    fail(file, 'missing')
    return
  }
  const text = readFileSync(file, 'utf8')

  // dclint, every rule at its default level; in-file `# dclint disable` comments are honoured.
  const { DCLinter } = await import('dclint')
  const linter = new DCLinter({ rules: {}, quiet: false, debug: false, exclude: [] })
  const results = linter.lintFiles([file], false)
  let count = 0
  for (const r of results) {
    for (const m of r.messages) {
      count++
      fail(file, `line ${m.line}: dclint ${m.rule} (${m.type}): ${m.message}`)
    }
  }
  note(`dclint: ${count === 0 ? 'no problems' : `${count} problem(s)`}`)

  if (onPath('docker-compose', ['version'])) runComposeConfig('docker-compose', 'docker-compose', [], file, text)
  else note('docker-compose not on PATH: skipped `docker-compose config -q` (dclint validated the schema)')
  if (onPath('docker', ['compose', 'version'])) runComposeConfig('docker compose', 'docker', ['compose'], file, text)

  const compose = readYaml(file)
  if (!compose) return
  const services = compose.services ?? {}
  const networks = compose.networks ?? {}
  const internal = new Set(Object.entries(networks).filter(([, n]) => n?.internal === true).map(([k]) => k))
  if (!services[GATEWAY]) fail(file, `no "${GATEWAY}" service`)

  for (const [name, svc] of Object.entries(services)) {
    const where = `services.${name}`
    // Ports: only the gateway publishes, and only its public port.
    if (svc.ports !== undefined && name !== GATEWAY) {
      fail(file, `${where}: publishes ports; only the ${GATEWAY} may (use networks, not ports)`)
    }
    if (name === GATEWAY) {
      const ports = svc.ports ?? []
      if (ports.length === 0) fail(file, `${where}: publishes no port; it must publish ${PUBLIC_PORT}`)
      for (const p of ports) {
        const target = typeof p === 'object' ? String(p.target) : maskVars(String(p)).split('/')[0].split(':').at(-1)
        if (target !== String(PUBLIC_PORT)) {
          fail(file, `${where}: publishes container port ${target}; only ${PUBLIC_PORT} may be published (${INTERNAL_PORT} stays internal)`)
        }
      }
    }
    if (svc.network_mode !== undefined) fail(file, `${where}: network_mode bypasses the internal network`)
    // Networks: no `networks` key means the non-internal `default` network.
    const joined = svc.networks === undefined ? ['default'] : Array.isArray(svc.networks) ? svc.networks : Object.keys(svc.networks)
    for (const n of joined) {
      if (n !== 'default' && !(n in networks)) fail(file, `${where}: network "${n}" is not declared under networks`)
    }
    if (name === GATEWAY) {
      if (!joined.some((n) => internal.has(n))) fail(file, `${where}: must join an internal network to reach the services`)
      if (!joined.some((n) => !internal.has(n))) fail(file, `${where}: must join a non-internal network to publish ${PUBLIC_PORT}`)
    } else {
      for (const n of joined.filter((n) => !internal.has(n))) {
        fail(file, `${where}: is on network "${n}", which is not internal: true`)
      }
    }
    // Start order waits for health, and the dependency has a healthcheck to wait for.
    if (svc.depends_on !== undefined) {
      if (Array.isArray(svc.depends_on)) {
        fail(file, `${where}.depends_on: use the long form with condition: service_healthy`)
      } else {
        for (const [dep, cond] of Object.entries(svc.depends_on)) {
          if (cond?.condition !== 'service_healthy') {
            fail(file, `${where}.depends_on.${dep}: condition must be service_healthy (is ${cond?.condition})`)
          }
          const target = services[dep]
          if (!target) fail(file, `${where}.depends_on.${dep}: no such service`)
          else if (!hasHealthcheck(file, target)) fail(file, `${where}.depends_on.${dep}: ${dep} has no healthcheck to wait for`)
        }
      }
    }
    // Signals and restarts (docs/security.md S-49).
    if (svc.init !== true) fail(file, `${where}: init: true is required (an init as PID 1 forwards SIGTERM)`)
    if (svc.restart === undefined) fail(file, `${where}: no restart policy`)
    if (svc.stop_grace_period === undefined) fail(file, `${where}: no stop_grace_period`)
    // No secret values in the file.
    for (const [k, v] of entries(svc.environment)) checkSecretValue(file, `${where}.environment`, k, v)
    if (svc.build && typeof svc.build === 'object') {
      for (const [k, v] of entries(svc.build.args)) checkSecretValue(file, `${where}.build.args`, k, v)
      checkBuild(file, where, svc)
    }
  }
  // BETTER_AUTH_SECRET must be required, so compose refuses to start without it.
  if (/BETTER_AUTH_SECRET/.test(text) && !/\$\{BETTER_AUTH_SECRET:\?/.test(text)) {
    fail(file, 'BETTER_AUTH_SECRET must be interpolated as ${BETTER_AUTH_SECRET:?message} so compose refuses to start without it')
  }
  checkComposeInternalPath(file, services)
}

/**
 * The account purge: auth-service's outbox calls GATEWAY_INTERNAL_URL, which must be the gateway's internal
 * listener, bound to an address other containers reach (its default, loopback, is the container's own).
 */
function checkComposeInternalPath(file, services) {
  const gateway = services[GATEWAY]
  const sender = services[PURGE_SENDER]
  if (!gateway || !sender) return
  const gwEnv = Object.fromEntries(entries(gateway.environment))
  const host = gwEnv.INTERNAL_HOST ?? INTERNAL_HOST_DEFAULT
  if (isLoopback(host)) {
    fail(file, `services.${GATEWAY}.environment: INTERNAL_HOST is ${gwEnv.INTERNAL_HOST === undefined ? `unset (default ${INTERNAL_HOST_DEFAULT})` : host}, so the internal listener is unreachable from other containers; set INTERNAL_HOST: 0.0.0.0`)
  }
  const port = String(gwEnv.INTERNAL_PORT ?? INTERNAL_PORT)
  const url = Object.fromEntries(entries(sender.environment)).GATEWAY_INTERNAL_URL
  const target = parseUrl(url)
  const aliases = new Set([GATEWAY, gateway.container_name, gateway.hostname].filter(Boolean))
  for (const n of Object.values(typeof gateway.networks === 'object' && !Array.isArray(gateway.networks) ? gateway.networks : {})) {
    for (const a of n?.aliases ?? []) aliases.add(a)
  }
  if (!target) {
    fail(file, `services.${PURGE_SENDER}.environment: GATEWAY_INTERNAL_URL is ${url === undefined ? 'unset (default http://127.0.0.1:8001, the container itself)' : 'not an http URL'}; set it to http://${GATEWAY}:${port}`)
  } else if (!aliases.has(target.hostname) || target.port !== port) {
    fail(file, `services.${PURGE_SENDER}.environment: GATEWAY_INTERNAL_URL ${url} is not the ${GATEWAY}'s internal listener (http://${GATEWAY}:${port})`)
  }
}

function parseUrl(value) {
  if (typeof value !== 'string' || value.includes('${')) return undefined
  try {
    const u = new URL(value)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined
    return { hostname: u.hostname, port: u.port || (u.protocol === 'https:' ? '443' : '80') }
  } catch {
    return undefined
  }
}

function composeDockerfile(file, svc) {
  const b = typeof svc.build === 'string' ? { context: svc.build } : svc.build
  return resolve(dirname(file), b.context ?? '.', b.dockerfile ?? 'Dockerfile')
}

function hasHealthcheck(file, svc) {
  if (svc.healthcheck) return svc.healthcheck.disable !== true && svc.healthcheck.test !== undefined
  if (svc.build) return dockerfileInfo.get(composeDockerfile(file, svc))?.healthcheck === true
  return false
}

function checkBuild(file, where, svc) {
  const dockerfile = composeDockerfile(file, svc)
  if (!existsSync(dockerfile)) {
    fail(file, `${where}.build: ${rel(dockerfile)} does not exist`)
    return
  }
  const info = dockerfileInfo.get(dockerfile)
  if (!info) return
  const args = Object.fromEntries(entries(svc.build.args))
  for (const name of Object.keys(args)) {
    if (!info.declared.has(name)) fail(file, `${where}.build.args.${name}: ${rel(dockerfile)} declares no such ARG`)
  }
  for (const name of info.required) {
    if (!(name in args)) fail(file, `${where}.build.args: ${rel(dockerfile)} needs ${name}`)
  }
  // The image listens on its PORT build argument; the container's PORT must agree with it.
  const env = Object.fromEntries(entries(svc.environment))
  if ('PORT' in args && 'PORT' in env && String(args.PORT) !== String(env.PORT)) {
    fail(file, `${where}: build arg PORT=${args.PORT} but environment PORT=${env.PORT}`)
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Kubernetes manifests
// ---------------------------------------------------------------------------------------------------------------

const kmDir = dirname(require.resolve('kubernetes-models/package.json'))

/** Strict field check: kubernetes-models validates types and required fields but ignores unknown keys. */
const dtsCache = new Map()
function parseDts(file) {
  if (dtsCache.has(file)) return dtsCache.get(file)
  let result
  if (existsSync(file)) {
    const text = readFileSync(file, 'utf8')
    const imports = new Map()
    for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) imports.set(m[1], m[2])
    const body = /^export interface (\w+)[^{\n]*\{\n([\s\S]*?)^\}/m.exec(text)
    if (body) {
      const props = new Map()
      const lines = body[2].split('\n')
      for (let i = 0; i < lines.length; i++) {
        const m = /^ {4}"([^"]+)"\??: (.*);?$/.exec(lines[i])
        if (!m) continue
        let type = m[2].replace(/;$/, '')
        if (type === '{') {
          const elem = /^\s+\[key: string\]: (.*);$/.exec(lines[i + 1] ?? '')
          type = { map: elem ? elem[1] : 'unknown' }
        } else {
          const arr = /^Array<(.*)>$/.exec(type)
          if (arr) type = { array: arr[1] }
        }
        props.set(m[1], type)
      }
      result = { name: body[1].replace(/^I/, ''), props, imports, dir: dirname(file) }
    }
  }
  dtsCache.set(file, result)
  return result
}

function resolveType(owner, typeName) {
  const spec = typeof typeName === 'string' ? owner.imports.get(typeName) : undefined
  if (!spec) return undefined
  if (spec.startsWith('.')) return parseDts(resolve(owner.dir, `${spec}.d.ts`))
  // Package imports (@kubernetes-models/apimachinery/...) live beside kubernetes-models.
  for (let d = kmDir; d !== dirname(d); d = dirname(d)) {
    const candidate = join(d, 'node_modules', `${spec}.d.ts`)
    if (existsSync(candidate)) return parseDts(candidate)
  }
  return undefined
}

function checkFields(file, label, value, type, path) {
  if (!type || value === null || typeof value !== 'object') return
  if (Array.isArray(value)) return
  for (const [key, child] of Object.entries(value)) {
    if (!type.props.has(key)) {
      fail(file, `${label}: unknown field ${path}.${key} (not in ${type.name})`)
      continue
    }
    const t = type.props.get(key)
    if (typeof t === 'string') checkFields(file, label, child, resolveType(type, t), `${path}.${key}`)
    else if (t.array && Array.isArray(child)) {
      const elem = resolveType(type, t.array)
      child.forEach((c, i) => checkFields(file, label, c, elem, `${path}.${key}[${i}]`))
    } else if (t.map && child && typeof child === 'object') {
      const elem = resolveType(type, t.map)
      for (const [k, c] of Object.entries(child)) checkFields(file, label, c, elem, `${path}.${key}.${k}`)
    }
  }
}

async function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return undefined
  if (!/^[a-z0-9.]+(\/[a-z0-9]+)?$/.test(apiVersion) || !/^[A-Z]\w*$/.test(kind)) return undefined
  try {
    const mod = await import(`kubernetes-models/${apiVersion}`)
    return typeof mod[kind] === 'function' ? mod[kind] : undefined
  } catch {
    return undefined
  }
}

function matches(selector, labels = {}) {
  if (!selector) return false
  const isLabelSelector = 'matchLabels' in selector || 'matchExpressions' in selector
  const matchLabels = isLabelSelector ? selector.matchLabels ?? {} : selector
  for (const [k, v] of Object.entries(matchLabels)) if (labels[k] !== v) return false
  for (const e of (isLabelSelector && selector.matchExpressions) || []) {
    const has = e.key in labels
    const ok =
      e.operator === 'In' ? has && e.values.includes(labels[e.key])
      : e.operator === 'NotIn' ? !has || !e.values.includes(labels[e.key])
      : e.operator === 'Exists' ? has
      : e.operator === 'DoesNotExist' ? !has
      : false
    if (!ok) return false
  }
  return true
}

const isGatewayOnly = (ds) => ds.length > 0 && ds.every((d) => d.doc.metadata.name === GATEWAY)
const isEmptySelector = (s) => s && Object.keys(s.matchLabels ?? {}).length === 0 && (s.matchExpressions ?? []).length === 0
const podLabels = (d) => d.doc.spec?.template?.metadata?.labels ?? {}
const containersOf = (d) => d.doc.spec?.template?.spec?.containers ?? []
const containerPorts = (d) => containersOf(d).flatMap((c) => c.ports ?? [])
/** Does a list of container ports include `port` (a number, or a port name)? */
const portIn = (ports, port) =>
  ports.some((p) => (typeof port === 'number' ? p.containerPort === port : p.name === port || String(p.containerPort) === port))
const hasPort = (d, port) => portIn(containerPorts(d), port)

async function checkK8s(dir) {
  if (!existsSync(dir)) {
    fail(dir, 'missing')
    return
  }
  const yamlFiles = walk(dir, (n) => /\.ya?ml$/.test(n))
  const kustFile = yamlFiles.find((f) => /^kustomization\.ya?ml$/.test(basename(f)) && dirname(f) === dir)
  let listed
  let kustNamespace
  if (!kustFile) {
    fail(dir, 'no kustomization.yaml listing the resources')
  } else {
    const kust = readYaml(kustFile)
    if (kust) {
      const known = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'labels', 'commonLabels', 'commonAnnotations', 'images', 'namePrefix', 'nameSuffix', 'patches', 'configMapGenerator', 'secretGenerator', 'generatorOptions', 'replicas', 'components'])
      for (const k of Object.keys(kust)) if (!known.has(k)) fail(kustFile, `unknown field "${k}"`)
      if (kust.kind !== undefined && kust.kind !== 'Kustomization') fail(kustFile, `kind must be Kustomization`)
      if (kust.secretGenerator) fail(kustFile, 'secretGenerator would put secret values in the repository; create tollgate-secrets with kubectl')
      kustNamespace = kust.namespace
      listed = new Set()
      for (const r of kust.resources ?? []) {
        const full = resolve(dir, String(r))
        if (!existsSync(full) || !statSync(full).isFile()) fail(kustFile, `resource "${r}" is not a file in ${rel(dir)}`)
        else if (/\.example\.ya?ml$/.test(r)) fail(kustFile, `resource "${r}" is an example and must not be applied`)
        else listed.add(full)
      }
      if (listed.size === 0) fail(kustFile, 'lists no resources')
      for (const f of yamlFiles) {
        if (f !== kustFile && !/\.example\.ya?ml$/.test(f) && !listed.has(f)) {
          fail(f, 'not listed in kustomization.yaml, so `kubectl apply -k` would skip it (name it *.example.yaml if it is an example)')
        }
      }
    }
  }

  // Every document of every YAML file, validated; the applied set is what the kustomization lists.
  const applied = []
  let docCount = 0
  for (const f of yamlFiles) {
    if (f === kustFile) continue
    const docs = parseAllDocuments(readFileSync(f, 'utf8'), { prettyErrors: true })
    for (const [i, d] of docs.entries()) {
      if (d.errors.length > 0) {
        for (const err of d.errors) fail(f, `document ${i + 1}: YAML: ${err.message.split('\n')[0]}`)
        continue
      }
      const doc = d.toJS()
      if (doc === null || doc === undefined) continue
      docCount++
      const label = `${doc.kind ?? '?'} ${doc.metadata?.name ?? `(document ${i + 1})`}`
      const Model = await modelFor(doc.apiVersion, doc.kind)
      if (!Model) {
        fail(f, `${label}: unknown apiVersion/kind "${doc.apiVersion}" / "${doc.kind}" (not a kubernetes-models class)`)
        continue
      }
      try {
        new Model(doc).validate()
      } catch (err) {
        fail(f, `${label}: ${err.message}`)
      }
      const group = doc.apiVersion.includes('/') ? doc.apiVersion : `v1`
      checkFields(f, label, doc, parseDts(join(kmDir, group, `${doc.kind}.d.ts`)), doc.kind)
      if (!doc.metadata?.name) fail(f, `${label}: metadata.name is required`)
      const entry = { file: f, doc, label }
      if (doc.kind === 'Secret') checkSecretDoc(f, label, doc, listed === undefined || listed.has(f))
      if (listed === undefined ? !/\.example\.ya?ml$/.test(f) : listed.has(f)) applied.push(entry)
    }
  }
  note(`${docCount} manifest document(s) under ${rel(dir)}, ${applied.length} applied by the kustomization`)
  checkReferences(applied, kustNamespace)
}

function checkSecretDoc(file, label, doc, isApplied) {
  if (isApplied) {
    fail(file, `${label}: a Secret is applied from the repository; create ${DOCUMENTED_SECRET} with kubectl (infra/k8s/README.md)`)
    return
  }
  // Examples may only hold placeholders.
  for (const [k, v] of Object.entries({ ...(doc.stringData ?? {}), ...(doc.data ?? {}) })) {
    if (!/change[-_]?me|example|placeholder|<[^>]+>/i.test(String(v))) fail(file, `${label}: ${k} does not look like a placeholder`)
  }
}

function checkReferences(applied, kustNamespace) {
  const byKind = (kind) => applied.filter((e) => e.doc.kind === kind)
  const named = (kind, name) => byKind(kind).find((e) => e.doc.metadata?.name === name)
  const deployments = byKind('Deployment')
  const namespaces = byKind('Namespace').map((e) => e.doc.metadata?.name)
  const namespace = kustNamespace ?? namespaces[0]
  if (namespace && !namespaces.includes(namespace)) fail(applied[0]?.file ?? root, `namespace "${namespace}" is not created by any manifest`)

  const seen = new Set()
  for (const { file, doc, label } of applied) {
    const key = `${doc.kind}/${doc.metadata?.name}`
    if (seen.has(key)) fail(file, `${label}: defined twice`)
    seen.add(key)
    if (doc.kind !== 'Namespace' && doc.metadata?.namespace && namespace && doc.metadata.namespace !== namespace) {
      fail(file, `${label}: namespace "${doc.metadata.namespace}" differs from "${namespace}"`)
    }
  }

  const configMapKeys = (name) => {
    const cm = named('ConfigMap', name)
    return cm ? new Set(Object.keys({ ...(cm.doc.data ?? {}), ...(cm.doc.binaryData ?? {}) })) : undefined
  }
  const secretKeys = (name) => {
    if (name === DOCUMENTED_SECRET) return DOCUMENTED_SECRET_KEYS
    const s = named('Secret', name)
    return s ? new Set(Object.keys({ ...(s.doc.data ?? {}), ...(s.doc.stringData ?? {}) })) : undefined
  }

  for (const d of deployments) {
    const { file, doc, label } = d
    const spec = doc.spec ?? {}
    if (!matches(spec.selector, podLabels(d))) fail(file, `${label}: spec.selector does not match the pod template's labels`)
    const pod = spec.template?.spec ?? {}
    const podSc = pod.securityContext ?? {}
    const volumes = pod.volumes ?? []
    for (const v of volumes) {
      if (v.configMap && !v.configMap.optional && !configMapKeys(v.configMap.name)) fail(file, `${label}: volume ${v.name}: no ConfigMap "${v.configMap.name}"`)
      if (v.secret && !v.secret.optional && !secretKeys(v.secret.secretName)) fail(file, `${label}: volume ${v.name}: no Secret "${v.secret.secretName}"`)
    }
    for (const c of pod.containers ?? []) {
      const where = `${label}: container ${c.name}`
      // References to ConfigMaps and Secrets.
      for (const ef of c.envFrom ?? []) {
        if (ef.configMapRef && !ef.configMapRef.optional && !configMapKeys(ef.configMapRef.name)) fail(file, `${where}: envFrom configMapRef "${ef.configMapRef.name}" does not exist`)
        if (ef.secretRef && !ef.secretRef.optional && !secretKeys(ef.secretRef.name)) fail(file, `${where}: envFrom secretRef "${ef.secretRef.name}" is neither a manifest nor ${DOCUMENTED_SECRET}`)
      }
      for (const e of c.env ?? []) {
        const cmk = e.valueFrom?.configMapKeyRef
        if (cmk && !cmk.optional) {
          const keys = configMapKeys(cmk.name)
          if (!keys) fail(file, `${where}: env ${e.name}: ConfigMap "${cmk.name}" does not exist`)
          else if (!keys.has(cmk.key)) fail(file, `${where}: env ${e.name}: ConfigMap "${cmk.name}" has no key ${cmk.key}`)
        }
        const sk = e.valueFrom?.secretKeyRef
        if (sk) {
          const keys = secretKeys(sk.name)
          if (!keys) fail(file, `${where}: env ${e.name}: Secret "${sk.name}" is neither a manifest nor ${DOCUMENTED_SECRET}`)
          else if (!keys.has(sk.key)) fail(file, `${where}: env ${e.name}: Secret "${sk.name}" has no documented key ${sk.key}`)
        }
        if (e.value !== undefined && SECRET_NAME.test(e.name)) fail(file, `${where}: env ${e.name} is a secret written in the manifest; use secretKeyRef`)
      }
      // Probes: readiness on /ready, liveness on /health, on a port the container declares.
      const probe = (name, path) => {
        const p = c[name]
        if (!p) return fail(file, `${where}: no ${name}`)
        if (p.httpGet?.path !== path) fail(file, `${where}: ${name} must be an httpGet on ${path}`)
        if (p.httpGet && !portIn(c.ports ?? [], p.httpGet.port)) {
          fail(file, `${where}: ${name} port ${p.httpGet.port} is not a port of the container`)
        }
      }
      probe('readinessProbe', '/ready')
      probe('livenessProbe', '/health')
      // Resources.
      for (const kind of ['requests', 'limits']) {
        for (const r of ['cpu', 'memory']) {
          if (c.resources?.[kind]?.[r] === undefined) fail(file, `${where}: resources.${kind}.${r} is not set`)
        }
      }
      // Security context.
      const sc = c.securityContext ?? {}
      if ((sc.runAsNonRoot ?? podSc.runAsNonRoot) !== true) fail(file, `${where}: runAsNonRoot must be true`)
      if (sc.readOnlyRootFilesystem !== true) fail(file, `${where}: readOnlyRootFilesystem must be true`)
      if (sc.allowPrivilegeEscalation !== false) fail(file, `${where}: allowPrivilegeEscalation must be false`)
      if (!(sc.capabilities?.drop ?? []).includes('ALL')) fail(file, `${where}: capabilities.drop must include ALL`)
      if (sc.privileged === true) fail(file, `${where}: privileged`)
      for (const m of c.volumeMounts ?? []) {
        if (!volumes.some((v) => v.name === m.name)) fail(file, `${where}: volumeMount ${m.name} has no volume`)
      }
    }
  }

  const selected = (selector) => deployments.filter((d) => matches(selector, podLabels(d)))

  // Services: select some Deployment's pods, on ports those pods have. Only the gateway's public port may leave.
  for (const { file, doc, label } of byKind('Service')) {
    const spec = doc.spec ?? {}
    const targets = selected(spec.selector)
    if (!spec.selector || targets.length === 0) {
      fail(file, `${label}: selector matches no Deployment's pod labels`)
      continue
    }
    for (const p of spec.ports ?? []) {
      const tp = p.targetPort ?? p.port
      if (!targets.some((d) => hasPort(d, tp))) fail(file, `${label}: targetPort ${tp} is not a container port of ${targets.map((d) => d.doc.metadata.name).join(', ')}`)
    }
    const type = spec.type ?? 'ClusterIP'
    if (type !== 'ClusterIP') {
      const onlyPublic = (spec.ports ?? []).every((p) => targets.every((d) => resolvePort(d, p.targetPort ?? p.port) === PUBLIC_PORT))
      if (!isGatewayOnly(targets) || !onlyPublic) fail(file, `${label}: type ${type} exposes something other than the ${GATEWAY}'s port ${PUBLIC_PORT}`)
    }
  }

  // Ingress: backends are Services that exist, on their ports, leading to the gateway's public port only.
  for (const { file, doc, label } of byKind('Ingress')) {
    const backends = [doc.spec?.defaultBackend, ...(doc.spec?.rules ?? []).flatMap((r) => (r.http?.paths ?? []).map((p) => p.backend))].filter(Boolean)
    for (const b of backends) {
      if (!b.service) continue
      const svc = named('Service', b.service.name)
      if (!svc) {
        fail(file, `${label}: backend Service "${b.service.name}" does not exist`)
        continue
      }
      const port = (svc.doc.spec?.ports ?? []).find((p) => (b.service.port?.name ? p.name === b.service.port.name : p.port === b.service.port?.number))
      if (!port) {
        fail(file, `${label}: Service "${b.service.name}" has no port ${b.service.port?.name ?? b.service.port?.number}`)
        continue
      }
      const targets = selected(svc.doc.spec?.selector)
      if (!isGatewayOnly(targets) || !targets.every((d) => resolvePort(d, port.targetPort ?? port.port) === PUBLIC_PORT)) {
        fail(file, `${label}: routes to something other than the ${GATEWAY}'s public port ${PUBLIC_PORT}`)
      }
      // The Service in front of the Ingress carries the public port only: never the admin or internal listener.
      for (const other of (svc.doc.spec?.ports ?? []).filter((p) => !targets.every((d) => resolvePort(d, p.targetPort ?? p.port) === PUBLIC_PORT))) {
        fail(svc.file, `${svc.label}: the Ingress routes to this Service, which also carries port ${other.name ?? other.port} (only the ${GATEWAY}'s public port ${PUBLIC_PORT} may sit behind an Ingress)`)
      }
    }
  }

  // HPA: targets a Deployment that exists, that has the resource requests its metrics need.
  for (const { file, doc, label } of byKind('HorizontalPodAutoscaler')) {
    const ref = doc.spec?.scaleTargetRef ?? {}
    const target = ref.kind === 'Deployment' && ref.apiVersion === 'apps/v1' ? named('Deployment', ref.name) : undefined
    if (!target) {
      fail(file, `${label}: scaleTargetRef ${ref.apiVersion}/${ref.kind} "${ref.name}" is not a Deployment among the manifests`)
      continue
    }
    if (target.doc.spec?.replicas !== undefined) fail(target.file, `${target.label}: spec.replicas is set but ${label} owns the replica count; remove it`)
    for (const m of doc.spec?.metrics ?? []) {
      const res = m.type === 'Resource' ? m.resource?.name : undefined
      if (res && !containersOf(target).every((c) => c.resources?.requests?.[res] !== undefined)) {
        fail(file, `${label}: scales on ${res} but ${target.label} does not request ${res}`)
      }
    }
  }

  for (const { file, doc, label } of byKind('PodDisruptionBudget')) {
    if (selected(doc.spec?.selector).length === 0) fail(file, `${label}: selector matches no Deployment`)
  }

  const gw = deployments.find((d) => d.doc.metadata.name === GATEWAY)
  const gwMain = gw && (containersOf(gw).find((c) => c.name === GATEWAY) ?? containersOf(gw)[0])
  const adminPort = Number((gwMain ? containerEnv(named, gwMain) : {}).ADMIN_PORT ?? ADMIN_PORT_DEFAULT)
  gatewayAdminPort = () => adminPort
  checkNetworkPolicies(byKind('NetworkPolicy'), deployments, selected)
  checkK8sWiring({ byKind, named, deployments, selected, namespace })
}

/** A container's environment as the kubelet builds it from envFrom ConfigMaps and env values (secrets: unknown). */
function containerEnv(named, container) {
  const env = {}
  for (const ef of container.envFrom ?? []) {
    const cm = ef.configMapRef && named('ConfigMap', ef.configMapRef.name)
    if (cm) Object.assign(env, cm.doc.data ?? {})
  }
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = String(e.value)
    else if (e.valueFrom?.configMapKeyRef) env[e.name] = named('ConfigMap', e.valueFrom.configMapKeyRef.name)?.doc.data?.[e.valueFrom.configMapKeyRef.key]
    else if (e.valueFrom) env[e.name] = undefined
  }
  return env
}

/**
 * What only a running cluster would show: the account purge reaches the gateway's internal listener through a
 * Service, and the gateway trusts the Ingress hop's X-Forwarded-For (else every client shares one address and
 * one sign-in limit).
 */
function checkK8sWiring({ byKind, named, deployments, selected, namespace }) {
  const gateway = deployments.find((d) => d.doc.metadata.name === GATEWAY)
  const sender = deployments.find((d) => d.doc.metadata.name === PURGE_SENDER)
  if (!gateway) return
  const gwContainer = containersOf(gateway).find((c) => c.name === GATEWAY) ?? containersOf(gateway)[0]
  const gwEnv = gwContainer ? containerEnv(named, gwContainer) : {}
  const where = `${gateway.label}: container ${gwContainer?.name}`
  const host = gwEnv.INTERNAL_HOST ?? INTERNAL_HOST_DEFAULT
  if (isLoopback(host)) {
    fail(gateway.file, `${where}: INTERNAL_HOST is ${gwEnv.INTERNAL_HOST === undefined ? `unset (default ${INTERNAL_HOST_DEFAULT})` : host}, so the internal listener is unreachable from other pods; set INTERNAL_HOST: 0.0.0.0 (ConfigMap)`)
  }
  const internalPort = Number(gwEnv.INTERNAL_PORT ?? INTERNAL_PORT)
  if (!hasPort(gateway, internalPort)) fail(gateway.file, `${where}: INTERNAL_PORT ${internalPort} is not a container port`)

  // The admin listener: /ready (the readiness probe) and /metrics live there only; the public port answers them 404.
  const adminPort = Number(gwEnv.ADMIN_PORT ?? ADMIN_PORT_DEFAULT)
  if (!hasPort(gateway, adminPort)) fail(gateway.file, `${where}: ADMIN_PORT ${adminPort} is not a container port`)
  const probePort = gwContainer?.readinessProbe?.httpGet?.port
  if (probePort !== undefined && resolvePort(gateway, probePort) !== adminPort) {
    fail(gateway.file, `${where}: readinessProbe must use the admin port ${adminPort} (GET /ready is 404 on the public listener)`)
  }
  const adminHost = gwEnv.ADMIN_HOST ?? ADMIN_HOST_DEFAULT
  if (isLoopback(adminHost)) {
    fail(gateway.file, `${where}: ADMIN_HOST is ${gwEnv.ADMIN_HOST === undefined ? `unset (default ${ADMIN_HOST_DEFAULT})` : adminHost}, so neither the kubelet's readiness probe nor Prometheus reaches the admin listener; set ADMIN_HOST: 0.0.0.0 (ConfigMap)`)
  }
  // Scrape annotations: on a port of the pod; the gateway's on its admin port.
  for (const d of deployments) {
    const a = d.doc.spec?.template?.metadata?.annotations ?? {}
    if (a['prometheus.io/scrape'] !== 'true') {
      fail(d.file, `${d.label}: the pod template has no prometheus.io/scrape: "true" annotation`)
      continue
    }
    const port = Number(a['prometheus.io/port'])
    if (!hasPort(d, port)) fail(d.file, `${d.label}: prometheus.io/port ${a['prometheus.io/port']} is not a container port`)
    else if (d === gateway && port !== adminPort) fail(d.file, `${d.label}: prometheus.io/port must be the admin port ${adminPort} (/metrics is not on ${port})`)
  }

  if (sender) {
    const c = containersOf(sender)[0]
    const url = c ? containerEnv(named, c).GATEWAY_INTERNAL_URL : undefined
    const target = parseUrl(url)
    const at = `${sender.label}: container ${c?.name}`
    if (!target) {
      fail(sender.file, `${at}: GATEWAY_INTERNAL_URL is ${url === undefined ? 'unset (default http://127.0.0.1:8001, the pod itself)' : 'not an http URL'}; point it at the gateway-internal Service`)
    } else {
      // "name", "name.namespace", "name.namespace.svc[.cluster.local]"
      const [svcName, svcNs] = target.hostname.split('.')
      const svc = named('Service', svcName)
      const port = svc && (svc.doc.spec?.ports ?? []).find((p) => String(p.port) === target.port)
      const reaches = svc && port && (!svcNs || svcNs === namespace) &&
        isGatewayOnly(selected(svc.doc.spec?.selector)) && resolvePort(gateway, port.targetPort ?? port.port) === internalPort
      if (!reaches) fail(sender.file, `${at}: GATEWAY_INTERNAL_URL ${url} does not reach the ${GATEWAY}'s internal port ${internalPort} through a Service`)
    }
  }

  const ingressToGateway = byKind('Ingress').some(({ doc }) =>
    [doc.spec?.defaultBackend, ...(doc.spec?.rules ?? []).flatMap((r) => (r.http?.paths ?? []).map((p) => p.backend))]
      .some((b) => b?.service && isGatewayOnly(selected(named('Service', b.service.name)?.doc.spec?.selector))),
  )
  const trust = String(gwEnv.TRUST_PROXY ?? '').trim()
  if (ingressToGateway && (trust === '' || trust === 'false')) {
    fail(gateway.file, `${where}: TRUST_PROXY is unset but an Ingress routes to the ${GATEWAY}: every client would share the ingress controller's address (and the per-address limits); set it (ConfigMap) to the hops in front`)
  }
}

/** The gateway's admin port: ADMIN_PORT as the pod sets it (its ConfigMap or env), else the default. */
let gatewayAdminPort = () => ADMIN_PORT_DEFAULT

/** A Service or policy port (number or name) as the container port number on Deployment d. */
function resolvePort(d, port) {
  if (typeof port === 'number') return port
  return containerPorts(d).find((p) => p.name === port)?.containerPort
}

function checkNetworkPolicies(policies, deployments, selected) {
  if (policies.length === 0) {
    fail(join(root, 'infra/k8s'), 'no NetworkPolicy: the services must be reachable from the gateway only')
    return
  }
  const denyAll = policies.find(
    ({ doc }) => isEmptySelector(doc.spec?.podSelector) && (doc.spec?.policyTypes ?? []).includes('Ingress') && (doc.spec?.ingress ?? []).length === 0,
  )
  if (!denyAll) fail(policies[0].file, 'no default-deny ingress NetworkPolicy (podSelector: {}, policyTypes: [Ingress], no rules)')

  for (const { file, doc, label } of policies) {
    const spec = doc.spec ?? {}
    const pods = isEmptySelector(spec.podSelector) ? deployments : selected(spec.podSelector)
    if (pods.length === 0) {
      fail(file, `${label}: podSelector matches no Deployment`)
      continue
    }
    for (const [i, rule] of (spec.ingress ?? []).entries()) {
      const where = `${label}: ingress[${i}]`
      for (const peer of rule.from ?? []) {
        if (peer.podSelector && !peer.namespaceSelector && !isEmptySelector(peer.podSelector) && selected(peer.podSelector).length === 0) {
          fail(file, `${where}: from.podSelector matches no Deployment`)
        }
      }
      for (const p of rule.ports ?? []) {
        if (p.port !== undefined && !pods.some((d) => hasPort(d, p.port))) fail(file, `${where}: port ${p.port} is not a container port of the selected pods`)
      }
      // Who may reach what.
      const fromGatewayOnly =
        (rule.from ?? []).length > 0 &&
        rule.from.every((peer) => peer.podSelector && !peer.namespaceSelector && !peer.ipBlock && isGatewayOnly(selected(peer.podSelector)))
      // A monitoring namespace (Prometheus): namespace selectors with labels, nothing else.
      const fromMonitoringOnly =
        (rule.from ?? []).length > 0 &&
        rule.from.every((peer) => peer.namespaceSelector && !isEmptySelector(peer.namespaceSelector) && !peer.ipBlock)
      const fromServicesOnly =
        (rule.from ?? []).length > 0 &&
        rule.from.every((peer) => {
          const ds = peer.podSelector && !peer.namespaceSelector && !peer.ipBlock ? selected(peer.podSelector) : []
          return ds.length > 0 && ds.every((d) => PRIVATE_SERVICES.includes(d.doc.metadata.name))
        })
      for (const d of pods) {
        const name = d.doc.metadata.name
        const ports = (rule.ports ?? []).map((p) => resolvePort(d, p.port))
        // Prometheus may scrape a service's /metrics (on its only port: its API needs the gateway's proof anyway).
        const scrapeOnly = fromMonitoringOnly && ports.length > 0 && ports.every((p) => p === containerPorts(d)[0]?.containerPort)
        if (PRIVATE_SERVICES.includes(name) && !fromGatewayOnly && !scrapeOnly) {
          fail(file, `${where}: lets something other than the ${GATEWAY}'s pods (or the monitoring namespace, on its port) reach ${name}`)
        }
        if (name === GATEWAY) {
          const coversInternal = ports.length === 0 || ports.includes(INTERNAL_PORT)
          if (coversInternal && !fromServicesOnly) fail(file, `${where}: opens the ${GATEWAY}'s internal port ${INTERNAL_PORT} beyond the services`)
          const adminPort = gatewayAdminPort(d)
          const coversAdmin = ports.length === 0 || ports.includes(adminPort)
          if (coversAdmin && !fromMonitoringOnly) fail(file, `${where}: opens the ${GATEWAY}'s admin port ${adminPort} (/metrics, /ready) beyond the monitoring namespace`)
        }
      }
    }
  }
  // The gateway's public port is allowed in, and the private services are reachable from the gateway.
  const allows = (target, port) =>
    policies.some(({ doc }) => {
      const pods = isEmptySelector(doc.spec?.podSelector) ? deployments : selected(doc.spec?.podSelector)
      return pods.includes(target) && (doc.spec?.ingress ?? []).some((r) => (r.ports ?? []).length === 0 || r.ports.some((p) => resolvePort(target, p.port) === port))
    })
  for (const d of deployments) {
    const name = d.doc.metadata.name
    if (name === GATEWAY && !allows(d, PUBLIC_PORT)) fail(d.file, `no NetworkPolicy lets traffic in to the ${GATEWAY}'s port ${PUBLIC_PORT}`)
    if (PRIVATE_SERVICES.includes(name)) {
      const port = containerPorts(d)[0]?.containerPort
      if (port !== undefined && !allows(d, port)) fail(d.file, `no NetworkPolicy lets the ${GATEWAY} reach ${name}:${port}`)
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------

process.stdout.write(`validate-deploy: ${root}\n`)

section('Dockerfiles')
const dockerfiles = [
  ...walk(join(root, 'infra/docker'), (n) => n === 'Dockerfile' || n.startsWith('Dockerfile.') || n.endsWith('.Dockerfile')),
  ...readdirSync(root).filter((n) => /^Dockerfile/.test(n)).map((n) => join(root, n)),
]
if (dockerfiles.length === 0) fail(join(root, 'infra/docker'), 'no Dockerfile found')
for (const f of dockerfiles) {
  const before = problems.length
  checkDockerfile(f)
  note(`${rel(f)}: ${problems.length === before ? 'ok' : `${problems.length - before} problem(s)`}`)
}

section('docker-compose.yml')
await checkCompose(join(root, 'docker-compose.yml'))

section('Kubernetes manifests')
await checkK8s(join(root, 'infra/k8s'))
if (onPath('kubectl', ['version', '--client'])) {
  const k = spawnSync('kubectl', ['kustomize', join(root, 'infra/k8s')], { encoding: 'utf8' })
  if (k.status !== 0) fail(join(root, 'infra/k8s/kustomization.yaml'), `kubectl kustomize failed: ${(k.stderr || String(k.error)).trim()}`)
  else note('kubectl kustomize: ok')
} else {
  note('kubectl not on PATH: skipped `kubectl kustomize`')
}

if (problems.length > 0) {
  process.stderr.write(`\nvalidate-deploy: ${problems.length} problem(s)\n`)
  for (const p of problems) process.stderr.write(`  ✗ ${p}\n`)
  process.exitCode = 1
} else {
  process.stdout.write('\nvalidate-deploy: all checks passed\n')
}
