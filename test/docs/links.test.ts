/**
 * The repository stands alone: every relative link in the READMEs and docs/
 * resolves to a file (and heading) in the repository, and every test that
 * docs/security.md names as proof of a property exists under that name.
 */
import t from 'tap'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

const documents = [
  'README.md',
  ...['auth-service', 'task-service', 'gateway', 'common', 'infra', 'infra/k8s'].map((d) => `${d}/README.md`).filter((f) => existsSync(join(root, f))),
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
]

/** Markdown outside fenced code blocks and inline code spans. */
function prose(text: string): string {
  return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, (m) => (m.includes('](') ? m : ''))
}

/** Inline `[text](target)` and reference `[label]: target` links, without external ones. */
function relativeLinks(text: string): string[] {
  const targets = [...prose(text).matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g), ...text.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)].map((m) => m[1]!)
  return targets.filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target))
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>()
  const result = new Set<string>()
  for (const m of prose(text).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const slug = m[1]!
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-')
    const n = seen.get(slug) ?? 0
    seen.set(slug, n + 1)
    result.add(n === 0 ? slug : `${slug}-${n}`)
  }
  return result
}

t.test('every relative link in the READMEs and docs/ resolves to a file in the repository', async (t) => {
  t.ok(documents.includes('docs/API.md') && documents.includes('docs/security.md') && documents.includes('docs/quickstart.md'), 'the contract, the security properties and the quickstart are in docs/')
  for (const doc of documents) {
    const text = readFileSync(join(root, doc), 'utf8')
    const links = relativeLinks(text)
    for (const link of links) {
      const [path, fragment] = link.split('#') as [string, string | undefined]
      const target = path === '' ? join(root, doc) : resolve(join(root, dirname(doc)), decodeURIComponent(path))
      const shown = `${doc}: ${link}`
      t.ok(target.startsWith(root + '/') || target === root, `${shown} stays inside the repository`)
      if (!existsSync(target)) {
        t.fail(`${shown} names ${relative(root, target)}, which does not exist`)
        continue
      }
      if (fragment && statSync(target).isFile() && target.endsWith('.md')) {
        t.ok(anchors(readFileSync(target, 'utf8')).has(fragment), `${shown}: the heading #${fragment} exists`)
      }
    }
    t.pass(`${doc}: ${links.length} relative links checked`)
  }
})

t.test('nothing points outside the repository for the contract or the security checklist', async (t) => {
  for (const doc of documents) {
    const text = readFileSync(join(root, doc), 'utf8')
    t.notMatch(text, /\.\.\/shared\/|\/work\/shared/, `${doc} cites no file outside the repository`)
  }
})

t.test('every test docs/security.md names as proof exists, under that name', async (t) => {
  const text = readFileSync(join(root, 'docs/security.md'), 'utf8')
  // A test file, or the shared suite a test file runs (common/src/testing).
  const proofs = [...text.matchAll(/\]\(\.\.\/([^)]+\.ts)\) “([^”]+)”/g)]
  t.ok(proofs.length >= 50, `${proofs.length} proofs named`)
  for (const [, file, title] of proofs) {
    // A title as written in the source: quotes inside it may be escaped there.
    const source = readFileSync(join(root, file!), 'utf8').replace(/\\'/g, "'")
    t.ok(source.includes(title!), `${file}: “${title}”`)
  }
  for (let i = 1; i <= 50; i++) {
    const id = `S-${String(i).padStart(2, '0')}`
    t.match(text, new RegExp(`^\\| ${id} \\|`, 'm'), `${id} has its row`)
  }
})
