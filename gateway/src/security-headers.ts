/**
 * Browser-facing hardening headers (helmet's: nosniff, HSTS, frame-ancestors,
 * no referrer, CSP default-src 'none' for an API...). They are the same for
 * every answer, so helmet runs once at start and each request only copies
 * the result.
 */
import helmet from 'helmet'

export function securityHeaders(): Record<string, string> {
  const headers: Record<string, string> = {}
  const res = {
    setHeader: (name: string, value: unknown) => {
      headers[name.toLowerCase()] = String(value)
    },
    removeHeader: (name: string) => {
      delete headers[name.toLowerCase()]
    },
    getHeader: (name: string) => headers[name.toLowerCase()],
  }
  let done = false
  helmet({
    contentSecurityPolicy: { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginResourcePolicy: { policy: 'cross-origin' }, // an API called from allowed origins
  })({} as never, res as never, () => {
    done = true
  })
  if (!done) throw new Error('helmet did not complete synchronously')
  return headers
}
