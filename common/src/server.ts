/**
 * The only place a process listens: bind, then stop cleanly on SIGTERM/SIGINT
 * (stop accepting, finish in-flight requests, close pools) within a bound.
 */
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'

export interface ListenOptions {
  host: string
  port: number
  graceMs: number
}

export async function listen(app: FastifyInstance, opts: ListenOptions): Promise<string> {
  closeWithGrace({ delay: opts.graceMs }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'fatal error, closing')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
  })
  return app.listen({ host: opts.host, port: opts.port })
}
