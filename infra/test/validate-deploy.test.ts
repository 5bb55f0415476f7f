/**
 * infra/scripts/validate-deploy.mjs: green on the repository's own deployment files, and red (exit 1, naming the
 * file) on a copy of them with one thing broken.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

// The file's bound is a liveness bound: some twenty runs of the script (seconds of module loading and two
// docker-compose runs each) on a loaded 2-core machine.
t.setTimeout(600_000)

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const script = join(repoRoot, 'infra/scripts/validate-deploy.mjs')

function validate(root?: string): Promise<{ code: number | null; out: string; stderr: string }> {
  const args = root ? [script, root] : [script]
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: repoRoot, encoding: 'utf8', timeout: 180_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0
      resolve({ code, out: `${stdout}\n${stderr}`, stderr })
    })
  })
}

/** A throwaway copy of the files the script checks, in `dir`. */
function copyDeployFiles(dir: string): string {
  cpSync(join(repoRoot, 'docker-compose.yml'), join(dir, 'docker-compose.yml'))
  cpSync(join(repoRoot, 'infra/docker'), join(dir, 'infra/docker'), { recursive: true })
  cpSync(join(repoRoot, 'infra/k8s'), join(dir, 'infra/k8s'), { recursive: true })
  return dir
}

function edit(file: string, from: string, to: string) {
  const text = readFileSync(file, 'utf8')
  if (!text.includes(from)) throw new Error(`${file} no longer contains ${JSON.stringify(from)}: update this test`)
  writeFileSync(file, text.replace(from, to))
}

t.test('the repository deployment files pass', async (t) => {
  const r = await validate()
  t.equal(r.code, 0, 'exit code 0', { output: r.out })
  t.match(r.out, /all checks passed/)
})

t.test('an untouched copy passes too (the root argument is honoured)', async (t) => {
  const r = await validate(copyDeployFiles(t.testdir({})))
  t.equal(r.code, 0, 'exit code 0', { output: r.out })
})

