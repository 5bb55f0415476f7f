/**
 * The reloading listener's one server: requests and upgrades (WebSocket,
 * e.g. @fastify/websocket listening on its instance's server) go to the
 * current generation; each is counted on the one it started on until it ends.
 */
import t from 'tap'
import { connect, type AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { ServerResponse } from 'node:http'
import { createService, type App } from '@tollgate/common'
import { createSharedServer, detachedServer, type Target } from '../src/reload/shared-server.js'

type Generation = Target & { open: Set<ServerResponse | Duplex>; entered: number; idle(): Promise<void> }

async function generation(name: string, upgrades: boolean): Promise<Generation> {
  const app: App = createService({ name, logLevel: 'silent', openapi: false, fastify: { serverFactory: detachedServer } })
  app.get('/who', async () => ({ name }))
  if (upgrades) {
    // What a WebSocket plugin does: listen for 'upgrade' on its instance's server.
    app.server.on('upgrade', (_req, socket: Duplex) => {
      socket.end(`HTTP/1.1 101 Switching Protocols\r\nupgrade: test\r\nconnection: upgrade\r\nx-generation: ${name}\r\n\r\n`)
    })
  }
  await app.ready()
  t.teardown(() => app.close())
  const open = new Set<ServerResponse | Duplex>()
  const waiters: Array<() => void> = []
  const g: Generation = {
    app,
    open,
    entered: 0,
    draining: false,
    enter: (h) => {
      g.entered++
      open.add(h)
    },
    leave: (h) => {
      open.delete(h)
      if (open.size === 0) for (const w of waiters.splice(0)) w()
    },
    idle: () => (open.size === 0 ? Promise.resolve() : new Promise<void>((r) => waiters.push(r))),
  }
  return g
}

function rawUpgrade(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write('GET /live HTTP/1.1\r\nhost: x\r\nupgrade: test\r\nconnection: upgrade\r\n\r\n'))
    let text = ''
    socket.setEncoding('utf8').on('data', (d: string) => (text += d))
    socket.on('end', () => resolve(text))
    socket.on('error', reject)
  })
}

t.test('requests and upgrades follow the current generation', async (t) => {
  const one = await generation('one', false)
  const two = await generation('two', true)
  let current = one
  const shared = createSharedServer({}, () => current)
  shared.follow()
  await new Promise<void>((r) => shared.server.listen(0, '127.0.0.1', r))
  t.teardown(() => shared.server.close())
  const port = (shared.server.address() as AddressInfo).port

  t.same(await (await fetch(`http://127.0.0.1:${port}/who`)).json(), { name: 'one' })
  t.equal(shared.server.listenerCount('upgrade'), 0, 'no upgrade listener while the current instance has none: Node answers it as a request')

  current = two
  shared.follow()
  t.same(await (await fetch(`http://127.0.0.1:${port}/who`)).json(), { name: 'two' })
  const answer = await rawUpgrade(port)
  t.match(answer, /^HTTP\/1.1 101 /, 'the upgrade reached the current instance')
  t.match(answer, /x-generation: two/)
  t.equal(two.entered, 2, 'counted on its generation (one request, one upgrade)')
  await two.idle() // its socket closed: nothing left in flight there

  current = one
  shared.follow()
  t.equal(shared.server.listenerCount('upgrade'), 0, 'swapped back: the listener is gone again')
})
