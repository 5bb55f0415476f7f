/**
 * The shape of the gateway's declarative file (tollgate.yaml): issuers,
 * upstreams, rate-limit policies, routes, CORS and listeners. The committed
 * tollgate.schema.json is generated from this definition (`tollgate schema`),
 * so editors complete the file. Values may be `${VAR}` or `${VAR:-default}`
 * references, resolved before this schema is checked.
 */
import { Type, type Static } from '@tollgate/common/typebox'

const Name = Type.String({ pattern: '^[a-z][a-z0-9_-]*$', maxLength: 64, description: 'lower-case letters, digits, - and _' })
const Method = Type.Union(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].map((m) => Type.Literal(m)))
const Path = Type.String({ pattern: '^/', maxLength: 1024, description: 'find-my-way syntax: /api/:user_id/notes' })
const Url = Type.String({ pattern: '^https?://[^\\s]+$', description: 'http(s) URL' })
const PositiveInt = (description: string, maximum = 86_400_000) => Type.Integer({ minimum: 1, maximum, description })

const Issuer = Type.Object(
  {
    issuer: Type.String({ minLength: 1, description: 'the iss claim' }),
    audience: Type.String({ minLength: 1, description: 'the aud claim' }),
    algorithms: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'accepted JWS algorithms; HS256 takes `secret`, the others `jwks_url`' }),
    secret: Type.Optional(Type.String({ minLength: 32, description: 'HS256 shared secret (use a ${VAR} reference)' })),
    jwks_url: Type.Optional(Url),
    required_claims: Type.Optional(Type.Array(Type.Union([Type.Literal('iat'), Type.Literal('jti')]), { description: 'claims required beyond exp and sub' })),
    max_lifetime_s: Type.Optional(PositiveInt('longest accepted exp - iat')),
    typ: Type.Optional(
      Type.String({ minLength: 1, description: 'the typ header its tokens must carry (e.g. at+jwt, RFC 9068); unset: not checked. Our own issuer (JWT_ISSUER) is always at+jwt' }),
    ),
  },
  { additionalProperties: false },
)

const HealthCheck = Type.Object(
  {
    path: Type.String({ pattern: '^/', default: '/health' }),
    interval_ms: Type.Optional(PositiveInt('time between probes')),
    timeout_ms: Type.Optional(PositiveInt('a probe slower than this failed')),
    unhealthy_after: Type.Optional(PositiveInt('consecutive failures that take a target out', 100)),
    healthy_after: Type.Optional(PositiveInt('consecutive successes that bring it back', 100)),
  },
  { additionalProperties: false },
)

const Upstream = Type.Object(
  {
    targets: Type.Union([Type.Array(Url, { minItems: 1 }), Type.String({ minLength: 1, description: 'comma-separated URLs' })], {
      description: 'one or more base URLs (a list, or one comma-separated string)',
    }),
    balance: Type.Optional(Type.Union([Type.Literal('round-robin'), Type.Literal('least-busy')])),
    pool_size: Type.Optional(PositiveInt('keep-alive connections per target', 10_000)),
    connect_timeout_ms: Type.Optional(PositiveInt('connection set-up', 60_000)),
    timeout_ms: Type.Optional(PositiveInt('time to the answer head, and between body chunks', 300_000)),
    health_check: Type.Optional(HealthCheck),
    openapi: Type.Optional(Type.String({ pattern: '^/', description: 'where the upstream publishes its OpenAPI document, merged into /docs' })),
    description: Type.Optional(Type.String({ description: 'the /docs tag description' })),
    service: Type.Optional(Type.String({ minLength: 1, description: "the service's name in /ready (default: the upstream's name)" })),
  },
  { additionalProperties: false },
)

const Policy = Type.Object(
  {
    key: Type.Union(['address', 'user', 'email', 'email+address', 'service'].map((k) => Type.Literal(k)), { description: 'what is counted' }),
    limit: PositiveInt('requests (or failures) per window', Number.MAX_SAFE_INTEGER),
    window_s: PositiveInt('window length in seconds', 86_400),
    count: Type.Optional(Type.Union([Type.Literal('all'), Type.Literal('failures')], { description: 'failures: only 401 answers keep their count' })),
    mode: Type.Optional(Type.Union([Type.Literal('exact'), Type.Literal('batched')], { description: 'default: exact for failure, sign-in, sign-up and service policies, batched for the others' })),
  },
  { additionalProperties: false },
)

