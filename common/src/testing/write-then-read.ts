/**
 * A client that sends its whole body before it reads anything (as Python's
 * requests and urllib3 do), then, on the same connection, asks for /health:
 * when a refused body was read to its end, the connection is still in step.
 */
import net from 'node:net'

export interface WriteThenReadRequest {
  path: string
  /** Body bytes ('a' repeated). */
  size: number
  /** Transfer-Encoding: chunked, else Content-Length. */
  chunked: boolean
  /** More request header lines, each ending in CRLF. */
  headers?: string
}

/** Resolves with the status lines read (two when all went well), then how it ended if it ended early. */
export function writeThenRead(port: number, req: WriteThenReadRequest): Promise<string[]> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.pause()
    const framing = req.chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${req.size}`
    const head = `POST ${req.path} HTTP/1.1\r\nHost: x\r\n${req.headers ?? ''}Content-Type: application/json\r\n${framing}\r\n\r\n`
    const body = Buffer.alloc(req.size, 'a')
    const payload = req.chunked ? Buffer.concat([Buffer.from(`${req.size.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]) : body
    let answer = ''
    const statusLines = () => answer.match(/HTTP\/1\.1 \d{3} [^\r]*/g) ?? []
    const finish = (extra?: string) => {
      socket.destroy()
      resolve(extra ? [...statusLines(), extra] : statusLines())
    }
    socket.on('error', (e: NodeJS.ErrnoException) => finish(`error ${e.code}`))
    socket.on('end', () => finish('closed'))
    socket.setTimeout(10_000, () => finish('no answer in 10 s'))
    socket.on('data', (d) => {
      const before = statusLines().length
      answer += d
      if (before === 0 && statusLines().length === 1) socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
      if (statusLines().length === 2) finish()
    })
    socket.write(head)
    socket.write(payload, (err) => {
      if (!err) socket.resume()
    })
  })
}
