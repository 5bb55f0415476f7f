/**
 * The live-updates upstream of the streams bench (its own process): the
 * task-service's event stream (GET /api/:user/tasks/events, `: connected`,
 * then events) and an auth-service's revocation feed, both driven by the
 * bench over two control routes:
 *   POST /control/emit     one event on every open stream, stamped with the time
 *                          (?skip=K&count=N: on N streams only, from the K-th opened)
 *   POST /control/revoke   body: JSON array of jti, added to the feed
 * env: PORT (required). Prints "ready <port>" once listening.
 */
import http from 'node:http'

const port = Number(process.env.PORT)
const streams = new Set()
const revoked = []
let nextId = 0

const readBody = (req) =>
  new Promise((resolve) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks).toString()))
  })

const server = http.createServer(async (req, res) => {
  const path = req.url.split('?')[0]
  if (path === '/health') return res.end('{"status":"ok"}')
  if (path === '/internal/revocations') {
    const after = Number(new URL(req.url, 'http://x').searchParams.get('after') ?? 0)
    res.setHeader('content-type', 'application/json')
    return res.end(JSON.stringify({ cursor: revoked.length, reset: false, more: false, revoked: revoked.slice(after) }))
  }
  if (req.method === 'POST' && path === '/control/emit') {
    const id = ++nextId
    const q = new URL(req.url, 'http://x').searchParams
    const skip = Number(q.get('skip') ?? 0)
    const count = Number(q.get('count') ?? Infinity)
    const data = `id: ${id}\ndata: ${JSON.stringify({ type: 'updated', task: { id: 'bench', t: Date.now() } })}\n\n`
    let i = 0
    let sent = 0
    for (const s of streams) {
      if (i++ < skip) continue
      if (sent >= count) break
      s.write(data)
      sent++
    }
    return res.end(JSON.stringify({ id, streams: sent }))
  }
  if (req.method === 'POST' && path === '/control/revoke') {
    const exp = Math.floor(Date.now() / 1000) + 3600
    for (const jti of JSON.parse(await readBody(req))) revoked.push({ jti, exp })
    return res.end('{}')
  }
  if (/^\/api\/[^/]+\/tasks\/events$/.test(path)) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    res.write(': connected\n\n')
    streams.add(res)
    res.on('close', () => streams.delete(res))
    return
  }
  res.writeHead(404).end()
})
server.keepAliveTimeout = 60_000
server.listen(port, '127.0.0.1', () => console.log(`ready ${port}`))
