/**
 * Callback-style hook steps and their composition: each route's access rule
 * (address limit, token, user limit...) runs as one onRequest hook, with no
 * promise on the paths that can answer synchronously.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'

/** `done()` to go on, `done(err)` to answer with err. */
export type Step = (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => void

/** Several steps as one hook, in order, stopping at the first refusal. */
export function sequence(steps: Step[]): Step {
  if (steps.length === 1) return steps[0]!
  return function run(req, reply, done) {
    let i = 0
    const next = (err?: Error) => {
      if (err !== undefined || i === steps.length) return done(err)
      steps[i++]!(req, reply, next)
    }
    next()
  }
}

/** An async check as a step. */
export function asyncStep(fn: (req: FastifyRequest, reply: FastifyReply) => Promise<void>): Step {
  return (req, reply, done) => {
    fn(req, reply).then(() => done(), done)
  }
}