const breakages: Array<{ name: string; file: string; from: string; to: string; expect: RegExp }> = [
  {
    name: 'a schema violation in a manifest',
    file: 'infra/k8s/task-service.yaml',
    from: 'replicas: 2',
    to: 'replicas: two',
    expect: /task-service\.yaml: Deployment task-service: .*replicas must be integer/,
  },
  {
    name: 'a misspelt field in a manifest',
    file: 'infra/k8s/gateway.yaml',
    from: 'readinessProbe:',
    to: 'readinessprobe:',
    expect: /gateway\.yaml: .*unknown field .*readinessprobe/,
  },
  {
    name: 'an unknown kind',
    file: 'infra/k8s/pdb.yaml',
    from: 'kind: PodDisruptionBudget',
    to: 'kind: PodDisruptionBudgets',
    expect: /pdb\.yaml: .*unknown apiVersion\/kind/,
  },
  {
    name: 'a reference to a Secret that is not the documented one',
    file: 'infra/k8s/gateway.yaml',
    from: 'name: tollgate-secrets',
    to: 'name: tollgate-secret',
    expect: /gateway\.yaml: .*Secret "tollgate-secret" is neither a manifest nor tollgate-secrets/,
  },
  {
    name: 'an HPA aimed at a Deployment that does not exist',
    file: 'infra/k8s/hpa.yaml',
    from: '    name: gateway\n  minReplicas',
    to: '    name: gateway-v2\n  minReplicas',
    expect: /hpa\.yaml: .*scaleTargetRef .*"gateway-v2"/,
  },
  {
    name: 'a NetworkPolicy letting the task-service reach the auth-service',
    file: 'infra/k8s/networkpolicy.yaml',
    from: 'app.kubernetes.io/name: gateway\n      ports:\n        - protocol: TCP\n          port: 3001',
    to: 'app.kubernetes.io/name: task-service\n      ports:\n        - protocol: TCP\n          port: 3001',
    expect: /networkpolicy\.yaml: .*reach auth-service/,
  },
  {
    name: 'a compose service other than the gateway publishing a port',
    file: 'docker-compose.yml',
    from: "      PORT: '3002'\n",
    to: "      PORT: '3002'\n    ports:\n      - '127.0.0.1:3002:3002'\n",
    expect: /docker-compose\.yml: services\.task-service: publishes ports/,
  },
  {
    name: 'a password written into the compose file',
    file: 'docker-compose.yml',
    from: 'POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env (openssl rand -hex 24)}',
    to: 'POSTGRES_PASSWORD: postgres',
    expect: /services\.postgres\.environment: POSTGRES_PASSWORD must come from/,
  },
  // The wirings only a running cluster shows (issue 14): the account purge's path and the Ingress hop.
  {
    name: 'the compose gateway internal listener left on loopback',
    file: 'docker-compose.yml',
    from: '      INTERNAL_HOST: 0.0.0.0\n',
    to: '',
    expect: /docker-compose\.yml: services\.gateway\.environment: INTERNAL_HOST is unset/,
  },
  {
    name: 'the compose auth-service without GATEWAY_INTERNAL_URL',
    file: 'docker-compose.yml',
    from: '      GATEWAY_INTERNAL_URL: http://gateway:8001\n',
    to: '',
    expect: /docker-compose\.yml: services\.auth-service\.environment: GATEWAY_INTERNAL_URL is unset/,
  },
  {
    name: 'the compose purge aimed at the public port',
    file: 'docker-compose.yml',
    from: 'GATEWAY_INTERNAL_URL: http://gateway:8001',
    to: 'GATEWAY_INTERNAL_URL: http://gateway:8000',
    expect: /GATEWAY_INTERNAL_URL http:\/\/gateway:8000 is not the gateway's internal listener/,
  },
  {
    name: 'the Kubernetes gateway internal listener left on loopback',
    file: 'infra/k8s/configmap.yaml',
    from: '  INTERNAL_HOST: 0.0.0.0\n',
    to: '',
    expect: /gateway\.yaml: Deployment gateway: container gateway: INTERNAL_HOST is unset/,
  },
  {
    name: 'the Kubernetes auth-service without GATEWAY_INTERNAL_URL',
    file: 'infra/k8s/configmap.yaml',
    from: '  GATEWAY_INTERNAL_URL: http://gateway-internal:8001\n',
    to: '',
    expect: /auth-service\.yaml: Deployment auth-service: .*GATEWAY_INTERNAL_URL is unset/,
  },
  {
    name: 'the Kubernetes purge aimed at the public Service',
    file: 'infra/k8s/configmap.yaml',
    from: 'GATEWAY_INTERNAL_URL: http://gateway-internal:8001',
    to: 'GATEWAY_INTERNAL_URL: http://gateway:8000',
    expect: /GATEWAY_INTERNAL_URL http:\/\/gateway:8000 does not reach the gateway's internal port 8001/,
  },
  {
    name: 'the Kubernetes gateway behind an Ingress without TRUST_PROXY',
    file: 'infra/k8s/configmap.yaml',
    from: '  TRUST_PROXY: "1"\n',
    to: '',
    expect: /gateway\.yaml: .*TRUST_PROXY is unset but an Ingress routes to the gateway/,
  },
  {
    name: 'a Dockerfile whose runtime stage runs as root',
    file: 'infra/docker/Dockerfile',
    from: 'USER node\n',
    to: 'USER root\n',
    expect: /Dockerfile: final stage .* non-root USER/,
  },
]

t.test('a broken copy fails, naming the problem', async (t) => {
  // One copy per breakage, validated a few at a time (each run is seconds of module loading and two
  // docker-compose runs; all at once overran the per-run timeout on a loaded 2-core machine).
  const base = t.testdir(Object.fromEntries(breakages.map((_, i) => [`copy-${i}`, {}])))
  const runs: Array<{ b: (typeof breakages)[number]; r: Awaited<ReturnType<typeof validate>> }> = []
  for (let start = 0; start < breakages.length; start += 4) {
    const batch = breakages.slice(start, start + 4)
    runs.push(
      ...(await Promise.all(
        batch.map(async (b, i) => {
          const dir = copyDeployFiles(join(base, `copy-${start + i}`))
          edit(join(dir, b.file), b.from, b.to)
          return { b, r: await validate(dir) }
        }),
      )),
    )
  }
  for (const { b, r } of runs) {
    t.equal(r.code, 1, `${b.name}: exit code 1`)
    t.match(r.stderr, b.expect, `${b.name}: reported`, { output: r.out })
  }
})

