/**
 * The bundled gateway file grown to a given number of declared routes (issue 15 item 8): the same routes and
 * policies, plus owner-checked routes on the tasks upstream under their own prefixes, so the router holds
 * `total` routes while the measured request (GET /api/:user_id/tasks) is answered as with the bundled file.
 * Written into a temporary directory of its own, which `remove()` deletes once the gateways reading it are stopped.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseDocument } from 'yaml'
import { fileURLToPath } from 'node:url'

const BUNDLED = fileURLToPath(new URL('../../gateway/tollgate.yaml', import.meta.url))

export function routesFile(total) {
  const doc = parseDocument(readFileSync(BUNDLED, 'utf8'))
  const routes = doc.get('routes')
  const declared = routes.items.length
  for (let i = 0; routes.items.length < total; i++) {
    const prefix = `/api/svc${i}`
    routes.add(
      doc.createNode(
        i % 2
          ? { methods: ['GET', 'POST'], path: `${prefix}/:user_id/items`, upstream: 'tasks', access: 'owner(user_id)', policies: ['ip', 'user'] }
          : { methods: ['GET', 'PUT', 'DELETE'], path: `${prefix}/:user_id/items/:id`, upstream: 'tasks', access: 'owner(user_id)', policies: ['ip', 'user'] },
      ),
    )
  }
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-routes-'))
  const file = join(dir, `gateway-${total}-routes.yaml`)
  writeFileSync(file, doc.toString({ lineWidth: 0 }))
  return { file, declared, remove: () => rmSync(dir, { recursive: true, force: true }) }
}
