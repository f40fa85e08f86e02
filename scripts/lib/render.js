'use strict';
// Renders templates/*.hbs into an nginx prefix directory (nginx.conf, conf.d/*.conf) and
// writes the validated config as gateway.json for the Lua side (read once in init_by_lua).
const fs = require('fs');
const path = require('path');
const Handlebars = require('handlebars');
const { ROOT, parseLegacyUrl } = require('./config');
const { dnsView } = require('./dns');
const { natsLocations } = require('./nats-routes');

const TEMPLATES = path.join(ROOT, 'templates');

// Lua search paths per runtime. Debian's nginx loads the Lua module dynamically and finds
// lua-resty-core and cjson in the distribution's Lua directories; OpenResty has them built in.
const RUNTIMES = {
  debian: {
    name: 'debian',
    load_modules: ['/usr/lib/nginx/modules/ndk_http_module.so', '/usr/lib/nginx/modules/ngx_http_lua_module.so'],
    lua_path: ['/usr/share/lua/5.1/?.lua', '/usr/share/lua/5.1/?/init.lua'],
    lua_cpath: ['/usr/lib/x86_64-linux-gnu/lua/5.1/?.so', '/usr/lib/aarch64-linux-gnu/lua/5.1/?.so'],
  },
  openresty: {
    name: 'openresty',
    load_modules: [],
    lua_path: [],
    lua_cpath: [],
  },
};

function detectRuntime() {
  return fs.existsSync(RUNTIMES.debian.load_modules[1]) ? 'debian' : 'openresty';
}

// The routes nginx knows; each is one location whose content phase calls
// beamline.phases.content(name). Exact matches are cheapest, so every fixed path is `=`.
// `allow`: the methods the route answers (its 405's Allow; OPTIONS is added on API routes when
// CORS is on). nginx refuses TRACE/CONNECT before any location runs; its 405 gets the Allow of
// the route the raw URI names ($beamline_uri_allow, conf.d/00-http.conf).
const GET_HEAD = 'GET, HEAD';
const ROUTES = [
  { name: 'healthz', match: '= /healthz', allow: GET_HEAD },
  { name: 'health', match: '= /health', allow: GET_HEAD },
  { name: 'health', match: '= /_health', allow: GET_HEAD },
  { name: 'ready', match: '= /readyz', allow: GET_HEAD },
  { name: 'ready', match: '= /health/ready', allow: GET_HEAD },
  { name: 'live', match: '= /health/live', allow: GET_HEAD },
  { name: 'metrics', match: '= /metrics', allow: GET_HEAD },
  { name: 'ui_metrics', match: '= /_metrics', allow: GET_HEAD },
  { name: 'decide', match: '= /api/v1/routes/decide', allow: 'POST' },
  { name: 'messages', match: '= /api/v1/messages', allow: 'POST' },
  // `path`: the template nats_routes are checked against for collisions (scripts/lib/nats-routes.js).
  { name: 'decision_lookup', match: '~ ^/api/v1/routes/decide/[^/]+$', path: '/api/v1/routes/decide/{id}', allow: GET_HEAD },
  { name: 'not_found', match: '/' },
];

// routes.<key>.enabled: false leaves these nginx routes out of the config (they answer 404, as
// any path of no route). The decision lookup belongs to routes.decide.
const ROUTE_SWITCH = { decide: 'decide', decision_lookup: 'decide', messages: 'messages' };

/** The routes of ROUTES this config serves. */
function servedRoutes(config, routes = ROUTES) {
  return routes.filter((r) => {
    const key = ROUTE_SWITCH[r.name];
    return key === undefined || config.routes[key].enabled;
  });
}

/** A route's location match as a regex over the raw request URI (query string allowed). */
function uriRegex(match) {
  if (match.startsWith('= ')) return `^${match.slice(2).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\?|$)`;
  if (match.startsWith('~ '))
    return match
      .slice(2)
      .replace(/\[\^\/\]/g, '[^/?]')
      .replace(/\$$/, '(\\?|$)');
  throw new Error(`no URI regex for location ${match}`);
}

