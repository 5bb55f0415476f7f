/**
 * One way to fail: a class per error code answers exactly the contract's
 * envelope (docs/API.md), database failures are told apart by SQLSTATE, Node
 * code and class (never by their text), and every failure has one one-line
 * description.
 */
import t from 'tap'
import pg from 'pg'
import {
  BadGateway,
  describeError,
  errors,
  HttpError,
  InvalidToken,
  PayloadTooLarge,
  ServiceUnavailable,
  TokenRevoked,
  toEnvelope,
  UriTooLong,
  ValidationError,
} from '../src/index.js'
import { isDatabaseUnavailable } from '../src/db.js'

t.test('a class per code: status, code and detail of the envelope, headers with it', async (t) => {
  t.same(toEnvelope(new UriTooLong()), { status: 414, body: { detail: 'Request URI is too long', error_code: 'URI_TOO_LONG', status_code: 414 }, headers: {} })
  t.same(toEnvelope(new PayloadTooLarge()).body, { detail: 'Request body is too large', error_code: 'PAYLOAD_TOO_LARGE', status_code: 413 })
  t.same(toEnvelope(new ValidationError('body/title is required')).body, { detail: 'body/title is required', error_code: 'VALIDATION_ERROR', status_code: 400 })
  const revoked = toEnvelope(new TokenRevoked())
  t.same(revoked.body, { detail: 'Token has been revoked', error_code: 'TOKEN_REVOKED', status_code: 401 })
  t.match(revoked.headers['www-authenticate'], /error="invalid_token"/)
  t.same(toEnvelope(new ServiceUnavailable('Upstream service unavailable')).headers, { 'retry-after': '2' }, 'a 503 says when to retry')
  t.same(toEnvelope(errors.unavailable('Server is busy, retry later', 1)).headers, { 'retry-after': '1' })

  const err = new InvalidToken()
  t.ok(err instanceof HttpError && err instanceof Error)
  t.equal(err.code, 'INVALID_TOKEN', 'named by code, as @fastify/error names its errors')
  t.equal(err.statusCode, 401)
  t.equal(InvalidToken.code, 'INVALID_TOKEN')
  t.equal(BadGateway.statusCode, 502)
  t.not(new TokenRevoked().headers, new TokenRevoked().headers, 'no two errors share a headers object')
})

t.test('an unavailable database is known by SQLSTATE, Node code and class, never by message', async (t) => {
  const sqlstate = (code: string) => Object.assign(new pg.DatabaseError('whatever the server says', 0, 'error'), { code })
  t.ok(isDatabaseUnavailable(sqlstate('57P01')), 'admin shutdown')
  t.ok(isDatabaseUnavailable(sqlstate('08006')), 'connection failure')
  t.ok(isDatabaseUnavailable(sqlstate('57014')), 'statement timeout')
  t.notOk(isDatabaseUnavailable(sqlstate('23505')), 'a unique violation is an answer, not an outage')
  t.notOk(isDatabaseUnavailable(new pg.DatabaseError('Connection terminated', 0, 'error')), 'a server error whose text looks like an outage')
  t.ok(isDatabaseUnavailable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })))
  // node-postgres's own: lost, timed out, not queryable; plain Errors with no code.
  t.ok(isDatabaseUnavailable(new Error('Connection terminated unexpectedly')))
  t.ok(isDatabaseUnavailable(new Error('timeout exceeded when trying to connect')))
  t.notOk(isDatabaseUnavailable(new TypeError('Cannot read properties of undefined')), 'a bug is a 500')
  t.notOk(isDatabaseUnavailable(errors.conflict('Email already registered')), 'ours pass through')
  t.notOk(isDatabaseUnavailable(undefined))
})

t.test('describeError: one line, the code when the text does not say it', async (t) => {
  const syntax = Object.assign(new pg.DatabaseError('syntax error at or near "TABEL"', 0, 'error'), { code: '42601' })
  t.equal(describeError(syntax), 'syntax error at or near "TABEL" (42601)')
  t.equal(describeError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })), 'connect ECONNREFUSED 127.0.0.1:1')
  const everyAddress = Object.assign(new AggregateError([new Error('connect ECONNREFUSED ::1:1'), new Error('connect ECONNREFUSED 127.0.0.1:1')], ''), { code: 'ECONNREFUSED' })
  t.equal(describeError(everyAddress), 'connect ECONNREFUSED ::1:1; connect ECONNREFUSED 127.0.0.1:1')
  t.equal(describeError(new Error('two\n  lines')), 'two lines', 'never several lines')
  t.equal(describeError(Object.assign(new Error(''), { code: 'EPIPE' })), 'EPIPE')
  t.equal(describeError(new Error('')), 'unknown error')
  t.equal(describeError('plain text'), 'plain text')
})
