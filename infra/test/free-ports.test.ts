/**
 * The launcher's ports: chosen together, so no two of its processes get the
 * same one, and never one already given to another process (CI once saw the
 * gateway's admin port handed to the auth-service too: ports bound and
 * released one at a time can come back from the next bind).
 */
import t from 'tap'
import { createServer } from 'node:net'
import { freePorts } from '../src/processes.js'

t.test('distinct ports, each free to listen on', async (t) => {
  const ports = await freePorts(200)
  t.equal(new Set(ports).size, 200, '200 distinct ports')
  // Each can be listened on at once (all released).
  const servers = await Promise.all(
    ports.slice(0, 20).map((port) => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
      const srv = createServer().on('error', reject)
      srv.listen(port, '127.0.0.1', () => resolve(srv))
    })),
  )
  t.equal(servers.length, 20)
  await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))))
})

t.test('never a port to avoid', async (t) => {
  const given = await freePorts(50)
  for (let i = 0; i < 5; i++) {
    const more = await freePorts(100, '127.0.0.1', given)
    t.same(more.filter((p) => given.includes(p)), [], `round ${i}: none of the given ports`)
  }
})
