/**
 * HTTP requests to a service process as the gateway sends them: a request id
 * and the identity proof signed over method, path and that id.
 */
import { randomUUID } from 'node:crypto'
import { signIdentity, type Identity } from '../identity.js'

export interface SignedResponse {
  status: number
  headers: Headers
  text: string
  /** Parsed body, or undefined when it is not JSON. */
  json: any
  ms: number
}

export interface SignedRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  path: string
  /** null: no proof at all. */
  identity: Identity | null
  body?: unknown
  timeoutMs?: number
}

/** fetch with the gateway's headers; a timeout or a network error rejects. */
export async function signedFetch(baseUrl: string, key: Buffer, req: SignedRequest): Promise<SignedResponse> {
  const requestId = randomUUID()
  const headers: Record<string, string> = {
    'x-request-id': requestId,
    ...(req.identity ? signIdentity(key, req.identity, req.method, req.path, requestId) : {}),
  }
  if (req.body !== undefined) headers['content-type'] = 'application/json'
  const started = performance.now()
  const res = await fetch(`${baseUrl}${req.path}`, {
    method: req.method,
    headers,
    ...(req.body === undefined ? {} : { body: JSON.stringify(req.body) }),
    signal: AbortSignal.timeout(req.timeoutMs ?? 15_000),
  })
  const text = await res.text()
  const ms = performance.now() - started
  let json: unknown
  try {
    json = text ? JSON.parse(text) : undefined
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json, ms }
}
