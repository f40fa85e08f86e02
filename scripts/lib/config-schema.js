'use strict';
// JSON schema of gateway.yaml. Defaults live here (Ajv `useDefaults`), so the rendered
// config and the Lua side always see every key. Later issues add sections; keep
// `additionalProperties: false` so a typo is an error, not a silently ignored key.

// Scalars that end up in nginx.conf must not be able to inject nginx syntax.
const NGINX_SAFE = '^[^;{}"\'\\\\$#\\s\\x00-\\x1f\\x7f]*$';

// Header names (CORS lists): RFC 9110 tokens.
const HEADER_NAME = "^[!#%&'*+.^_`|~0-9A-Za-z-]+$";
// An origin as browsers send it: scheme://host[:port], no path; or "*".
const ORIGIN = '^(\\*|https?://[A-Za-z0-9.-]+(:\\d{1,5})?|https?://\\[[0-9A-Fa-f:]+\\](:\\d{1,5})?)$';
const TENANT_ID = '^[A-Za-z0-9._:-]{1,128}$';
const SHA256_HEX = '^[0-9a-fA-F]{64}$';
// state.redis: a host (IPv4, [IPv6] or DNS name) and REDIS_URL.
const REDIS_HOST =
  '^(\\d{1,3}(\\.\\d{1,3}){3}|\\[[0-9a-fA-F:]+\\]|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)$';
const REDIS_URL = '^redis://(:[^@\\s]+@)?[^:/@\\s]+(:\\d{1,5})?(/\\d{1,4})?/?$';
// A client network for nginx's geo module: an IPv4 or IPv6 address with an optional /prefix.
const CIDR = '^(\\d{1,3}(\\.\\d{1,3}){3}(/\\d{1,2})?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(/\\d{1,3})?)$';
const cidrList = { type: 'array', maxItems: 1000, uniqueItems: true, default: [], items: { type: 'string', pattern: CIDR, maxLength: 64 } };
// The old gateway's URL (migration.legacy_url): http://host[:port], host an IPv4 address, an
// [IPv6] address or a DNS name; nothing else (no path, credentials, spaces or nginx syntax).
const HOST_LABEL = '[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
// A name server: IPv4 or [IPv6], optional :port.
const RESOLVER = '^(\\d{1,3}(\\.\\d{1,3}){3}|\\[[0-9A-Fa-f:.]+\\])(:\\d{1,5})?$';
const LEGACY_URL = `^http://(\\d{1,3}(\\.\\d{1,3}){3}|\\[[0-9A-Fa-f:.]+\\]|${HOST_LABEL}(\\.${HOST_LABEL})*)(:\\d{1,5})?/?$`;
// An OTLP/HTTP traces URL (tracing.endpoint): http://host[:port][/path], host as in LEGACY_URL.
const OTLP_URL = `^http://(\\d{1,3}(\\.\\d{1,3}){3}|\\[[0-9A-Fa-f:.]+\\]|${HOST_LABEL}(\\.${HOST_LABEL})*)(:\\d{1,5})?(/[A-Za-z0-9._~/-]*)?$`;

// A NATS subject for request/reply: dot-separated tokens of A-Z a-z 0-9 _ - (no wildcards,
// no empty token, no whitespace).
const NATS_SUBJECT = '^[A-Za-z0-9_\\-]+(\\.[A-Za-z0-9_\\-]+)*$';
// A configured NATS route's path: /-separated segments, each a literal of URL-safe characters or
// a `{name}` parameter (lower-case name); more rules (unique names, collisions) in config.js.
const NATS_ROUTE_PATH = '^(/([A-Za-z0-9._~-]+|\\{[a-z][a-z0-9_]{0,31}\\}))+$';
const ROUTE_NAME = '^[a-z][a-z0-9_]{0,63}$';

