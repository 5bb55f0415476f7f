/**
 * The launcher's ports: chosen together, so no two of its processes get the
 * same one, and never one already given to another process (CI once saw the
 * gateway's admin port handed to the auth-service too: ports bound and
 * released one at a time can come back from the next bind).
 */
import t from 'tap'
import { createServer } from 'node:net'
import { exitedEarly, freePort, freePorts, PortTaken, retryWhilePortTaken } from '../src/processes.js'

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

t.test('ports taken one at a time are distinct too (tests ask for a gateway\'s three ports in turn)', async (t) => {
  // Each bind is released before the next: the kernel may hand the same port out again (CI saw a gateway's public
  // and admin listeners given one port). 1,000 draws from ~28,000 ephemeral ports repeat with near certainty.
  const ports: number[] = []
  for (let i = 0; i < 1000; i++) ports.push(await freePort())
  t.equal(new Set(ports).size, ports.length, '1,000 distinct ports')
  const more = await freePorts(50)
  t.same(more.filter((p) => ports.includes(p)), [], 'freePorts never returns a port freePort gave')
})

t.test('a start whose port was taken is tried again, three times in all; any other failure at once', async (t) => {
  let calls = 0
  const takenTwice = () => (++calls <= 2 ? Promise.reject(exitedEarly('exited', 'listen EADDRINUSE: address already in use')) : Promise.resolve('up'))
  t.equal(await retryWhilePortTaken(takenTwice), 'up')
  t.equal(calls, 3, 'two taken ports, then up')

  calls = 0
  const alwaysTaken = () => {
    calls++
    return Promise.reject(exitedEarly('exited', 'EADDRINUSE'))
  }
  t.ok((await retryWhilePortTaken(alwaysTaken).catch((err: unknown) => err)) instanceof PortTaken, 'the last PortTaken is thrown')
  t.equal(calls, 3, 'given up after three')

  calls = 0
  const broken = () => {
    calls++
    return Promise.reject(exitedEarly('exited (1): bad config', 'invalid configuration'))
  }
  await t.rejects(retryWhilePortTaken(broken), { message: 'exited (1): bad config' })
  t.equal(calls, 1, 'not a taken port: no second try')
  t.notOk(exitedEarly('x', 'invalid configuration') instanceof PortTaken)
})
