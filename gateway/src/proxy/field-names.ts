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

/**
 * Field names an answer commonly carries, lower-case, besides those the forwarder drops (it adds its own
 * DROPPED_RESPONSE_HEADERS to these, so the two lists never need to be kept in step).
 */
export const COMMON_ANSWER_FIELDS = [
  'accept-ranges',
  'age',
  'allow',
  'cache-control',
  'content-disposition',
  'content-encoding',
  'content-language',
  'content-location',
  'content-range',
  'content-type',
  'etag',
  'expires',
  'last-modified',
  'link',
  'location',
  'pragma',
  'ratelimit',
  'ratelimit-policy',
  'retry-after',
  'set-cookie',
  'vary',
  'www-authenticate',
  'x-content-type-options',
]

interface Known {
  readonly name: string
  readonly bytes: Uint8Array
}

/**
 * A reader of field names that knows `names` (lower-case letters and dashes), built once at start: it returns
 * the field name in lower case, one of those constant strings when it is one of them, whatever its case.
 */
export function fieldNameReader(names: Iterable<string>): (raw: Buffer) => string {
  /** Candidates by length: a name is compared only with those of its own length. */
  const byLength: Array<Known[] | undefined> = []
  for (const name of new Set(names)) {
    if (!/^[a-z-]+$/.test(name)) throw new Error(`field-names: ${name} is not lower-case letters and dashes`)
    ;(byLength[name.length] ??= []).push({ name, bytes: Buffer.from(name, 'latin1') })
  }
  return function fieldName(raw: Buffer): string {
    const candidates = byLength[raw.length]
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
}