// The Router admin routes of CONTRACT §12 (C-GW parity): the default entries of `nats_routes`.
const ADMIN_ROUTES = [
  {
    name: 'admin_extension_health',
    method: 'GET',
    path: '/api/v1/extensions/health',
    subject: 'beamline.router.v1.admin.get_extension_health',
    body: 'empty',
  },
  {
    name: 'admin_circuit_breakers',
    method: 'GET',
    path: '/api/v1/extensions/circuit-breakers',
    subject: 'beamline.router.v1.admin.get_circuit_breaker_states',
    body: 'empty',
  },
  {
    name: 'admin_policy_dry_run',
    method: 'POST',
    path: '/api/v1/policies/dry-run',
    subject: 'beamline.router.v1.admin.dry_run_pipeline',
    body: 'forward',
  },
  {
    name: 'admin_policy_complexity',
    method: 'GET',
    path: '/api/v1/policies/{tenant_id}/{policy_id}/complexity',
    subject: 'beamline.router.v1.admin.get_pipeline_complexity',
    body: 'path_params',
  },
];

// rate_limit.redis (v1, host an IP) and state.redis (host also a DNS name, REDIS_URL): one shape.
const IP_HOST = '^(\\d{1,3}(\\.\\d{1,3}){3}|\\[[0-9a-fA-F:]+\\])$';
const redisSchema = (o) => ({
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    // redis://[:password@]host:port[/db] (env REDIS_URL); parsed by the loader into host, port,
    // password and database, which it then overrides.
    ...(o.url ? { url: { type: 'string', minLength: 1, maxLength: 4096, pattern: REDIS_URL } } : {}),
    // Cosockets resolve DNS names only with nginx's `resolver`.
    host: { type: 'string', default: '127.0.0.1', pattern: o.host },
    port: { type: 'integer', minimum: 1, maximum: 65535, default: 6379 },
    password: { type: 'string', minLength: 1, maxLength: 4096, pattern: '^[\\x20-\\x7e]+$' },
    database: { type: 'integer', minimum: 0, maximum: 1024, default: 0 },
    // Every Redis call (connect, send, read) has this timeout.
    timeout_ms: { type: 'integer', minimum: 1, maximum: 60000, default: o.timeout_ms },
    pool_size: { type: 'integer', minimum: 1, maximum: 10000, default: 64 },
    keepalive_ms: { type: 'integer', minimum: 1000, maximum: 3600000, default: 60000 },
    key_prefix: { type: 'string', maxLength: 128, pattern: '^[\\x21-\\x7e]*$', default: o.key_prefix },
    // Redis unreachable: fail_open = the request goes on without the failed part (the rate
    // limit counts in this instance's shared dict meanwhile, no idempotency, decision not
    // stored); fail_closed = 503 for a request that needs it.
    on_error: { enum: ['fail_open', 'fail_closed'], default: 'fail_open' },
    // After a connection error a worker skips Redis this long before trying again.
    retry_after_ms: { type: 'integer', minimum: 0, maximum: 600000, default: 1000 },
  },
});

const rateLimit = (limit) => ({
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 1e9, default: limit },
    window_seconds: { type: 'integer', minimum: 1, maximum: 86400, default: 60 },
  },
});

const route = (limit) => ({
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    enabled: { type: 'boolean', default: true },
    // Per-route Router timeout; falls back to router.request_timeout_ms.
    timeout_ms: { type: 'integer', minimum: 1, maximum: 600000 },
    rate_limit: rateLimit(limit),
  },
});

