/**
 * Answering a request whose body is still arriving (a 413, or any error
 * before the body was read). Closing the socket right after the answer makes
 * the kernel reset the connection while the client is still writing, and an
 * ordinary client (Node's http.request) then fails with EPIPE or ECONNRESET
 * instead of reading the answer. So, like nginx's lingering close: answer,
 * then read and discard the rest of the body up to a bound, and only cut the
 * connection when the client goes past it. A body read to its end leaves the
 * connection in step (Node's parser keeps the framing), so it stays usable.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'

/** Bytes discarded after a refusal before the connection is cut. */
export const LINGER_MAX_BYTES = 4 * 1024 * 1024
/** Time the client has to finish sending a refused body before the connection is cut. */
export const LINGER_MAX_MS = 5000

/**
 * Call when answering an error: if the body is still arriving, keep the
 * connection open while it is read and thrown away (bounded), and drop any
 * `Connection: close` that would have Node close the socket under the client.
 */
export function lingerOnRefusal(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw
  // undici unsets the socket of a request body it destroys (to keep the connection): the response still names it.
  const socket = raw.socket ?? reply.raw.socket
  // The body is still arriving on a live connection (its stream may already be destroyed: see onClose).
  if (raw.complete !== false || !socket || socket.destroyed) return
  // Already draining from an earlier answer on this request.
  if ((raw as { lingering?: boolean }).lingering) return
  ;(raw as { lingering?: boolean }).lingering = true
  reply.removeHeader('connection')
  let discarded = 0
  const cut = () => {
    cleanup()
    // A body that arrived whole in the meantime left the connection in step: nothing to cut.
    if (!raw.complete) socket.destroy()
  }
  const onData = (chunk: Buffer) => {
    discarded += chunk.length
    if (discarded > LINGER_MAX_BYTES) cut()
  }
  // The body stream can be destroyed under us: undici destroys a request body it was sending when the upstream
  // fails mid-upload. Node's parser then stops reading the socket at the first chunk the stream refuses, and the
  // connection sat until the keep-alive timeout, neither cut nor usable. Marked dumped (what Node does itself to a
  // body nobody reads), the parser discards the rest; the time bound still stands.
  const onClose = () => {
    if (raw.complete) return cleanup()
    ;(raw as { _dumped?: boolean })._dumped = true
    socket.resume()
  }
  const timer = setTimeout(cut, LINGER_MAX_MS)
  const cleanup = () => {
    clearTimeout(timer)
    raw.removeListener('data', onData)
    raw.removeListener('end', cleanup)
    raw.removeListener('close', onClose)
    socket.removeListener('close', cleanup)
  }
  // Whoever was reading the body (a parser, a proxy) has stopped: nobody else consumes it now.
  raw.unpipe()
  raw.on('data', onData)
  raw.once('end', cleanup)
  raw.once('close', onClose)
  socket.once('close', cleanup)
  if (raw.destroyed) onClose()
  else raw.resume()
}
