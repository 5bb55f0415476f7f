/**
 * What the processes load, which their memory follows. TypeBox as one
 * bundled module (src/typebox.ts, scripts/bundle-typebox.mjs): no process
 * imports the package's ~680 files, and the bundle is TypeBox itself, every
 * name and behaviour, from the build every start path uses. And one copy of
 * undici in the gateway: its forwarder's and @fastify/reply-from's (the
 * WebSocket proxy's) are the same version, installed once (the root's
 * devDependencies name it so npm hoists it: otherwise a dev tool's older
 * undici takes the root and each user gets a copy; 3 MB of heap).
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as upstream from 'typebox'
import * as bundled from '@tollgate/common/typebox'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** Every module a fresh Node loads while importing `entries` (ESM and CommonJS alike). */
function modulesLoadedBy(entries: string[]): string[] {
  const script = [
    "import { registerHooks } from 'node:module'",
    'const seen = []',
    'registerHooks({ load(url, context, next) { seen.push(url); return next(url, context) } })',
    ...entries.map((e) => `await import(${JSON.stringify(e)})`),
    'process.stdout.write(JSON.stringify(seen))',
  ].join('\n')
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) throw new Error(`node exited ${r.status}: ${r.stderr}`)
  return JSON.parse(r.stdout) as string[]
}

t.test("the three services' code and the CLI's config checker load TypeBox as one module, never the package's own files", async (t) => {
  const entries = ['gateway/dist/app.js', 'gateway/dist/gateway-config/load.js', 'auth-service/dist/app.js', 'task-service/dist/app.js'].map((p) => `${ROOT}${p}`)
  for (const entry of entries) {
    const loaded = modulesLoadedBy([entry])
    t.same(loaded.filter((url) => url.includes('/node_modules/typebox/')), [], `${entry.slice(ROOT.length)}: no file of the typebox package`)
    t.ok(loaded.some((url) => url.endsWith('/common/dist/typebox.js')), `${entry.slice(ROOT.length)}: the bundle`)
  }
})

t.test('the gateway loads one copy of undici', async (t) => {
  const loaded = modulesLoadedBy([`${ROOT}gateway/dist/app.js`])
  const copies = new Set(loaded.flatMap((url) => /^(.*\/node_modules\/undici)\//.exec(url)?.[1] ?? []))
  t.same([...copies], [`file://${ROOT}node_modules/undici`])
})

t.test('the bundle is one file: it imports nothing', async (t) => {
  const loaded = modulesLoadedBy([`${ROOT}common/dist/typebox.js`])
  t.same(loaded.filter((url) => !url.startsWith('node:')), [`file://${ROOT}common/dist/typebox.js`])
})

t.test("the bundle exports TypeBox's every name, with Value and Compile", async (t) => {
  t.same(Object.keys(bundled).sort(), [...new Set([...Object.keys(upstream), 'Value', 'Compile'])].sort())
  t.same(Object.keys(bundled.default).sort(), Object.keys(upstream.default).sort(), 'the default export too')
})

t.test('and behaves as TypeBox: the same schema, the same checks and errors', async (t) => {
  const mine = bundled.Type.Object({ email: bundled.Type.String({ format: 'email' }), n: bundled.Type.Integer({ minimum: 1 }) })
  const theirs = upstream.Type.Object({ email: upstream.Type.String({ format: 'email' }), n: upstream.Type.Integer({ minimum: 1 }) })
  t.same(JSON.parse(JSON.stringify(mine)), JSON.parse(JSON.stringify(theirs)))
  const check = bundled.Compile(mine)
  t.equal(check.Check({ email: 'a@b.io', n: 2 }), true)
  t.equal(check.Check({ email: 'nope', n: 0 }), false)
  t.equal(bundled.Value.Check(mine, { email: 'a@b.io', n: 2 }), true)
  t.ok([...bundled.Value.Errors(mine, { email: 'nope', n: 0 })].length >= 2, 'both fields refused')
})