const schema = {
  $id: 'https://beamline.dev/schemas/gateway.json',
  type: 'object',
  additionalProperties: false,
  properties: {
    server: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        listen: { type: 'string', default: '0.0.0.0', pattern: '^(\\d{1,3}(\\.\\d{1,3}){3}|\\[[0-9a-fA-F:]+\\]|localhost)$' },
        port: { type: 'integer', minimum: 1, maximum: 65535, default: 8080 },
        // A number, or "auto" (one per core).
        workers: { oneOf: [{ type: 'integer', minimum: 1, maximum: 256 }, { const: 'auto' }], default: 1 },
        worker_connections: { type: 'integer', minimum: 64, maximum: 1048576, default: 4096 },
        // Open-file limit of each worker (nginx worker_rlimit_nofile; 0 = inherit the shell's).
        // Every open stream is one descriptor: raise it with worker_connections for many streams.
        worker_rlimit_nofile: { type: 'integer', minimum: 0, maximum: 1048576, default: 0 },
        // Unprivileged user for worker processes when nginx starts as root.
        user: { type: 'string', pattern: NGINX_SAFE, minLength: 1, maxLength: 64 },
        keepalive_timeout_seconds: { type: 'integer', minimum: 0, maximum: 3600, default: 65 },
        client_header_timeout_seconds: { type: 'integer', minimum: 1, maximum: 600, default: 10 },
        client_body_timeout_seconds: { type: 'integer', minimum: 1, maximum: 600, default: 10 },
        send_timeout_seconds: { type: 'integer', minimum: 1, maximum: 600, default: 10 },
        worker_shutdown_timeout_seconds: { type: 'integer', minimum: 1, maximum: 600, default: 10 },
        // Requests in progress per client address (nginx limit_conn; 0 = off). Over it: 503
        // `unavailable` with Retry-After: 1. Behind a load balancer every client shares its
        // address: raise it, or turn it off there.
        max_connections_per_client: { type: 'integer', minimum: 0, maximum: 1048576, default: 1024 },
        // Shared memory of the per-address counters (about 16k addresses per MB).
        conn_limit_zone_size_mb: { type: 'integer', minimum: 1, maximum: 1024, default: 4 },
        // Each worker's Lua GC pause (collectgarbage "setpause", %): a collection cycle starts
        // when the heap reaches this share of what the last one kept. LuaJIT's default is 200;
        // 400 spends ~10 % less worker CPU per decide for a Lua heap up to ~2.5x larger between
        // collections (docs/BENCHMARKS.md, issue 15).
        lua_gc_pause: { type: 'integer', minimum: 100, maximum: 1000, default: 400 },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // nginx writes request headers (API keys included) into its own lines at info and debug
        // (e.g. "client sent duplicate header line"): notice is the lowest level that never
        // does; the gateway warns at start when info or debug is set (docs/SECURITY.md).
        level: { enum: ['debug', 'info', 'notice', 'warn', 'error', 'crit'], default: 'notice' },
        // Access log destination: a path (relative to the runtime prefix), "stdout", or "off".
        access_log: { type: 'string', pattern: NGINX_SAFE, minLength: 1, maxLength: 512, default: 'logs/access.log' },
        // 0: one write(2) per request. N > 0: nginx buffers N KiB of lines per worker and writes
        // them when full, after access_log_flush_ms, on reopen (USR1) and on exit.
        access_log_buffer_kb: { type: 'integer', minimum: 0, maximum: 1024, default: 0 },
        access_log_flush_ms: { type: 'integer', minimum: 10, maximum: 60000, default: 1000 },
        error_log: { type: 'string', pattern: NGINX_SAFE, minLength: 1, maxLength: 512, default: 'logs/error.log' },
      },
    },
    nats: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        servers: {
          type: 'array',
          minItems: 1,
          maxItems: 64,
          default: ['nats://127.0.0.1:4222'],
          items: { type: 'string', pattern: '^(nats|tls)://([^\\s/@]+@)?[A-Za-z0-9.\\-]+(:\\d{1,5})?$' },
        },
        token: { type: 'string', minLength: 1, maxLength: 4096, pattern: '^[\\x21-\\x7e]+$' },
        user: { type: 'string', minLength: 1, maxLength: 256, pattern: '^[\\x21-\\x7e]+$' },
        password: { type: 'string', minLength: 1, maxLength: 4096, pattern: '^[\\x20-\\x7e]+$' },
        nkey_seed: { type: 'string', pattern: '^SU[A-Z2-7]{56}$' },
        name: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$', default: 'beamline-gateway' },
        connect_timeout_ms: { type: 'integer', minimum: 10, maximum: 60000, default: 2000 },
        reconnect_wait_ms: { type: 'integer', minimum: 10, maximum: 60000, default: 250 },
        reconnect_wait_max_ms: { type: 'integer', minimum: 10, maximum: 600000, default: 5000 },
        ping_interval_seconds: { type: 'integer', minimum: 1, maximum: 3600, default: 30 },
        tls: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            ca_file: { type: 'string', pattern: NGINX_SAFE, minLength: 1 },
            cert_file: { type: 'string', pattern: NGINX_SAFE, minLength: 1 },
            key_file: { type: 'string', pattern: NGINX_SAFE, minLength: 1 },
            server_name: { type: 'string', pattern: '^[A-Za-z0-9.\\-]+$' },
            verify: { type: 'boolean', default: true },
            // lua_ssl_verify_depth: longest accepted chain between the server certificate and the CA
            verify_depth: { type: 'integer', minimum: 1, maximum: 16, default: 3 },
          },
        },
      },
    },
    // Host names in nats.servers (and every other peer the Lua side connects to) are resolved
    // by nginx's own resolver, which reads neither /etc/hosts nor resolv.conf's `search`: the
    // `resolver` directive is rendered from `resolvers` (empty: the name servers of
    // `resolv_conf`), and names listed in `hosts_file` (localhost included) are looked up there
    // first, when nginx starts or reloads.
    dns: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        resolvers: { type: 'array', maxItems: 16, default: [], items: { type: 'string', pattern: RESOLVER } },
        resolv_conf: { type: 'string', pattern: NGINX_SAFE, minLength: 1, maxLength: 512, default: '/etc/resolv.conf' },
        hosts_file: { type: 'string', pattern: NGINX_SAFE, minLength: 1, maxLength: 512, default: '/etc/hosts' },
        // How long nginx caches an answer: a server that moves (a pod restarted elsewhere) is
        // found again on the first reconnect after this.
        valid_seconds: { type: 'integer', minimum: 1, maximum: 86400, default: 10 },
        timeout_seconds: { type: 'integer', minimum: 1, maximum: 60, default: 2 },
        // Also ask for AAAA records (off: IPv4 only, as most NATS and Redis deployments).
        ipv6: { type: 'boolean', default: false },
      },
    },
    router: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        decide_subject: {
          type: 'string',
          pattern: NATS_SUBJECT,
          maxLength: 256,
          default: 'beamline.router.v1.decide',
        },
        request_timeout_ms: { type: 'integer', minimum: 1, maximum: 600000, default: 5000 },
        // Timeout of the nats_routes (the admin routes of §12) without their own timeout_ms;
        // absent: request_timeout_ms.
        admin_timeout_ms: { type: 'integer', minimum: 1, maximum: 600000 },
      },
    },
    // HTTP → NATS request/reply routes (CONTRACT §12), one generic handler
    // (src-ts/beamline/handlers/nats_route.ts). Giving the list replaces the default (the four
    // Router admin routes): list them too to keep them. Collisions with other routes, duplicate
    // names and path parameters are checked in scripts/lib/config.js.
    nats_routes: {
      type: 'array',
      maxItems: 256,
      default: ADMIN_ROUTES,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'method', 'path', 'subject'],
        properties: {
          // The route's name: metrics label, access-log route, error log.
          name: { type: 'string', pattern: ROUTE_NAME },
          method: { enum: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] },
          // e.g. /api/v1/policies/{tenant_id}/{policy_id}/complexity; a segment named tenant_id
          // must equal X-Tenant-ID (else 403).
          path: { type: 'string', maxLength: 512, pattern: NATS_ROUTE_PATH },
          subject: { type: 'string', maxLength: 256, pattern: NATS_SUBJECT },
          // empty: {}; forward: the client's JSON object (415/413/400 rules of §2, §5);
          // path_params: {"<name>":"<segment>",…}.
          body: { enum: ['empty', 'forward', 'path_params'], default: 'empty' },
          // Router timeout of this route; absent: router.admin_timeout_ms, else request_timeout_ms.
          timeout_ms: { type: 'integer', minimum: 1, maximum: 600000 },
          // The routes.<name> whose rate limit counts this route's requests (per tenant).
          rate_limit_route: { type: 'string', pattern: ROUTE_NAME, default: 'admin' },
          // With auth.enabled: only keys with `admin: true` may call it (else 403).
          admin: { type: 'boolean', default: true },
        },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        body_bytes: { type: 'integer', minimum: 1, maximum: 67108864, default: 1048576 },
      },
    },
    routes: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        decide: route(50),
        messages: route(100),
        // The Router admin routes (nats_routes with rate_limit_route: admin).
        admin: route(60),
        // Opening a stream (GET /api/v1/messages/stream, /api/v1/results/stream), CONTRACT §11.
        streams: route(60),
      },
    },
    response_format: { enum: ['canonical', 'flat'], default: 'canonical' },
    decision_cache: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        ttl_seconds: { type: 'integer', minimum: 1, maximum: 86400 * 30, default: 300 },
        size_mb: { type: 'integer', minimum: 1, maximum: 4096, default: 16 },
        // Stored decisions per tenant (each decide may store two ids); past it the tenant's own
        // oldest go first, so a tenant cannot push another one's decisions out (docs/SECURITY.md).
        max_per_tenant: { type: 'integer', minimum: 1, maximum: 10000000, default: 10000 },
      },
    },
    // Where the per-route limits (routes.*.rate_limit) are counted.
    rate_limit: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // shared_dict: one count per gateway instance (all its workers); redis: one count for
        // every instance that uses the same Redis.
        backend: { enum: ['shared_dict', 'redis'], default: 'shared_dict' },
        shared_dict_size_mb: { type: 'integer', minimum: 1, maximum: 4096, default: 8 },
        // v1: with `backend: redis`, these keys fill the `state.redis` keys that are not set.
        redis: redisSchema({ host: IP_HOST, timeout_ms: 100, key_prefix: 'beamline:rl:' }),
      },
    },
    // Where the state that must be the same on every instance lives (CONTRACT §13): rate-limit
    // counts, Idempotency-Key records and stored decisions. local: this instance's shared dicts
    // (per instance); redis: one Redis shared by every instance. `rate_limit.backend: redis`
    // (v1) is an alias of `state.backend: redis` (scripts/lib/config.js).
    state: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // The loader sets it before the defaults apply (redis when the v1 rate_limit.backend is).
        backend: { enum: ['local', 'redis'], default: 'local' },
        redis: redisSchema({ host: REDIS_HOST, timeout_ms: 50, key_prefix: 'beamline:', url: true }),
      },
    },
    idempotency: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        ttl_seconds: { type: 'integer', minimum: 1, maximum: 86400 * 30, default: 86400 },
        size_mb: { type: 'integer', minimum: 1, maximum: 4096, default: 32 },
        // Idempotency-Key records per tenant, both backends: past it the tenant's own oldest go
        // first, and a tenant within its share is never evicted by another (docs/SECURITY.md;
        // local: beamline.tenant_ring, Redis: the tenant's sorted-set index).
        max_keys_per_tenant: { type: 'integer', minimum: 1, maximum: 10000000, default: 10000 },
        // An in-flight marker lives the route's Router timeout plus this long, so a request
        // whose gateway died cannot block its key for longer.
        in_flight_grace_seconds: { type: 'integer', minimum: 1, maximum: 3600, default: 60 },
      },
    },
    auth: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: false },
        api_keys: {
          type: 'array',
          default: [],
          maxItems: 100000,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['tenant_id', 'key_sha256'],
            properties: {
              tenant_id: { type: 'string', pattern: TENANT_ID },
              // SHA-256 of the key, hex (e.g. `printf %s "$KEY" | sha256sum`).
              key_sha256: { type: 'string', pattern: SHA256_HEX },
              // A label for operators; never used by the gateway.
              name: { type: 'string', maxLength: 128 },
              // May call the admin nats_routes (CONTRACT §12).
              admin: { type: 'boolean', default: false },
            },
          },
        },
      },
    },
    cors: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // Empty: CORS is off (OPTIONS → 405).
        allowed_origins: {
          type: 'array',
          default: [],
          maxItems: 1000,
          uniqueItems: true,
          items: { type: 'string', pattern: ORIGIN, maxLength: 512 },
        },
        allow_credentials: { type: 'boolean', default: false },
        allowed_headers: {
          type: 'array',
          items: { type: 'string', pattern: HEADER_NAME, maxLength: 128 },
          default: [
            'Content-Type',
            'Authorization',
            'X-API-Key',
            'X-Tenant-ID',
            'X-Trace-ID',
            'X-Request-ID',
            'Idempotency-Key',
            'traceparent',
            'tracestate',
          ],
        },
        expose_headers: {
          type: 'array',
          items: { type: 'string', pattern: HEADER_NAME, maxLength: 128 },
          default: [
            'X-Request-Id',
            'X-Trace-Id',
            'X-RateLimit-Limit',
            'X-RateLimit-Remaining',
            'X-RateLimit-Reset',
            'Retry-After',
            'Idempotent-Replayed',
          ],
        },
        max_age_seconds: { type: 'integer', minimum: 0, maximum: 86400, default: 600 },
      },
    },
    // What /health tells whom: the NATS server address and the version only with `details: true`
    // or to clients in `details_from` (CIDRs); /healthz, /readyz and /health/live stay minimal.
    health: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        details: { type: 'boolean', default: false },
        details_from: cidrList,
      },
    },
    // Realtime streams over SSE (CONTRACT §11), fanned out through NATS.
    streams: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // GET /api/v1/messages/stream, and the message_created event published after each 200
        // decide/messages answer.
        messages_enabled: { type: 'boolean', default: true },
        // GET /api/v1/results/stream: every worker stays subscribed to results_subject.
        results_enabled: { type: 'boolean', default: true },
        events_subject_prefix: {
          type: 'string',
          default: 'beamline.gateway.v1.events',
          pattern: '^[A-Za-z0-9_\\-]+(\\.[A-Za-z0-9_\\-]+)*$',
          maxLength: 200,
        },
        results_subject: {
          type: 'string',
          default: 'caf.exec.result.v1',
          pattern: '^[A-Za-z0-9_\\-]+(\\.[A-Za-z0-9_\\-]+)*$',
          maxLength: 200,
        },
        // Open streams per tenant on this instance (all workers) → 429 beyond it.
        max_per_tenant: { type: 'integer', minimum: 1, maximum: 1048576, default: 100 },
        // Open streams per worker → 503 beyond it.
        max_per_worker: { type: 'integer', minimum: 1, maximum: 1048576, default: 10000 },
        // A stream whose unsent output passes this is ended (slow client).
        max_buffered_bytes: { type: 'integer', minimum: 1024, maximum: 1073741824, default: 1048576 },
        // Default heartbeat interval (the heartbeat_ms query parameter overrides it per stream).
        heartbeat_ms: { type: 'integer', minimum: 200, maximum: 300000, default: 15000 },
        // Results kept for late subscribers (0 = off), and their memory bound per instance
        // (split evenly between the workers, each of which keeps its own copy).
        results_replay_seconds: { type: 'integer', minimum: 0, maximum: 3600, default: 60 },
        results_replay_max_mb: { type: 'integer', minimum: 1, maximum: 4096, default: 16 },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        size_mb: { type: 'integer', minimum: 1, maximum: 1024, default: 4 },
      },
    },
    // OpenTelemetry trace export (OTLP/HTTP, JSON encoding): one server span per API request and
    // one client span per Router call, batched per worker by a timer (beamline.tracing). Off by
    // default; the OTEL_* environment variables of the OpenTelemetry spec override these keys.
    tracing: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: false },
        // The collector's traces URL (OTLP/HTTP): http://host[:port][/path], usually …:4318/v1/traces.
        endpoint: { type: 'string', maxLength: 300, pattern: OTLP_URL, default: 'http://127.0.0.1:4318/v1/traces' },
        // Root spans kept: a trace id ratio (deterministic); a sampled parent (traceparent) always wins.
        sample_ratio: { type: 'number', minimum: 0, maximum: 1, default: 1 },
        // Resource attribute service.name.
        service_name: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[\\x20-\\x7e]+$', default: 'beamline-gateway' },
        // Spans waiting for export, per worker; beyond it new spans are dropped and counted.
        queue_size: { type: 'integer', minimum: 1, maximum: 1000000, default: 4096 },
        // Spans per POST.
        batch_size: { type: 'integer', minimum: 1, maximum: 10000, default: 512 },
        // How often each worker's timer exports what is queued.
        flush_interval_ms: { type: 'integer', minimum: 10, maximum: 60000, default: 1000 },
        // Connect, send and read timeout of one POST to the collector.
        timeout_ms: { type: 'integer', minimum: 1, maximum: 60000, default: 2000 },
      },
    },
    // The traffic switch from the old gateways (docs/RUNBOOK.md, docs/MIGRATION.md "Traffic
    // switch"): API routes split by tenant between this gateway and `legacy_url`, shadow compare.
    migration: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // false: no split, no proxy, nothing rendered; the API is answered here only.
        enabled: { type: 'boolean', default: false },
        // The old gateway: http://host[:port], host an IPv4, [IPv6] or DNS name (resolved when
        // nginx starts or reloads). No path, no credentials. Required when enabled.
        legacy_url: { type: 'string', maxLength: 300, pattern: LEGACY_URL },
        // Tenants answered here: hash(tenant) % 100 < share_percent. `make switch PERCENT=N`.
        share_percent: { type: 'integer', minimum: 0, maximum: 100, default: 0 },
        // A path this gateway does not serve is proxied to the old gateway instead of 404
        // (CONTRACT §14), marked X-Beamline-Gateway: legacy. Only while enabled.
        proxy_unknown_paths: { type: 'boolean', default: true },
        // Honour X-Beamline-Gateway: legacy|new on a request (forces that side). Off by default:
        // with auth on only requests with a valid key may use it (docs/RUNBOOK.md).
        allow_override: { type: 'boolean', default: false },
        // Client networks (CIDRs) whose requests may use the override; empty: any client.
        override_from: cidrList,
        // connect / send / read timeout towards the old gateway.
        legacy_timeout_ms: { type: 'integer', minimum: 1, maximum: 600000, default: 10000 },
        // idle keep-alive connections to the old gateway, per worker.
        legacy_keepalive: { type: 'integer', minimum: 0, maximum: 10000, default: 32 },
        shadow: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            enabled: { type: 'boolean', default: false },
            // other: mirror every request to the side that did not answer it; legacy: only the
            // requests this gateway answered (to the old one); new: only those the old one answered.
            direction: { enum: ['other', 'legacy', 'new'], default: 'other' },
            // share of the eligible requests that are mirrored (random per request).
            sample_percent: { type: 'integer', minimum: 0, maximum: 100, default: 100 },
            // mirrored requests in flight per worker; beyond: dropped and counted.
            max_concurrency: { type: 'integer', minimum: 1, maximum: 10000, default: 32 },
            // request or response bodies larger than this are not compared (dropped, counted).
            max_body_bytes: { type: 'integer', minimum: 1024, maximum: 16777216, default: 65536 },
            timeout_ms: { type: 'integer', minimum: 1, maximum: 600000, default: 10000 },
            // JSON keys ignored at any depth when the two bodies are compared (volatile values).
            ignore_fields: {
              type: 'array',
              maxItems: 100,
              uniqueItems: true,
              items: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[\\x21-\\x7e]+$' },
              default: ['request_id', 'trace_id', 'message_id', 'timestamp'],
            },
          },
        },
      },
    },
  },
};

module.exports = {
  schema,
  RESOLVER,
  CIDR,
  NGINX_SAFE,
  ORIGIN,
  HEADER_NAME,
  TENANT_ID,
  SHA256_HEX,
  LEGACY_URL,
  OTLP_URL,
  NATS_SUBJECT,
  NATS_ROUTE_PATH,
  ROUTE_NAME,
  ADMIN_ROUTES,
};
