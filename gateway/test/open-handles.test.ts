/**
 * A generation's open requests and sockets (reload/open-handles.ts): counted,
 * listed, each slot reused, and nothing kept once a handle has left.
 */
import t from 'tap'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { ServerResponse, IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import { OpenHandles, type OpenHandle } from '../src/reload/open-handles.js'

const response = () => new ServerResponse(new IncomingMessage(new Socket()))

t.test('counts, lists and forgets handles', async (t) => {
  const open = new OpenHandles()
  const [a, b, c] = [response(), response(), new Socket()]
  open.add(a)
  open.add(b)
  open.add(c)
  t.equal(open.size, 3)
  t.same([...open], [a, b, c])
  t.ok(open.has(b))
  t.equal(open.delete(b), true)
  t.equal(open.delete(b), false, 'a second leave is a no-op')
  t.notOk(open.has(b))
  t.equal(open.size, 2)
  t.same([...open], [a, c])
  open.add(a)
  t.equal(open.size, 2, 'adding a handle already here counts it once')
  t.equal(open.delete(response()), false, 'a handle never added is not here')
  t.equal(open.delete(a), true)
  t.equal(open.delete(c), true)
  t.equal(open.size, 0)
  t.same([...open], [])
})

t.test('a freed slot is reused: the slots grow to the most ever open at once, not with the requests served', async (t) => {
  const open = new OpenHandles()
  const inFlight: OpenHandle[] = []
  for (let i = 0; i < 10_000; i++) {
    const h = response()
    open.add(h)
    inFlight.push(h)
    if (inFlight.length > 50) open.delete(inFlight.shift()!)
  }
  t.equal(open.size, 50)
  t.equal((open as unknown as { slots: unknown[] }).slots.length, 51)
  for (const h of inFlight) open.delete(h)
  t.equal(open.size, 0)
})

t.test('a handle that left is not kept alive', async (t) => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const open = new OpenHandles()
  let h: ServerResponse | null = response()
  const ref = new WeakRef(h)
  open.add(h)
  open.delete(h)
  h = null
  // The WeakRef's target is kept until the current job ends: collect from a later turn.
  await new Promise((r) => setImmediate(r))
  gc()
  t.equal(ref.deref(), undefined)
  t.equal(open.size, 0)
})