// Errors that nginx answers before any Lua runs.
const NGINX_ERRORS = [
  { status: 400, code: 'invalid_request', message: 'malformed HTTP request' },
  { status: 413, code: 'payload_too_large', message: 'request body too large' },
  // Both are client errors the contract files under invalid_request, hence 400.
  { status: 414, answer: 400, code: 'invalid_request', message: 'request URI too long' },
  { status: 494, answer: 400, code: 'invalid_request', message: 'request headers too large' },
  // Methods nginx refuses itself (TRACE, CONNECT) before any location runs.
  { status: 405, code: 'method_not_allowed', message: 'method not allowed' },
  // Framing nginx refuses (found by the fuzzer, spec/support/fuzz.js): length required, an
  // unknown Transfer-Encoding, an HTTP version it does not speak. Client errors: the contract's 400.
  { status: 411, answer: 400, code: 'invalid_request', message: 'length required' },
  { status: 501, answer: 400, code: 'invalid_request', message: 'unsupported transfer encoding' },
  { status: 505, answer: 400, code: 'invalid_request', message: 'HTTP version not supported' },
  // A body that stalls past client_body_timeout: a client error, the contract's 400.
  { status: 408, answer: 400, code: 'invalid_request', message: 'request body not received in time' },
  // limit_conn (server.max_connections_per_client) answers 429 internally: the contract's 503.
  { status: 429, answer: 503, code: 'unavailable', message: 'too many concurrent requests from this client address', retry_after: 1 },
  { status: 500, code: 'internal', message: 'internal error' },
  { status: 502, code: 'bad_gateway', message: 'bad gateway' },
  { status: 503, code: 'unavailable', message: 'service unavailable' },
  { status: 504, code: 'timeout', message: 'gateway timeout' },
];

const EMPTY_CONTEXT = { request_id: '', trace_id: '', tenant_id: '' };

function errorBody(e, config) {
  const details = e.code === 'payload_too_large' ? { limit_bytes: config.limits.body_bytes } : {};
  return JSON.stringify({
    ok: false,
    error: { code: e.code, message: e.message, intake_error_code: null, details },
    context: EMPTY_CONTEXT,
  });
}

// NATS over TLS (conf.d/10-lua.conf): the CA bundle Lua cosockets verify servers against. Only
// nats.tls.ca_file, never a default: nginx parses the bundle on every start, reload and `-t`
// (the system bundle costs ~0.5 s each time on this machine).
function luaSsl(config) {
  const tls = config.nats.tls;
  return { trusted_certificate: tls.ca_file || '', verify_depth: tls.verify_depth };
}

// The traffic switch (migration.*, templates/conf.d/20-gateway.conf): the routes split between
// this gateway and the old one, and the view of the legacy upstream and the shadow listeners.
const API_ROUTES = new Set(['decide', 'messages', 'decision_lookup']);
// Unix sockets of the shadow servers, in the prefix (the Lua side finds them with
// ngx.config.prefix()): the new path without the split, and a plain proxy to the old gateway.
const SHADOW_SOCKETS = { new: 'shadow-new.sock', legacy: 'shadow-legacy.sock' };

function migrationView(config, prefix) {
  const m = config.migration;
  if (!m.enabled) return { enabled: false, shadow: false };
  const u = parseLegacyUrl(m.legacy_url);
  const sockets = {};
  for (const [k, f] of Object.entries(SHADOW_SOCKETS)) {
    sockets[k] = path.join(prefix, f);
    // sockaddr_un.sun_path holds 108 bytes, the terminating NUL included.
    if (Buffer.byteLength(sockets[k]) > 107)
      throw new Error(`prefix ${prefix} is too long for the shadow socket ${f} (unix socket paths hold 107 bytes)`);
  }
  return {
    enabled: true,
    server: u.hostport,
    host_header: u.port === 80 ? u.host : u.hostport,
    keepalive: m.legacy_keepalive,
    // X-Beamline-Gateway honoured for clients in override_from (any client when it is empty).
    override_any: m.override_from.length === 0,
    override_from: m.override_from,
    timeout_ms: m.legacy_timeout_ms,
    shadow: m.shadow.enabled,
    sockets,
  };
}

