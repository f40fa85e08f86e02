'use strict';
// Config validation: schema errors name the field and the rule, nginx-syntax injection is
// rejected, environment variables override the file.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { loadConfig, ConfigError } = require('../../scripts/lib/config');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'beamline-config-'));
let n = 0;
function file(text) {
  const f = path.join(dir, `gateway-${++n}.yaml`);
  fs.writeFileSync(f, text);
  return f;
}
function problems(text, env = {}) {
  try {
    loadConfig({ file: file(text), env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err.problems;
  }
  throw new Error('config was accepted');
}

describe('defaults', () => {
  test('an empty file gets every default', () => {
    const { config } = loadConfig({ file: file(''), env: {} });
    expect(config.server).toMatchObject({ listen: '0.0.0.0', port: 8080, workers: 1 });
    expect(config.nats.servers).toEqual(['nats://127.0.0.1:4222']);
    expect(config.router).toEqual({ decide_subject: 'beamline.router.v1.decide', request_timeout_ms: 5000 });
    expect(config.limits.body_bytes).toBe(1048576);
    expect(config.routes.decide.rate_limit).toEqual({ limit: 50, window_seconds: 60 });
    expect(config.routes.messages.rate_limit).toEqual({ limit: 100, window_seconds: 60 });
    expect(config.decision_cache.ttl_seconds).toBe(300);
    expect(config.response_format).toBe('canonical');
  });

  test('the shipped gateway.yaml and gateway.example.yaml are valid', () => {
    const root = path.resolve(__dirname, '..', '..');
    expect(() => loadConfig({ file: path.join(root, 'gateway.yaml'), env: {} })).not.toThrow();
    expect(() => loadConfig({ file: path.join(root, 'gateway.example.yaml'), env: {} })).not.toThrow();
  });
});

describe('schema errors name the field and the rule', () => {
  test.each([
    ['server:\n  port: 70000\n', 'server.port: must be <= 65535'],
    ['server:\n  port: "eighty"\n', 'server.port: must be integer'],
    ['server:\n  workers: many\n', 'server.workers: must be a positive integer or "auto"'],
    ['server:\n  prot: 1\n', 'server.prot: unknown key'],
    ['log:\n  level: loud\n', 'log.level: must be one of "debug", "info", "notice", "warn", "error", "crit"'],
    ['nats:\n  servers: []\n', 'nats.servers: must NOT have fewer than 1 items'],
    ['nats:\n  servers: ["http://127.0.0.1:4222"]\n', 'nats.servers[0]: must be a NATS URL'],
    ['router:\n  decide_subject: "beamline.*"\n', 'router.decide_subject: must be a NATS subject without wildcards'],
    ['router:\n  request_timeout_ms: 0\n', 'router.request_timeout_ms: must be >= 1'],
    ['limits:\n  body_bytes: -5\n', 'limits.body_bytes: must be >= 1'],
    ['routes:\n  decide:\n    rate_limit:\n      limit: 0\n', 'routes.decide.rate_limit.limit: must be >= 1'],
    ['routes:\n  unknown_route: {}\n', 'routes.unknown_route: unknown key'],
    ['response_format: nested\n', 'response_format: must be one of "canonical", "flat"'],
    ['nats:\n  user: gw\n', 'nats.user: nats.user and nats.password must be given together'],
    ['nats:\n  token: t\n  user: u\n  password: p\n', 'nats: give at most one of token, user/password, nkey_seed'],
    ['nats:\n  nkey_seed: SUXYZ\n', 'nats.nkey_seed: must be a user nkey seed'],
    ['- just\n- a list\n', '(top level): must be a mapping of sections'],
    ['server: {port: 1\n', 'YAML syntax'],
  ])('%j', (text, expected) => {
    const p = problems(text);
    expect(p.join('\n')).toContain(expected);
  });

  test('every problem is reported, not just the first', () => {
    const p = problems('server:\n  port: 0\nlog:\n  level: loud\n');
    expect(p).toHaveLength(2);
  });

  test('a missing file is a clear error', () => {
    expect(() => loadConfig({ file: path.join(dir, 'nope.yaml'), env: {} })).toThrow(/cannot read config file: ENOENT/);
  });
});

describe('nginx syntax injection is rejected', () => {
  test.each([
    ['server:\n  listen: "127.0.0.1; include /etc/passwd"\n', 'server.listen'],
    ['log:\n  access_log: "logs/a.log; evil"\n', 'log.access_log: must not contain nginx syntax'],
    ['log:\n  error_log: "logs/{x}"\n', 'log.error_log: must not contain nginx syntax'],
    ['log:\n  access_log: "logs/a\\nb"\n', 'log.access_log: must not contain control characters or newlines'],
    ['server:\n  user: "nobody}"\n', 'server.user: must not contain nginx syntax'],
    ['nats:\n  name: "gw;x"\n', 'nats.name: must match'],
    ['nats:\n  user: u\n  password: "p\\u0000"\n', 'nats.password: must not contain control characters'],
    ['nats:\n  tls:\n    ca_file: "/etc/ca.pem;"\n', 'nats.tls.ca_file: must not contain nginx syntax'],
    ['health:\n  details_from: ["10.0.0.0/8 1; evil"]\n', 'health.details_from[0]'],
    ['migration:\n  override_from: ["10.0.0.0/8}"]\n', 'migration.override_from[0]'],
  ])('%j', (text, expected) => {
    expect(problems(text).join('\n')).toContain(expected);
  });
});

describe('environment overrides', () => {
  const base = 'server:\n  port: 8080\n  workers: 2\nnats:\n  servers: ["nats://127.0.0.1:4222"]\nlog:\n  level: info\n';

  test('environment beats the file', () => {
    const { config } = loadConfig({
      file: file(base),
      env: {
        GATEWAY_PORT: '9090',
        GATEWAY_WORKERS: 'auto',
        NATS_URL: 'nats://127.0.0.1:5001, nats://127.0.0.1:5002',
        ROUTER_DECIDE_SUBJECT: 'custom.decide',
        ROUTER_REQUEST_TIMEOUT_MS: '1500',
        GATEWAY_BODY_LIMIT_BYTES: '2048',
        GATEWAY_RATE_LIMIT_ROUTES_DECIDE_LIMIT: '7',
        GATEWAY_RATE_LIMIT_MESSAGES: '9',
        GATEWAY_RATE_LIMIT_TTL_SECONDS: '30',
        LOG_LEVEL: 'WARN',
        GATEWAY_ACCESS_LOG_BUFFER_KB: '32',
      },
    });
    expect(config.server.port).toBe(9090);
    expect(config.server.workers).toBe('auto');
    expect(config.nats.servers).toEqual(['nats://127.0.0.1:5001', 'nats://127.0.0.1:5002']);
    expect(config.router).toEqual({ decide_subject: 'custom.decide', request_timeout_ms: 1500 });
    expect(config.limits.body_bytes).toBe(2048);
    expect(config.routes.decide.rate_limit).toEqual({ limit: 7, window_seconds: 30 });
    expect(config.routes.messages.rate_limit).toEqual({ limit: 9, window_seconds: 30 });
    expect(config.log.level).toBe('warn');
    expect(config.log.access_log_buffer_kb).toBe(32);
    expect(config.log.access_log_flush_ms).toBe(1000);
  });

  test('the access log buffer has bounds', () => {
    expect(() => loadConfig({ file: file(base), env: { GATEWAY_ACCESS_LOG_BUFFER_KB: '4096' } })).toThrow(
      /log\.access_log_buffer_kb.*GATEWAY_ACCESS_LOG_BUFFER_KB/s,
    );
    expect(() => loadConfig({ file: file(base), env: { GATEWAY_ACCESS_LOG_BUFFER_KB: 'lots' } })).toThrow(/GATEWAY_ACCESS_LOG_BUFFER_KB/);
  });

  test('unset and empty variables leave the file alone', () => {
    const { config } = loadConfig({ file: file(base), env: { GATEWAY_PORT: '', NATS_URL: '' } });
    expect(config.server.port).toBe(8080);
    expect(config.server.workers).toBe(2);
    expect(config.nats.servers).toEqual(['nats://127.0.0.1:4222']);
  });

  test('a bad environment value names the variable', () => {
    const p = problems(base, { GATEWAY_PORT: 'abc', NATS_URL: 'nats://ok:4222,bad url' });
    expect(p.join('\n')).toContain('server.port (from GATEWAY_PORT): must be integer');
    expect(p.join('\n')).toContain('nats.servers[1] (from NATS_URL): must be a NATS URL');
  });

  test('secrets can come from the environment', () => {
    const { config } = loadConfig({ file: file(base), env: { NATS_USER: 'gw', NATS_PASSWORD: 'pa ss' } });
    expect(config.nats).toMatchObject({ user: 'gw', password: 'pa ss' });
  });
});

describe('rate limit backend, idempotency, auth, CORS, metrics (issue 6)', () => {
  const HASH = 'a'.repeat(64);

  test('defaults', () => {
    const { config } = loadConfig({ file: file(''), env: {} });
    expect(config.rate_limit).toMatchObject({ backend: 'shared_dict', shared_dict_size_mb: 8 });
    expect(config.rate_limit.redis).toEqual({
      host: '127.0.0.1',
      port: 6379,
      database: 0,
      timeout_ms: 100,
      pool_size: 64,
      keepalive_ms: 60000,
      key_prefix: 'beamline:rl:',
      on_error: 'fail_open',
      retry_after_ms: 1000,
    });
    expect(config.idempotency).toEqual({
      enabled: true,
      ttl_seconds: 86400,
      size_mb: 32,
      max_keys_per_tenant: 10000,
      in_flight_grace_seconds: 60,
    });
    expect(config.state).toEqual({
      backend: 'local',
      redis: {
        host: '127.0.0.1',
        port: 6379,
        database: 0,
        timeout_ms: 50,
        pool_size: 64,
        keepalive_ms: 60000,
        key_prefix: 'beamline:',
        on_error: 'fail_open',
        retry_after_ms: 1000,
      },
    });
    expect(config.decision_cache.max_per_tenant).toBe(10000);
    expect(config.log.level).toBe('notice');
    expect(config.health).toEqual({ details: false, details_from: [] });
    expect(config.auth).toEqual({ enabled: false, api_keys: [] });
    expect(config.cors).toMatchObject({ allowed_origins: [], allow_credentials: false, max_age_seconds: 600 });
    expect(config.cors.allowed_headers).toContain('Idempotency-Key');
    expect(config.metrics).toEqual({ size_mb: 4 });
  });

  test.each([
    ['rate_limit:\n  backend: memcached\n', 'rate_limit.backend: must be one of "shared_dict", "redis"'],
    ['rate_limit:\n  redis:\n    host: redis.internal\n', 'rate_limit.redis.host: must be an IPv4 or [IPv6] address'],
    ['rate_limit:\n  redis:\n    on_error: ignore\n', 'rate_limit.redis.on_error: must be one of "fail_open", "fail_closed"'],
    ['rate_limit:\n  redis:\n    prot: 1\n', 'rate_limit.redis.prot: unknown key'],
    ['idempotency:\n  ttl_seconds: 0\n', 'idempotency.ttl_seconds: must be >= 1'],
    [`auth:\n  api_keys:\n    - tenant_id: "bad tenant"\n      key_sha256: ${HASH}\n`, 'auth.api_keys[0].tenant_id: must be a tenant id'],
    [
      'auth:\n  api_keys:\n    - tenant_id: t1\n      key_sha256: plain-text-key\n',
      'auth.api_keys[0].key_sha256: must be the SHA-256 of the key as 64 hex characters',
    ],
    ['auth:\n  api_keys:\n    - tenant_id: t1\n', 'auth.api_keys[0].key_sha256'],
    ['auth:\n  enabled: true\n', 'auth.api_keys: list at least one key when auth.enabled is true'],
    [
      `auth:\n  api_keys:\n    - {tenant_id: t1, key_sha256: ${HASH}}\n    - {tenant_id: t2, key_sha256: ${HASH.toUpperCase()}}\n`,
      'auth.api_keys[1].key_sha256: the same key is already configured at auth.api_keys[0]',
    ],
    ['cors:\n  allowed_origins: ["https://a.example/path"]\n', 'cors.allowed_origins[0]: must be "*" or an origin'],
    ['cors:\n  allowed_headers: ["X Bad"]\n', 'cors.allowed_headers[0]: must be an HTTP header name'],
    [
      'cors:\n  allowed_origins: ["*"]\n  allow_credentials: true\n',
      'cors.allowed_origins: "*" cannot be combined with cors.allow_credentials: true',
    ],
    ['metrics:\n  size_mb: 0\n', 'metrics.size_mb: must be >= 1'],
    ['state:\n  backend: memcached\n', 'state.backend: must be one of "local", "redis"'],
    ['state:\n  redis:\n    host: "bad host"\n', 'state.redis.host: must be an IPv4 address, [IPv6] address or DNS name'],
    ['state:\n  redis:\n    url: "http://x:1"\n', 'state.redis.url: must be redis://[:password@]host:port[/db]'],
    ['state:\n  backend: local\nrate_limit:\n  backend: redis\n', 'state.backend: "local" conflicts with rate_limit.backend: "redis"'],
    ['idempotency:\n  max_keys_per_tenant: 0\n', 'idempotency.max_keys_per_tenant: must be >= 1'],
  ])('%j', (text, expected) => {
    expect(problems(text).join('\n')).toContain(expected);
  });

  test('valid settings are accepted; REDIS_PASSWORD and GATEWAY_RATE_LIMIT_BACKEND apply', () => {
    const { config } = loadConfig({
      file: file(
        `rate_limit:\n  redis:\n    host: 10.0.0.7\n    port: 6380\nauth:\n  enabled: true\n  api_keys:\n    - {tenant_id: t1, key_sha256: ${HASH}, name: prod}\ncors:\n  allowed_origins: ["https://a.example:8443", "http://localhost:3000"]\n  allow_credentials: true\n`,
      ),
      env: { REDIS_PASSWORD: 'r3dis pw', GATEWAY_RATE_LIMIT_BACKEND: 'redis' },
    });
    expect(config.rate_limit).toMatchObject({ backend: 'redis', redis: { host: '10.0.0.7', port: 6380 } });
    // rate_limit.backend: redis (v1) is an alias of state.backend: redis, with its Redis keys.
    expect(config.state).toMatchObject({ backend: 'redis', redis: { host: '10.0.0.7', port: 6380, password: 'r3dis pw' } });
    expect(config.auth.api_keys).toEqual([{ tenant_id: 't1', key_sha256: HASH, name: 'prod', admin: false }]);
    expect(config.cors.allowed_origins).toHaveLength(2);
  });

  test('GATEWAY_STATE_BACKEND and REDIS_URL (CONTRACT §13); a bad URL is reported without its password', () => {
    const { config } = loadConfig({
      file: file('state:\n  redis:\n    host: 10.0.0.1\n    timeout_ms: 20\n'),
      env: { GATEWAY_STATE_BACKEND: 'redis', REDIS_URL: 'redis://:s%40cret@redis.beamline.svc:6380/3' },
    });
    expect(config.state.backend).toBe('redis');
    expect(config.state.redis).toMatchObject({ host: 'redis.beamline.svc', port: 6380, database: 3, password: 's@cret', timeout_ms: 20 });
    expect(config.state.redis.url).toBeUndefined();
    const bad = problems('', { REDIS_URL: 'redis://:hunter2@host:port' }).join('\n');
    expect(bad).toContain('state.redis.url (from REDIS_URL): must be redis://');
    expect(bad).not.toContain('hunter2');
    // A URL without a port or database keeps those keys.
    const { config: c2 } = loadConfig({ file: file(''), env: { REDIS_URL: 'redis://10.1.2.3' } });
    expect(c2.state).toMatchObject({ backend: 'local', redis: { host: '10.1.2.3', port: 6379, database: 0 } });
  });
});
