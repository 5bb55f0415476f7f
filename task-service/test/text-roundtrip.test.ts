import t from 'tap'
import { asUser, build, database, newUserId } from './helper.js'

// Text is stored and returned exactly as sent: compare bytes, not just strings.
const samples: Array<[string, string]> = [
  ['emoji and ZWJ sequences', '👩🏽‍💻 ship it 🚀🎉 👨‍👩‍👧‍👦'],
  ['quotes and backslashes', `He said "it's done" \\ 'quoted' \`tick\` \\n not a newline`],
  ['SQL-looking', "'; DROP TABLE tasks; --"],
  ['more SQL', "Robert'); DELETE FROM tasks WHERE ('1'='1"],
  ['RTL text', 'مرحبا بالعالم — שלום עולם'],
  ['RTL override and zero-width', 'abc\u202Eevil\u202C\u200B\u200D\uFEFF'],
  ['combining marks, not normalised', 'e\u0301 vs \u00e9, Å vs A\u030A'],
  ['CJK and astral', '漢字かなカナ 𠜎𠜱𝄞'],
  ['control characters and newlines', 'line1\nline2\r\n\ttab\u0001\u001f\u007f'],
  ['HTML', '<script>alert(1)</script>&amp;'],
  ['JSON-looking', '{"title":"nested","completed":true}'],
  ['percent and format strings', '%s %d %n ${x} {{y}}'],
]

t.test('title and description round-trip byte for byte', async (t) => {
  const app = await build(t)
  const db = database(t)
  const u = asUser(app, newUserId())
  for (const [name, text] of samples) {
    const created = await u.create({ title: text, description: text })
    t.equal(created.statusCode, 201, name)
    const task = created.json()
    // Only surrounding whitespace is trimmed from a title.
    t.equal(task.title, text.trim(), `${name}: title`)
    t.equal(Buffer.compare(Buffer.from(task.description), Buffer.from(text)), 0, `${name}: description bytes`)

    const got = (await u.get(task.id)).json()
    t.equal(got.description, text, `${name}: read back`)
    const { rows } = await db.query('SELECT title, description FROM tasks WHERE id = $1', [task.id])
    t.equal(rows[0].description, text, `${name}: as stored`)
    t.equal(rows[0].title, text.trim())

    const updated = (await u.update(task.id, { title: `${text}!`, description: `${text}?` })).json()
    t.equal(updated.title, `${text}!`.trim(), `${name}: updated title`)
    t.equal(updated.description, `${text}?`, `${name}: updated description`)
  }

  const listed = (await u.list(`limit=${samples.length}`)).json()
  t.equal(listed.length, samples.length)
  const { rows } = await db.query("SELECT count(*)::int AS n FROM tasks")
  t.ok(rows[0].n >= samples.length, 'the tasks table is still there')
})

t.test('a description is never trimmed', async (t) => {
  const app = await build(t)
  const u = asUser(app, newUserId())
  const res = await u.create({ title: 'spaces', description: '  padded \n' })
  t.equal(res.json().description, '  padded \n')
  const blank = await u.create({ title: 'blank', description: '   ' })
  t.equal(blank.json().description, '   ')
})
