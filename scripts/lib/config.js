'use strict';
// Loads gateway.yaml, applies environment overrides, validates against the schema and
// returns the complete config (defaults filled in). Every failure is a ConfigError whose
// message names the field and the rule it broke.
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');
const Ajv = require('ajv');
const { dnsProblems } = require('./dns');
const {
  schema,
  RESOLVER,
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
} = require('./config-schema');
const { natsRouteProblems } = require('./nats-routes');

const ROOT = path.resolve(__dirname, '..', '..');

class ConfigError extends Error {
  constructor(problems, file) {
    const list = Array.isArray(problems) ? problems : [problems];
    super(`invalid gateway config${file ? ` (${file})` : ''}:\n` + list.map((p) => `  - ${p}`).join('\n'));
    this.name = 'ConfigError';
    this.problems = list;
  }
}

// Environment variables that override the file (CONTRACT §10). `path` is where the value
// lands; `parse` turns the string into the config value.
const int = (s) => (/^-?\d+$/.test(s.trim()) ? Number(s.trim()) : s);
const ENV_OVERRIDES = [
  { env: 'GATEWAY_PORT', path: ['server', 'port'], parse: int },
  { env: 'GATEWAY_LISTEN', path: ['server', 'listen'], parse: (s) => s.trim() },
  { env: 'GATEWAY_WORKERS', path: ['server', 'workers'], parse: (s) => (s.trim() === 'auto' ? 'auto' : int(s)) },
  {
    env: 'NATS_URL',
    path: ['nats', 'servers'],
    parse: (s) =>
      s
        .split(',')
        .map((u) => u.trim())
        .filter(Boolean),
  },
  { env: 'NATS_TOKEN', path: ['nats', 'token'], parse: (s) => s },
  { env: 'NATS_USER', path: ['nats', 'user'], parse: (s) => s },
  { env: 'NATS_PASSWORD', path: ['nats', 'password'], parse: (s) => s },
  { env: 'NATS_NKEY_SEED', path: ['nats', 'nkey_seed'], parse: (s) => s.trim() },
  { env: 'ROUTER_DECIDE_SUBJECT', path: ['router', 'decide_subject'], parse: (s) => s.trim() },
  { env: 'ROUTER_REQUEST_TIMEOUT_MS', path: ['router', 'request_timeout_ms'], parse: int },
  { env: 'GATEWAY_BODY_LIMIT_BYTES', path: ['limits', 'body_bytes'], parse: int },
  { env: 'GATEWAY_RATE_LIMIT_ROUTES_DECIDE_LIMIT', path: ['routes', 'decide', 'rate_limit', 'limit'], parse: int },
  { env: 'GATEWAY_RATE_LIMIT_MESSAGES', path: ['routes', 'messages', 'rate_limit', 'limit'], parse: int },
  { env: 'GATEWAY_RATE_LIMIT_ADMIN', path: ['routes', 'admin', 'rate_limit', 'limit'], parse: int },
  { env: 'GATEWAY_RATE_LIMIT_STREAMS', path: ['routes', 'streams', 'rate_limit', 'limit'], parse: int },
  { env: 'STREAMS_RESULTS_SUBJECT', path: ['streams', 'results_subject'], parse: (s) => s.trim() },
  // The window length of every route (C-GW's name, kept for parity).
  { env: 'GATEWAY_RATE_LIMIT_TTL_SECONDS', path: ['routes', '*', 'rate_limit', 'window_seconds'], parse: int },
  { env: 'GATEWAY_RATE_LIMIT_BACKEND', path: ['rate_limit', 'backend'], parse: (s) => s.trim() },
  // State across instances (CONTRACT §13).
  { env: 'GATEWAY_STATE_BACKEND', path: ['state', 'backend'], parse: (s) => s.trim() },
  { env: 'REDIS_URL', path: ['state', 'redis', 'url'], parse: (s) => s.trim() },
  { env: 'REDIS_PASSWORD', path: ['state', 'redis', 'password'], parse: (s) => s },
  {
    env: 'GATEWAY_DNS_RESOLVERS',
    path: ['dns', 'resolvers'],
    parse: (s) =>
      s
        .split(/[\s,]+/)
        .map((u) => u.trim())
        .filter(Boolean),
  },
  { env: 'LOG_LEVEL', path: ['log', 'level'], parse: (s) => s.trim().toLowerCase() },
  // Containers log to stdout/stderr instead of files.
  { env: 'GATEWAY_ACCESS_LOG', path: ['log', 'access_log'], parse: (s) => s.trim() },
  { env: 'GATEWAY_ACCESS_LOG_BUFFER_KB', path: ['log', 'access_log_buffer_kb'], parse: int },
  { env: 'GATEWAY_ERROR_LOG', path: ['log', 'error_log'], parse: (s) => s.trim() },
];
const ROUTE_NAMES = Object.keys(schema.properties.routes.properties);