const Route = Type.Object(
  {
    methods: Type.Array(Method, { minItems: 1 }),
    path: Type.Union([Path, Type.Array(Path, { minItems: 1 })]),
    upstream: Name,
    access: Type.String({ pattern: '^(anonymous|user|owner\\([A-Za-z_][A-Za-z0-9_]*\\))$', description: 'anonymous | user | owner(<path param>)' }),
    issuers: Type.Optional(Type.Union([Type.Literal('all'), Type.Array(Name, { minItems: 1 })], { description: 'issuer names whose tokens are accepted (default all)' })),
    policies: Type.Optional(Type.Array(Name, { description: 'rate-limit policies, by name' })),
    body: Type.Optional(Type.String({ pattern: '^(stream|json|json\\([A-Za-z_][A-Za-z0-9_]*\\))$', description: 'stream (default) | json | json(<schema name>)' })),
    forward_authorization: Type.Optional(Type.Boolean({ description: "send the client's bearer token upstream" })),
    revokes: Type.Optional(Type.Union([Type.Literal('token'), Type.Literal('user')], { description: 'a 2xx answer revokes the token, or all of the user\'s tokens' })),
    cache: Type.Optional(Type.Union([Type.Literal('private'), Type.Literal('public')], { description: 'private (default): no-store; public: the upstream cache headers pass' })),
    timeout_ms: Type.Optional(PositiveInt('overrides the upstream timeout', 300_000)),
    stream: Type.Optional(
      Type.Union([Type.Literal('sse'), Type.Literal('websocket')], {
        description:
          'a live stream, governed by the edge while open (closed at token expiry, revocation, shutdown; STREAMS_PER_USER): sse (the timeout is to the first byte only) or websocket (token in Sec-WebSocket-Protocol: bearer, <token>)',
      }),
    ),
  },
  { additionalProperties: false },
)

const InternalRoute = Type.Object(
  {
    methods: Type.Array(Method, { minItems: 1 }),
    path: Type.Union([Path, Type.Array(Path, { minItems: 1 })]),
    upstream: Name,
    access: Type.Union([Type.Literal('service'), Type.Literal('credential')], { description: 'service: a service token (allowlisted); credential: proven in the body' }),
    policies: Type.Optional(Type.Array(Name)),
  },
  { additionalProperties: false },
)

const StringList = Type.Union([Type.Array(Type.String()), Type.String({ description: 'comma-separated' })])

const Cors = Type.Object(
  {
    origins: Type.Optional(StringList),
    methods: Type.Optional(Type.Array(Method)),
    allowed_headers: Type.Optional(Type.Array(Type.String())),
    exposed_headers: Type.Optional(Type.Array(Type.String())),
    max_age_s: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
  },
  { additionalProperties: false },
)

const Listener = Type.Object(
  { host: Type.String({ minLength: 1 }), port: Type.Integer({ minimum: 0, maximum: 65535 }) },
  { additionalProperties: false },
)

export const GatewayFileSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    listeners: Type.Optional(
      Type.Object(
        {
          public: Type.Optional(Listener),
          internal: Type.Optional(Listener),
          admin: Type.Optional(
            Type.Object(
              { host: Type.String({ minLength: 1 }), port: Type.Integer({ minimum: 0, maximum: 65535 }) },
              { additionalProperties: false, description: 'GET /ready and GET /metrics: never publish it' },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    cors: Type.Optional(Cors),
    issuers: Type.Record(Name, Issuer, { additionalProperties: false, description: 'token issuers, by name; routes name the ones they accept' }),
    upstreams: Type.Record(Name, Upstream, { additionalProperties: false }),
    policies: Type.Optional(Type.Record(Name, Policy, { additionalProperties: false })),
    schemas: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.Object({}, { additionalProperties: true }), { description: 'JSON Schemas for `body: json(<name>)`' })),
    revocation_feed: Type.Optional(
      Type.Object({ upstream: Name }, { additionalProperties: false, description: 'the auth-service that publishes signed-out tokens (default: the upstream named auth)' }),
    ),
    routes: Type.Array(Route, { minItems: 1 }),
    internal_routes: Type.Optional(Type.Array(InternalRoute)),
  },
  { additionalProperties: false, title: 'Tollgate gateway configuration' },
)

export type GatewayFile = Static<typeof GatewayFileSchema>
export type RouteDecl = Static<typeof Route>
export type InternalRouteDecl = Static<typeof InternalRoute>
export type PolicyDecl = Static<typeof Policy>
export type UpstreamDecl = Static<typeof Upstream>
export type IssuerDecl = Static<typeof Issuer>
