/**
 * A stand-in OTLP/HTTP collector for the tracing rows of the throughput
 * suite: takes every export (reads the body, answers 200) and keeps nothing,
 * so the gateway pays for making and sending its spans and nothing more.
 * Prints "listening <url>" once it listens; on SIGTERM, how much it took.
 */
import { createServer } from 'node:http'

let exports = 0
let bytes = 0
const server = createServer((req, res) => {
  req.on('data', (c) => (bytes += c.length))
  req.on('end', () => {
    exports++
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
  })
})
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => console.log(`listening http://127.0.0.1:${server.address().port}`))
process.on('SIGTERM', () => {
  process.stderr.write(`otlp sink: ${exports} exports, ${bytes} bytes\n`)
  process.exit(0)
})