/**
 * The admin listener (/ready, /metrics): every way to expose it or miss it, broken in one copy (each is reported on
 * its own line, so one run shows them all), and a copy with no NetworkPolicy at all.
 */
const adminBreakages: Array<{ name: string; file: string; from: string; to: string; expect: RegExp }> = [
  {
    name: 'the gateway readiness probe on the public port (where /ready is 404)',
    file: 'infra/k8s/gateway.yaml',
    from: '              path: /ready\n              port: admin',
    to: '              path: /ready\n              port: http',
    expect: /gateway\.yaml: Deployment gateway: container gateway: readinessProbe must use the admin port 9000/,
  },
  {
    name: 'the admin port on the Service the Ingress routes to',
    file: 'infra/k8s/gateway.yaml',
    from: '      port: 8000\n      targetPort: http\n      protocol: TCP\n',
    to: '      port: 8000\n      targetPort: http\n      protocol: TCP\n    - name: admin\n      port: 9000\n      targetPort: admin\n      protocol: TCP\n',
    expect: /gateway\.yaml: Service gateway: the Ingress routes to this Service, which also carries port admin/,
  },
  {
    name: 'a NetworkPolicy opening the admin port to everyone',
    file: 'infra/k8s/networkpolicy.yaml',
    from: '    - ports:\n        - protocol: TCP\n          port: 8000\n',
    to: '    - ports:\n        - protocol: TCP\n          port: 8000\n        - protocol: TCP\n          port: 9000\n',
    expect: /networkpolicy\.yaml: NetworkPolicy gateway-ingress: ingress\[0\]: opens the gateway's admin port 9000/,
  },
  {
    name: 'the admin listener left on loopback (probe and Prometheus cannot reach it)',
    file: 'infra/k8s/configmap.yaml',
    from: '  ADMIN_HOST: 0.0.0.0\n',
    to: '',
    expect: /gateway\.yaml: .*ADMIN_HOST is unset \(default 127\.0\.0\.1\)/,
  },
  {
    name: 'a service without scrape annotations',
    file: 'infra/k8s/task-service.yaml',
    from: '        prometheus.io/scrape: "true"\n',
    to: '',
    expect: /task-service\.yaml: Deployment task-service: the pod template has no prometheus\.io\/scrape/,
  },
]

t.test('the admin port: on the probe, off the Ingress and its Service, open only to monitoring; NetworkPolicy present', async (t) => {
  const base = t.testdir({ admin: {}, nopolicy: {}, ingress: {} })
  const admin = copyDeployFiles(join(base, 'admin'))
  for (const b of adminBreakages) edit(join(admin, b.file), b.from, b.to)
  const noPolicy = copyDeployFiles(join(base, 'nopolicy'))
  edit(join(noPolicy, 'infra/k8s/kustomization.yaml'), '  - networkpolicy.yaml\n', '')
  const ingress = copyDeployFiles(join(base, 'ingress'))
  edit(join(ingress, 'infra/k8s/ingress.yaml'), '                name: gateway\n                port:\n                  name: http', '                name: gateway-admin\n                port:\n                  name: admin')
  const [r, n, i] = await Promise.all([validate(admin), validate(noPolicy), validate(ingress)])
  t.equal(r.code, 1, 'exit code 1')
  for (const b of adminBreakages) t.match(r.stderr, b.expect, `${b.name}: reported`, { output: r.out })
  t.equal(n.code, 1)
  t.match(n.stderr, /no NetworkPolicy/, 'no NetworkPolicy applied: reported')
  t.equal(i.code, 1)
  t.match(i.stderr, /ingress\.yaml: Ingress gateway: routes to something other than the gateway's public port 8000/, 'the Ingress routed to the admin Service: reported')
})
