/**
 * The address key of the rate limits: exactly what @fastify/rate-limit's normalizeIP gives with a /64 for IPv6,
 * for every form an address can take (from the socket or, behind a trusted proxy, from X-Forwarded-For).
 */
import t from 'tap'
import { normalizeIP } from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import { clientKey } from '../src/limits/rate-limits.js'

const keyOf = (ip: string) => clientKey({ ip } as FastifyRequest)

t.test('IPv4, IPv6, mapped and odd forms: the same key as normalizeIP', async (t) => {
  const addresses = [
    '127.0.0.1',
    '10.0.0.7',
    '255.255.255.255',
    '0.0.0.0',
    '::1',
    '::',
    '2001:db8:1:2::1',
    '2001:DB8:1:2::FFFF',
    '2001:0db8:0001:0002:aaaa:0000:0000:0009',
    'fe80::1%eth0',
    '::ffff:127.0.0.1',
    '::FFFF:10.1.2.3',
    '::ffff:7f00:1',
    'unknown',
    'LOCALHOST',
    'not:an:address',
    '',
  ]
  for (const ip of addresses) t.equal(keyOf(ip), normalizeIP(ip, 64), JSON.stringify(ip))
})

t.test('one /64 is one key; IPv4-mapped addresses share the IPv4 key', async (t) => {
  t.equal(keyOf('2001:db8:1:2::1'), keyOf('2001:db8:1:2:ffff:ffff:ffff:ffff'))
  t.not(keyOf('2001:db8:1:2::1'), keyOf('2001:db8:1:3::1'))
  t.equal(keyOf('::ffff:192.0.2.5'), keyOf('192.0.2.5'))
})

t.test('random addresses of both families: the same key as normalizeIP', async (t) => {
  let seed = 424242
  const random = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n
  let same = 0
  const total = 2000
  for (let i = 0; i < total; i++) {
    const ip =
      i % 2 === 0
        ? Array.from({ length: 4 }, () => random(256)).join('.')
        : Array.from({ length: 8 }, () => random(65536).toString(16)[random(2) ? 'toUpperCase' : 'toLowerCase']()).join(':')
    if (keyOf(ip) === normalizeIP(ip, 64)) same++
    else t.fail(`differs for ${ip}`)
  }
  t.equal(same, total)
})
