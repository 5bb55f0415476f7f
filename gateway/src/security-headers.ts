/**
 * Browser-facing hardening headers (helmet's), the set OWASP names for a JSON
 * API: nosniff, HSTS, CSP default-src 'none' with frame-ancestors 'none',
 * X-Frame-Options, no referrer, and a cross-origin resource policy. They are the same for
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
    // Only ours: helmet's defaults add a dozen directives meant for HTML pages.
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    xFrameOptions: { action: 'deny' },
    crossOriginResourcePolicy: { policy: 'cross-origin' }, // an API called from allowed origins
    // Headers for HTML documents or for browsers long gone: every byte is on every answer.
    crossOriginOpenerPolicy: false,
    originAgentCluster: false,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false,
  })({} as never, res as never, () => {
    done = true
  })
  if (!done) throw new Error('helmet did not complete synchronously')
  return headers
}
