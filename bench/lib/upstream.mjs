/**
 * The plain upstream the gateway is measured against (run as its own process):
 * node:http, fixed answers, no auth. It serves what the gateway needs from a
 * task-service (GET /api/:user/tasks: five tasks) and from an auth-service
 * (the revocation feed, GET /api/auth/me), plus /health.
 *
 * env: PORT (required), DELAY_MS (hold /api/* answers this long: the slow upstream).
 * Prints "ready <port>" once listening.
 */
import http from 'node:http'

const port = Number(process.env.PORT)
const delayMs = Number(process.env.DELAY_MS ?? 0)

const json = (value) => Buffer.from(JSON.stringify(value))
const now = '2025-01-01T00:00:00.000Z'
const TASKS = (user) =>
  json(
    Array.from({ length: 5 }, (_, i) => ({
      id: `00000000-0000-4000-8000-00000000000${i + 1}`,
      user_id: user,
      title: `Task ${i + 1}`,
      description: i % 2 ? null : 'Fixed task served by the bench upstream',
      completed: i % 3 === 0,
      created_at: now,
      updated_at: now,
    })),
  )
const tasksByUser = new Map() // a handful of users at most: the body is built once per user
const FEED = json({ cursor: 0, reset: false, more: false, revoked: [] })
const HEALTH = json({ status: 'ok' })
const NOT_FOUND = json({ detail: 'Not found', error_code: 'NOT_FOUND', status_code: 404 })
const TASKS_PATH = /^\/api\/([^/]+)\/tasks$/

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length })
  res.end(body)
}

function answer(req, res) {
  const path = req.url.split('?', 1)[0]
  if (path === '/health') return send(res, 200, HEALTH)
  if (path === '/internal/revocations') return send(res, 200, FEED)
  const m = req.method === 'GET' ? TASKS_PATH.exec(path) : null
  if (m) {
    if (!tasksByUser.has(m[1]) && tasksByUser.size < 16) tasksByUser.set(m[1], TASKS(m[1]))
    return send(res, 200, tasksByUser.get(m[1]) ?? TASKS(m[1]))
  }
  if (req.method === 'GET' && path === '/api/auth/me') {
    return send(res, 200, json({ id: req.headers['x-user-id'] ?? '', email: 'bench@example.com', name: 'Bench', created_at: now, updated_at: now }))
  }
  send(res, 404, NOT_FOUND)
}

const server = http.createServer((req, res) => {
  req.resume() // bodies are not read, only drained
  if (delayMs > 0 && req.url.startsWith('/api/')) {
    const timer = setTimeout(() => answer(req, res), delayMs)
    res.on('close', () => clearTimeout(timer)) // the gateway gave up: do not answer a closed socket
  } else {
    answer(req, res)
  }
})
server.keepAliveTimeout = 60_000
server.listen(port, '127.0.0.1', () => process.stdout.write(`ready ${port}\n`))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