/**
 * Removes shadow sockets no process listens on (left by an nginx that was killed, or by a config
 * with shadow on): nginx cannot bind over an existing file. A socket in use is listed in
 * /proc/net/unix and is left alone.
 */
function removeStaleSockets(prefix) {
  let bound = null;
  for (const f of Object.values(SHADOW_SOCKETS)) {
    const p = path.join(prefix, f);
    if (!fs.existsSync(p)) continue;
    if (bound === null) {
      try {
        bound = new Set(
          fs
            .readFileSync('/proc/net/unix', 'utf8')
            .split('\n')
            .map((l) => l.trim().split(/\s+/)[7])
            .filter(Boolean),
        );
      } catch (err) {
        return; // cannot tell: leave it
      }
    }
    if (!bound.has(p)) fs.rmSync(p, { force: true });
  }
}

const hbs = Handlebars.create();
// A Lua double-quoted string literal; JSON string syntax is valid Lua for these inputs.
hbs.registerHelper('lua_string', (s) => {
  // eslint-disable-next-line no-control-regex -- control characters cannot go into a Lua literal
  if (typeof s !== 'string' || /[\x00-\x1f"\\]/.test(s)) throw new Error(`cannot embed ${JSON.stringify(s)} in Lua`);
  return `"${s}"`;
});

function compile(file) {
  return hbs.compile(fs.readFileSync(file, 'utf8'), { strict: true, noEscape: true });
}

/**
 * @param {object} config validated config from loadConfig()
 * @param {{prefix?: string, luaDir?: string, runtime?: 'debian'|'openresty', bench?: boolean}} opts
 *   `bench: true` adds the benchmark-only `/__bench/*` locations (scripts/bench.js); never by default.
 * @returns {{prefix: string, nginxConf: string, files: string[]}}
 */
function render(config, opts = {}) {
  const prefix = path.resolve(opts.prefix || path.join(ROOT, 'nginx'));
  const luaDir = path.resolve(opts.luaDir || path.join(ROOT, 'dist-lua'));
  const runtime = RUNTIMES[opts.runtime || detectRuntime()];
  if (!runtime) throw new Error(`unknown runtime ${opts.runtime}`);
  for (const p of [prefix, luaDir]) {
    if (/[\s;{}"'$#\\]/.test(p)) throw new Error(`path ${JSON.stringify(p)} contains characters nginx cannot take unquoted`);
  }

  const logPath = (v) => (v === 'stdout' ? '/dev/stdout' : v === 'stderr' ? '/dev/stderr' : path.resolve(prefix, v));
  const paths = {
    prefix,
    pid: path.join(prefix, 'logs', 'nginx.pid'),
    temp: path.join(prefix, 'tmp'),
    // nginx's own `stderr` keyword writes to its inherited stderr, whatever that is (a socket
    // too, where opening /dev/stderr fails with ENXIO).
    error_log: config.log.error_log === 'stderr' ? 'stderr' : logPath(config.log.error_log),
    access_log: config.log.access_log === 'off' ? '' : logPath(config.log.access_log),
    config_json: path.join(prefix, 'gateway.json'),
  };
  // The configured NATS routes (nats_routes, §12): API routes rendered after the fixed ones.
  // routes.<key>.enabled: false also leaves out the NATS routes counted on that rate-limit route.
  const natsEnabled = config.nats_routes.filter((r) => !config.routes[r.rate_limit_route] || config.routes[r.rate_limit_route].enabled);
  const natsRoutes = natsLocations(natsEnabled).map((r) => ({ ...r, nats: true }));
  const routes = [...ROUTES.slice(0, -1), ...natsRoutes, ROUTES[ROUTES.length - 1]];
  const isApi = (r) => API_ROUTES.has(r.name) || r.nats === true;
  const served = servedRoutes(config, routes);
  const dns = dnsView(config.dns);
  const view = {
    ...config,
    runtime,
    paths,
    access_log_off: config.log.access_log === 'off',
    // Bodies up to 64 KiB stay in memory; larger ones go to a temp file the Lua reads.
    body_buffer_bytes: Math.min(config.limits.body_bytes, 65536),
    lua: {
      package_path: [`${luaDir}/?.lua`, `${luaDir}/?/init.lua`, ...runtime.lua_path, ';'].join(';'),
      package_cpath: [...runtime.lua_cpath, ';'].join(';'),
    },
    migration: migrationView(config, prefix),
    // API routes capture their response body for the shadow comparison (body_filter).
    routes: served.map((r) => ({
      ...r,
      api: isApi(r),
      // Unknown paths go to the old gateway while migrating (§14).
      legacy: r.name === 'not_found' && config.migration.enabled && config.migration.proxy_unknown_paths,
      shadow_capture: config.migration.enabled && config.migration.shadow.enabled && API_ROUTES.has(r.name),
    })),
    lua_ssl: luaSsl(config),
    dns: dns,
    bench: opts.bench === true,
    // `error_page N =A` where the answer differs: without `=A` nginx keeps sending status N.
    // Route name and Allow by raw request URI, for what nginx answers before a location runs.
    uri_routes: served
      .filter((r) => r.allow)
      .map((r) => ({
        regex: uriRegex(r.match),
        name: r.name,
        allow: config.cors.allowed_origins.length > 0 && isApi(r) ? `${r.allow}, OPTIONS` : r.allow,
      })),
    nginx_errors: NGINX_ERRORS.map((e) => ({
      status: e.status,
      answer: e.answer || e.status,
      // 405: `=` alone lets the location's own status through (a 404 for a URI of no route).
      redirect: e.status === 405 ? '= ' : e.answer && e.answer !== e.status ? `=${e.answer} ` : '',
      retry_after: e.retry_after || 0,
      allow: e.status === 405,
      // nginx's 413 (a body over client_max_body_size) is answered by the Lua, with the
      // request's ids (CONTRACT §14); every other one is a constant.
      lua: e.status === 413,
      body: errorBody(e, config),
    })),
    not_found_body: JSON.stringify({
      ok: false,
      error: { code: 'not_found', message: 'no route for this path', intake_error_code: null, details: {} },
      context: EMPTY_CONTEXT,
    }),
  };

  fs.mkdirSync(path.join(prefix, 'conf.d'), { recursive: true });
  fs.mkdirSync(path.join(prefix, 'logs'), { recursive: true });
  fs.mkdirSync(paths.temp, { recursive: true });
  removeStaleSockets(prefix);
  const files = [];
  const write = (rel, text, mode = 0o644) => {
    const out = path.join(prefix, rel);
    fs.writeFileSync(out, text, { mode });
    fs.chmodSync(out, mode);
    files.push(out);
  };
  write('nginx.conf', compile(path.join(TEMPLATES, 'nginx.conf.hbs'))(view));
  // Drop stale conf.d files from an earlier render so removed templates do not linger.
  for (const f of fs.readdirSync(path.join(prefix, 'conf.d'))) fs.unlinkSync(path.join(prefix, 'conf.d', f));
  for (const t of fs
    .readdirSync(path.join(TEMPLATES, 'conf.d'))
    .filter((f) => f.endsWith('.hbs'))
    .sort()) {
    write(path.join('conf.d', t.replace(/\.hbs$/, '')), compile(path.join(TEMPLATES, 'conf.d', t))(view));
  }
  // The Lua side's copy of the config holds NATS credentials: owner-only.
  // dns_hosts: the hosts file's names, resolved here (nginx's resolver does not read it).
  const luaConfig = { ...config, dns_hosts: dns.hosts, version: require(path.join(ROOT, 'package.json')).version };
  write('gateway.json', JSON.stringify(luaConfig, null, 2), 0o600);
  return { prefix, nginxConf: path.join(prefix, 'nginx.conf'), files };
}

module.exports = { render, servedRoutes, ROUTES, API_ROUTES, SHADOW_SOCKETS, NGINX_ERRORS, RUNTIMES, detectRuntime };
