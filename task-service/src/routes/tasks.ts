/**
 * /api/:user_id/tasks: a user's own tasks. Only the gateway reaches these
 * routes (signed identity proof), and only for the user named in the path.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@tollgate/common/typebox'
import { errors, requireGatewayIdentity, type Identity } from '@tollgate/common'
import type { TaskChanges, TasksRepository } from '../repositories/tasks-repository.js'
import type { TaskEventHub } from '../events/task-events.js'
import { taskEventsRoutes } from './task-events.js'
import {
  checkText,
  cleanTitle,
  CreateTaskBody,
  errorResponses,
  isUuid,
  ListQuery,
  TaskParams,
  TaskSchema,
  UpdateTaskBody,
  UserParams,
} from '../schemas.js'

export interface TasksRoutesOptions {
  repo: TasksRepository
  proofKey: Buffer
  proofWindowMs: number
  /** Live updates (events, live): under the same proof and owner checks. */
  events?: TaskEventHub
}

const isUser = (id: Identity) => id.caller === 'user'

export const tasksRoutes: FastifyPluginAsyncTypebox<TasksRoutesOptions> = async (app, opts) => {
  const { repo } = opts

  // Hooks of this plugin cover only its routes. Both run in onRequest, before
  // the body is read or anything is validated: a stranger learns nothing,
  // not even whether the input was well formed.
  app.addHook('onRequest', requireGatewayIdentity(opts.proofKey, opts.proofWindowMs, isUser))
  app.addHook('onRequest', async (request) => {
    const { user_id: pathUserId } = request.params as { user_id?: string }
    if (pathUserId !== request.identity?.userId) throw errors.forbidden()
  })

  // One body for "no such id", "not a UUID" and "someone else's": ids cannot be probed.
  const notFound = () => errors.notFound('Task not found')

  app.get(
    '/api/:user_id/tasks',
    { schema: { params: UserParams, querystring: ListQuery, response: { 200: Type.Array(TaskSchema), ...errorResponses } } },
    async (request) => repo.list(request.params.user_id, request.query),
  )

  app.post(
    '/api/:user_id/tasks',
    {
      schema: { params: UserParams, body: CreateTaskBody, response: { 201: TaskSchema, ...errorResponses } },
    },
    async (request, reply) => {
      const title = cleanTitle(request.body.title)
      const description = request.body.description ?? null
      if (description !== null) checkText('body/description', description)
      const task = await repo.create(request.params.user_id, { title, description })
      return reply.code(201).send(task)
    },
  )

  app.get(
    '/api/:user_id/tasks/:id',
    { schema: { params: TaskParams, response: { 200: TaskSchema, ...errorResponses } } },
    async (request) => {
      const { user_id, id } = request.params
      const task = isUuid(id) ? await repo.get(user_id, id) : null
      if (!task) throw notFound()
      return task
    },
  )

  app.put(
    '/api/:user_id/tasks/:id',
    {
      schema: { params: TaskParams, body: UpdateTaskBody, response: { 200: TaskSchema, ...errorResponses } },
    },
    async (request) => {
      const { user_id, id } = request.params
      const body = request.body
      // Validate the whole body before looking the id up: bad input is 400 whatever the id.
      const changes: TaskChanges = { title: cleanTitle(body.title) }
      // Absent means "leave as is"; an explicit null clears the description.
      if (body.description !== undefined) {
        if (body.description !== null) checkText('body/description', body.description)
        changes.description = body.description
      }
      if (body.completed !== undefined) changes.completed = body.completed
      const task = isUuid(id) ? await repo.update(user_id, id, changes) : null
      if (!task) throw notFound()
      return task
    },
  )

  app.patch(
    '/api/:user_id/tasks/:id/complete',
    { schema: { params: TaskParams, response: { 200: TaskSchema, ...errorResponses } } },
    async (request) => {
      const { user_id, id } = request.params
      const task = isUuid(id) ? await repo.toggleCompleted(user_id, id) : null
      if (!task) throw notFound()
      return task
    },
  )

  app.delete(
    '/api/:user_id/tasks/:id',
    { schema: { params: TaskParams, response: { 204: Type.Null(), ...errorResponses } } },
    async (request, reply) => {
      const { user_id, id } = request.params
      const deleted = isUuid(id) ? await repo.remove(user_id, id) : false
      if (!deleted) throw notFound()
      return reply.code(204).send(null)
    },
  )

  if (opts.events) await app.register(taskEventsRoutes, { hub: opts.events })
}
