/**
 * The body limit for bodies the gateway streams to a service instead of
 * parsing. One with a Content-Length over the limit is refused by the edge
 * hook before any work; Node's parser holds the others to their declared
 * length. A chunked one declares nothing: it is counted as it passes, and the
 * byte that takes it over the limit stops it. The client then gets 413 in the
 * envelope (the rest of its upload is read and thrown away, bounded), and the
 * upstream request is aborted, so the service never takes a truncated body
 * for a whole one.
 */
import { finished, Transform, type Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { lingerOnRefusal, PayloadTooLarge } from '@tollgate/common'

export function limitStreamedBody(request: FastifyRequest, reply: FastifyReply, limit: number): Readable {
  const raw = request.raw
  if (request.headers['content-length'] !== undefined) return raw
  let received = 0
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length
      request.bodyBytes = received
      if (received <= limit) callback(null, chunk)
      else {
        refuse()
        callback()
      }
    },
  })
  const refuse = () => {
    raw.unpipe(counted)
    const tooLarge = new PayloadTooLarge()
    if (reply.raw.headersSent) {
      // The service already answered: cut the upload, keep the answer.
      lingerOnRefusal(request, reply)
      counted.destroy(tooLarge)
      return
    }
    // Answer first, then abort upstream: the forwarder leaves an answered reply alone.
    reply.send(tooLarge)
    finished(reply.raw, () => counted.destroy(tooLarge))
  }
  raw.pipe(counted)
  return counted
}
