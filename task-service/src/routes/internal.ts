/**
 * Internal routes: called by other services through the gateway's internal
 * listener (the gateway checks their service token and allowlist; the proof
 * tells us the caller is a service, never a user).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { requireGatewayIdentity } from '@tollgate/common'
import { AccountPurge } from '@tollgate/common/contracts'
import type { TasksRepository } from '../repositories/tasks-repository.js'

export interface InternalRoutesOptions {
  repo: TasksRepository
  proofKey: Buffer
  proofWindowMs: number
}

export const internalRoutes: FastifyPluginAsyncTypebox<InternalRoutesOptions> = async (app, opts) => {
  app.addHook('onRequest', requireGatewayIdentity(opts.proofKey, opts.proofWindowMs, (id) => id.caller.startsWith('service:')))

  // The account is gone: its tasks go too. 204 whether or not any were left (retries are safe).
  app.delete(
    AccountPurge.path,
    { schema: { params: AccountPurge.params } },
    async (request, reply) => {
      const purged = await opts.repo.purgeUser(request.params.user_id)
      request.log.info({ caller: request.identity?.caller, purged }, 'tasks purged for a deleted account')
      reply.code(204).send()
    },
  )
}