// The OpenTelemetry SDK environment (opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/),
// applied after ENV_OVERRIDES: an OTLP endpoint turns export on, OTEL_SDK_DISABLED=true turns it off.
const float = (s) => (/^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(s) ? Number(s) : s);
function applyOtelEnv(raw, env, sources) {
  const set = (key, value, name) => {
    setPath(raw, ['tracing', key], value);
    sources[`tracing.${key}`] = name;
  };
  const traces = (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || '').trim();
  const base = (env.OTEL_EXPORTER_OTLP_ENDPOINT || '').trim();
  if (traces !== '') {
    set('endpoint', traces, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
    set('enabled', true, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  } else if (base !== '') {
    // The spec: the signal path is appended to the base endpoint.
    set('endpoint', `${base.replace(/\/+$/, '')}/v1/traces`, 'OTEL_EXPORTER_OTLP_ENDPOINT');
    set('enabled', true, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  }
  if ((env.OTEL_TRACES_SAMPLER_ARG || '') !== '') set('sample_ratio', float(env.OTEL_TRACES_SAMPLER_ARG), 'OTEL_TRACES_SAMPLER_ARG');
  if ((env.OTEL_SERVICE_NAME || '').trim() !== '') set('service_name', env.OTEL_SERVICE_NAME.trim(), 'OTEL_SERVICE_NAME');
  if ((env.OTEL_SDK_DISABLED || '').trim().toLowerCase() === 'true') set('enabled', false, 'OTEL_SDK_DISABLED');
}

function setPath(obj, keys, value) {
  let o = obj;
  for (let i = 0; i < keys.length - 1; i++) {
    if (o[keys[i]] === undefined || o[keys[i]] === null) o[keys[i]] = {};
    if (typeof o[keys[i]] !== 'object' || Array.isArray(o[keys[i]])) {
      throw new ConfigError(`${keys.slice(0, i + 1).join('.')}: must be object (needed for an environment override)`);
    }
    o = o[keys[i]];
  }
  o[keys[keys.length - 1]] = value;
}

/** Applies ENV_OVERRIDES to `raw` in place; returns a map "a.b.c" → env var name. */
function applyEnv(raw, env) {
  const sources = {};
  for (const o of ENV_OVERRIDES) {
    const v = env[o.env];
    if (v === undefined || v === '') continue;
    const value = o.parse(v);
    const targets = o.path[1] === '*' ? ROUTE_NAMES.map((r) => [o.path[0], r, ...o.path.slice(2)]) : [o.path];
    for (const keys of targets) {
      setPath(raw, keys, value);
      sources[keys.join('.')] = o.env;
    }
  }
  applyOtelEnv(raw, env, sources);
  return sources;
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true });
const validate = ajv.compile(schema);

// Human wording for the schema's patterns.
const PATTERN_RULES = {
  [NGINX_SAFE]: 'must not contain nginx syntax (; { } quotes $ # whitespace or control characters)',
  [schema.properties.nats.properties.servers.items.pattern]: 'must be a NATS URL: nats://[user:pass@|token@]host[:port] or tls://…',
  [NATS_SUBJECT]: 'must be a NATS subject without wildcards (tokens of A-Z a-z 0-9 _ - separated by dots)',
  [NATS_ROUTE_PATH]: 'must be a path of /-separated segments, each of A-Z a-z 0-9 . _ ~ - or a {name} parameter (a-z 0-9 _)',
  [ROUTE_NAME]: 'must be a name of a-z 0-9 _ starting with a letter',
  [schema.properties.server.properties.listen.pattern]: 'must be an IPv4 address, [IPv6] address or localhost',
  '^SU[A-Z2-7]{56}$': 'must be a user nkey seed (58 characters starting with SU)',
  [ORIGIN]: 'must be "*" or an origin: http(s)://host[:port] without a path',
  [HEADER_NAME]: 'must be an HTTP header name',
  [TENANT_ID]: 'must be a tenant id: 1-128 characters of A-Z a-z 0-9 . _ : -',
  [SHA256_HEX]: 'must be the SHA-256 of the key as 64 hex characters',
  [RESOLVER]: 'must be a name server address: IPv4 or [IPv6], optionally :port',
  [LEGACY_URL]: 'must be http://host[:port] (host: IPv4, [IPv6] or a DNS name; no path, credentials or spaces)',
  [OTLP_URL]: 'must be http://host[:port][/path] (host: IPv4, [IPv6] or a DNS name; https is not supported)',
  [schema.properties.state.properties.redis.properties.host.pattern]: 'must be an IPv4 address, [IPv6] address or DNS name',
  [schema.properties.rate_limit.properties.redis.properties.host.pattern]:
    'must be an IPv4 or [IPv6] address (nginx resolves no names here)',
};

function describeError(e, sources) {
  // instancePath is a JSON pointer ("/nats/servers/0"); print it as nats.servers[0].
  let field = e.instancePath
    .split('/')
    .slice(1)
    .map((k) => (/^\d+$/.test(k) ? `[${k}]` : `.${k}`))
    .join('')
    .replace(/^\./, '');
  if (e.keyword === 'additionalProperties') field = field ? `${field}.${e.params.additionalProperty}` : e.params.additionalProperty;
  if (e.keyword === 'required') field = field ? `${field}.${e.params.missingProperty}` : e.params.missingProperty;
  const from = sources[field.replace(/\[\d+\]$/, '')];
  const where = `${field || '(top level)'}${from ? ` (from ${from})` : ''}`;
  let rule;
  switch (e.keyword) {
    case 'additionalProperties':
      rule = 'unknown key';
      break;
    case 'pattern':
      rule = PATTERN_RULES[e.params.pattern] || `must match ${e.params.pattern}`;
      break;
    case 'enum':
      rule = `must be one of ${e.params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
      break;
    case 'oneOf':
      rule = 'must be a positive integer or "auto"';
      break;
    default:
      rule = e.message;
  }
  return `${where}: ${rule}`;
}

// Control characters are never valid in any scalar, secrets included.
function findControlChars(value, at, out) {
  if (typeof value === 'string') {
    // eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
    if (/[\x00-\x1f\x7f]/.test(value)) out.push(`${at || '(top level)'}: must not contain control characters or newlines`);
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => findControlChars(v, `${at}[${i}]`, out));
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) findControlChars(v, at ? `${at}.${k}` : k, out);
  }
}

/**
 * migration.* rules the schema cannot say: legacy_url when enabled, a real port and IPv4, and
 * not this gateway itself (a request would be proxied to itself forever).
 */
function migrationProblems(raw) {
  const m = raw.migration;
  const out = [];
  if (m.legacy_url === undefined) {
    if (m.enabled) out.push('migration.legacy_url: required when migration.enabled is true (the old gateway: http://host:port)');
    return out;
  }
  const u = parseLegacyUrl(m.legacy_url);
  if (u.port < 1 || u.port > 65535) out.push('migration.legacy_url: port must be 1-65535');
  if (/^\d+(\.\d+){3}$/.test(u.host) && u.host.split('.').some((o) => Number(o) > 255))
    out.push('migration.legacy_url: not an IPv4 address');
  const local = ['localhost', '127.0.0.1', '[::1]', '0.0.0.0', '[::]', raw.server.listen];
  if (u.port === raw.server.port && local.includes(u.host)) {
    out.push(`migration.legacy_url: points at this gateway (port ${raw.server.port}); requests would loop`);
  }
  return out;
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * `state` before validation (in place): `rate_limit.backend: redis` (v1, also env
 * GATEWAY_RATE_LIMIT_BACKEND) is an alias of `state.backend: redis`, and its `rate_limit.redis`
 * keys fill the `state.redis` keys that are not set; a REDIS_URL / `state.redis.url` is parsed
 * into host, port, password and database (the URL wins). Returns the problems found.
 */
function resolveState(raw, sources) {
  if (raw.state === undefined) raw.state = {};
  const st = raw.state;
  const rl = raw.rate_limit;
  if (!isObject(st) || (rl !== undefined && !isObject(rl))) return [];
  const legacyRedis = rl !== undefined && rl.backend === 'redis';
  if (legacyRedis) {
    if (st.backend === 'local') {
      return ['state.backend: "local" conflicts with rate_limit.backend: "redis" (an alias of state.backend: redis); drop one of them'];
    }
    st.backend = 'redis';
    if (isObject(rl.redis)) {
      if (st.redis === undefined) st.redis = {};
      if (isObject(st.redis)) for (const [k, v] of Object.entries(rl.redis)) if (st.redis[k] === undefined) st.redis[k] = v;
    }
  }
  if (st.backend === undefined) st.backend = 'local';
  const r = st.redis;
  if (!isObject(r) || typeof r.url !== 'string') return [];
  const m = /^redis:\/\/(?::([^@\s]+)@)?([^:/@\s]+)(?::(\d{1,5}))?(?:\/(\d{1,4}))?\/?$/.exec(r.url);
  const from = sources['state.redis.url'] ? ' (from REDIS_URL)' : '';
  // The schema reports a malformed URL; it never echoes the URL (it may hold a password).
  if (!m) {
    delete r.url;
    return [`state.redis.url${from}: must be redis://[:password@]host:port[/db]`];
  }
  let password;
  try {
    password = m[1] === undefined ? undefined : decodeURIComponent(m[1]);
  } catch (e) {
    return [`state.redis.url${from}: the password is not valid percent-encoding`];
  }
  r.host = m[2];
  if (m[3] !== undefined) r.port = Number(m[3]);
  if (m[4] !== undefined) r.database = Number(m[4]);
  if (password !== undefined) r.password = password;
  delete r.url;
  return [];
}

/** {host, port, hostport} of a valid migration.legacy_url (port 80 when absent). */
function parseLegacyUrl(url) {
  const m = /^http:\/\/(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/.exec(url);
  const host = m[1];
  const port = m[2] === undefined ? 80 : Number(m[2]);
  return { host, port, hostport: `${host}:${port}` };
}

/**
 * @param {{file?: string, env?: NodeJS.ProcessEnv, overrides?: (raw: object) => void}} opts
 * @returns {{config: object, file: string}}
 */
function loadConfig(opts = {}) {
  const env = opts.env || process.env;
  const file = path.resolve(opts.file || env.GATEWAY_CONFIG || path.join(ROOT, 'gateway.yaml'));
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file: ${err.code || err.message}`, file);
  }
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw new ConfigError(
      doc.errors.map((e) => `YAML syntax: ${e.message.split('\n')[0]}`),
      file,
    );
  }
  let raw = doc.toJS();
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('(top level): must be a mapping of sections', file);
  const sources = applyEnv(raw, env);
  if (opts.overrides) opts.overrides(raw);

  const problems = [];
  findControlChars(raw, '', problems);
  problems.push(...resolveState(raw, sources));
  if (!validate(raw)) problems.push(...validate.errors.map((e) => describeError(e, sources)));
  if (!problems.length) {
    const n = raw.nats;
    if ((n.user === undefined) !== (n.password === undefined))
      problems.push('nats.user: nats.user and nats.password must be given together');
    const auth = [n.token !== undefined, n.user !== undefined, n.nkey_seed !== undefined].filter(Boolean).length;
    if (auth > 1) problems.push('nats: give at most one of token, user/password, nkey_seed');
    if (n.reconnect_wait_max_ms < n.reconnect_wait_ms) problems.push('nats.reconnect_wait_max_ms: must be >= nats.reconnect_wait_ms');
    if ((n.tls.cert_file === undefined) !== (n.tls.key_file === undefined))
      problems.push('nats.tls.cert_file: nats.tls.cert_file and nats.tls.key_file must be given together');
    // nginx verifies a cosocket's server name with X509_check_host: DNS names only, never an IP SAN.
    const ipTls = n.servers.find((u) => /^tls:\/\/([^@/]*@)?\d{1,3}(\.\d{1,3}){3}(:\d+)?$/.test(u));
    const anyTls = n.servers.find((u) => /^tls:\/\//.test(u));
    if (n.tls.verify && anyTls && n.tls.ca_file === undefined) {
      problems.push(
        "nats.tls.ca_file: required with tls:// servers while nats.tls.verify is true (the CA bundle that signed the servers' certificates; /etc/ssl/certs/ca-certificates.crt for public CAs)",
      );
    }
    if (n.tls.verify && n.tls.server_name === undefined && ipTls) {
      problems.push(
        `nats.tls.server_name: required when a tls:// server is given by IP address (${ipTls.replace(/\/\/[^@/]*@/, '//')}) and nats.tls.verify is true: the certificate is checked against a DNS name (nginx's X509_check_host never matches IP addresses)`,
      );
    }
    const cors = raw.cors;
    if (cors.allow_credentials && cors.allowed_origins.includes('*')) {
      problems.push(
        'cors.allowed_origins: "*" cannot be combined with cors.allow_credentials: true (browsers reject it); list the origins instead',
      );
    }
    if (raw.auth.enabled && raw.auth.api_keys.length === 0) problems.push('auth.api_keys: list at least one key when auth.enabled is true');
    problems.push(...migrationProblems(raw));
    problems.push(...dnsProblems(raw));
    // render.js requires this module: required here, once both are loaded.
    problems.push(...natsRouteProblems(raw.nats_routes, require('./render').ROUTES, Object.keys(raw.routes)));
    const owners = new Map();
    raw.auth.api_keys.forEach((k, i) => {
      const d = k.key_sha256.toLowerCase();
      if (owners.has(d))
        problems.push(`auth.api_keys[${i}].key_sha256: the same key is already configured at auth.api_keys[${owners.get(d)}]`);
      else owners.set(d, i);
    });
  }
  if (problems.length) throw new ConfigError([...new Set(problems)], file);
  return { config: raw, file };
}

module.exports = { loadConfig, ConfigError, ENV_OVERRIDES, ROOT, parseLegacyUrl };
