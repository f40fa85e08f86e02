'use strict';
// JSON schema of gateway.yaml. Defaults live here (Ajv `useDefaults`), so the rendered
// config and the Lua side always see every key. Later issues add sections; keep
// `additionalProperties: false` so a typo is an error, not a silently ignored key.

// Scalars that end up in nginx.conf must not be able to inject nginx syntax.
const NGINX_SAFE = '^[^;{}"\'\\\\$#\\s\\x00-\\x1f\\x7f]*$';

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
        // Unprivileged user for worker processes when nginx starts as root.
        user: { type: 'string', pattern: NGINX_SAFE, minLength: 1, maxLength: 64 },
        keepalive_timeout_seconds: { type: 'integer', minimum: 0, maximum: 3600, default: 65 },
        client_header_timeout_seconds: { type: 'integer', minimum: 1, maximum: 600, default: 10 },
        client_body_timeout_seconds: { type: 'integer', minimum: 1, maximum: 600, default: 10 },
        send_timeout_seconds: { type: 'integer', minimum: 1, maximum: 600, default: 10 },
        worker_shutdown_timeout_seconds: { type: 'integer', minimum: 1, maximum: 600, default: 10 },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: { enum: ['debug', 'info', 'notice', 'warn', 'error', 'crit'], default: 'info' },
        // Access log destination: a path (relative to the runtime prefix), "stdout", or "off".
        access_log: { type: 'string', pattern: NGINX_SAFE, minLength: 1, maxLength: 512, default: 'logs/access.log' },
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
          },
        },
      },
    },
    router: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        decide_subject: { type: 'string', pattern: '^[A-Za-z0-9_\\-]+(\\.[A-Za-z0-9_\\-]+)*$', maxLength: 256, default: 'beamline.router.v1.decide' },
        request_timeout_ms: { type: 'integer', minimum: 1, maximum: 600000, default: 5000 },
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
      },
    },
  },
};

module.exports = { schema, NGINX_SAFE };
