/**
 * A raw keep-alive connection for edge tests that write requests byte by byte:
 * everything received so far, and when (ms after connecting) it closed.
 */
import net from 'node:net'

export interface RawConnection {
  socket: net.Socket
  state: { received: string; closedAfterMs: number }
  closed: Promise<void>
}

export function rawConnection(port: number, host = '127.0.0.1'): RawConnection {
  const socket = net.connect(port, host)
  const started = Date.now()
  const state = { received: '', closedAfterMs: -1 }
  socket.setEncoding('utf8').on('data', (d: string) => (state.received += d))
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      state.closedAfterMs = Date.now() - started
      resolve()
    }),
  )
  return { socket, state, closed }
}

/** How many answers (status lines) a connection has received. */
export const answerCount = (received: string): number => received.match(/HTTP\/1\.1 \d{3} /g)?.length ?? 0
