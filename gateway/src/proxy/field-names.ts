/**
 * An upstream answer's field names, lower-cased, from undici's raw header
 * Buffers. `buf.toString('latin1').toLowerCase()` makes two new strings a
 * field, and V8 then hashes each one again wherever it is used as a key (the
 * dropped-fields Set, Fastify's header object): in a perf profile of the
 * gateway under wrk, the forwarder's header loop with those hashes and
 * string-table lookups came to about 2.5 us a request (onHeaders 1.2,
 * ComputeAndSetRawHash 0.95, StringTable lookups 0.45). The fields upstreams
 * send are nearly always the same few: those are matched byte by byte,
 * ignoring case, against constant strings (interned once, their hashes
 * kept); any other name is converted as before.
 */

/** Field names an answer commonly carries, lower-case (the dropped ones included). */
const COMMON_FIELDS = [
  'accept-ranges',
  'access-control-allow-credentials',
  'access-control-allow-headers',
  'access-control-allow-methods',
  'access-control-allow-origin',
  'access-control-allow-private-network',
  'access-control-expose-headers',
  'access-control-max-age',
  'age',
  'allow',
  'cache-control',
  'connection',
  'content-disposition',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-range',
  'content-type',
  'date',
  'etag',
  'expires',
  'keep-alive',
  'last-modified',
  'link',
  'location',
  'pragma',
  'proxy-connection',
  'ratelimit',
  'ratelimit-policy',
  'retry-after',
  'server',
  'set-cookie',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'vary',
  'www-authenticate',
  'x-content-type-options',
  'x-powered-by',
  'x-request-id',
]

interface Known {
  readonly name: string
  readonly bytes: Uint8Array
}

/** Candidates by length: a name is compared only with those of its own length. */
const BY_LENGTH: Array<Known[] | undefined> = []
for (const name of COMMON_FIELDS) {
  if (!/^[a-z-]+$/.test(name)) throw new Error(`field-names: ${name} is not lower-case letters and dashes`)
  ;(BY_LENGTH[name.length] ??= []).push({ name, bytes: Buffer.from(name, 'latin1') })
}

/** The field name in lower case: one of the constant strings above when it is one of them, whatever its case. */
export function fieldName(raw: Buffer): string {
  const candidates = BY_LENGTH[raw.length]
  if (candidates !== undefined) {
    next: for (let c = 0; c < candidates.length; c++) {
      const known = candidates[c]!
      const bytes = known.bytes
      for (let i = 0; i < bytes.length; i++) {
        const b = bytes[i]!
        const r = raw[i]!
        // Equal, or the upper-case form of a letter (0x20 is the case bit of ASCII letters, and only of letters).
        if (r !== b && (b < 0x61 || (r | 0x20) !== b)) continue next
      }
      return known.name
    }
  }
  return raw.toString('latin1').toLowerCase()
}
