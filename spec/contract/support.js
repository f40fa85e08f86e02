'use strict';
/**
 * Shared setup of the contract suite (spec/contract/*.test.js).
 *
 * Target selection:
 *   - GATEWAY_URL unset: every test file starts the REAL stack itself (nats-server + reference
 *     Router + nginx with the compiled Lua, on free loopback ports) and stops it by PID at the end.
 *     Nothing is skipped in this mode.
 *   - GATEWAY_URL=http://host:port: the tests talk to that gateway (any implementation: this one,
 *     the C gateway, the NestJS gateway...). Two kinds of tests are then guarded:
 *       * `describeRouterModes` — tests that pick the reference Router's behaviour per request
 *         (`metadata.router_mode` / `context.router_mode`: echo, error:<code>, silence, ...). They run
 *         only when GATEWAY_REFERENCE_ROUTER=1 says that the gateway behind GATEWAY_URL talks to
 *         the reference Router (`node router/reference-router.js --nats <its NATS>`).
 *       * `describeOwnStack` — tests that need a gateway configured in a special way (small body
 *         limit, flat responses, short timeouts, rate limits, auth, CORS) or that stop/start the
 *         Router or NATS. They cannot be run against somebody else's processes and are skipped.
 *     Everything else runs against GATEWAY_URL.
 *
 * The API tests use a fresh tenant id per test (`tenant()`), so a rate limit of the default size
 * (50 / 60 s per tenant and route) never interferes; the stacks this module starts also raise the
 * limits unless a file asks for its own.
 */
const net = require('net');
const crypto = require('crypto');
const { startGateway, request } = require('../support/gateway');
const { startNats, startRouter } = require('../support/processes');

const EXTERNAL_URL = (process.env.GATEWAY_URL || '').replace(/\/+$/, '');
const EXTERNAL = EXTERNAL_URL !== '';
const REFERENCE_ROUTER = !EXTERNAL || /^(1|true|yes)$/i.test(process.env.GATEWAY_REFERENCE_ROUTER || '');

/** Tests that need the reference Router's per-request modes (skipped: external URL without it). */
const describeRouterModes = REFERENCE_ROUTER ? describe : describe.skip;
/** Tests that need a gateway started by the suite itself (skipped whenever GATEWAY_URL is set). */
const describeOwnStack = EXTERNAL ? describe.skip : describe;

const HEX32 = /^[0-9a-f]{32}$/;
const UUID_LOWER = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const VALID_TRACE = new RegExp(`(${HEX32.source})|(${UUID_LOWER.source})`);

const API_PATHS = ['/api/v1/routes/decide', '/api/v1/messages'];

let tenantSeq = 0;
/** A tenant id nobody else uses (so per-tenant state — rate limits, cache — starts empty). */
function tenant(tag = 't') {
  return `ct-${tag}-${process.pid}-${++tenantSeq}-${crypto.randomBytes(3).toString('hex')}`;
}
let idSeq = 0;
/** A unique request / message id. */
function uid(tag = 'r') {
  return `${tag}-${process.pid}-${++idSeq}-${crypto.randomBytes(4).toString('hex')}`;
}
const hex32 = () => crypto.randomBytes(16).toString('hex');

/**
 * Registers beforeAll/afterAll for one gateway and returns a handle filled in by beforeAll:
 * `{url, port, external, nats, router, gateway}`.
 *
 * @param {object} [opts]
 * @param {boolean} [opts.own]  always start an own stack (for describeOwnStack blocks)
 * @param {(raw: object) => void} [opts.configure]  edits the raw gateway config
 * @param {object} [opts.env]  environment overrides for the config loader
 * @param {number} [opts.workers]
 * @param {object|false} [opts.nats]  startNats options; false = no NATS at all
 * @param {object|false} [opts.router]  startRouter options ({args}); false = no Router
 * @param {boolean} [opts.keepLimits]  do not raise the rate limits
 */
function useGateway(opts = {}) {
  const t = { external: false, url: undefined, port: undefined, nats: null, router: null, gateway: null };
  beforeAll(async () => {
    if (EXTERNAL && !opts.own) {
      t.external = true;
      t.url = EXTERNAL_URL;
      t.port = Number(new URL(EXTERNAL_URL).port || 80);
      t.host = new URL(EXTERNAL_URL).hostname;
      return;
    }
    if (opts.nats !== false) t.nats = await startNats(opts.nats || {});
    if (opts.router !== false && t.nats) t.router = await startRouter({ natsUrl: t.nats.url, ...(opts.router || {}) });
    t.gateway = await startGateway({
      natsUrl: t.nats ? t.nats.url : 'nats://127.0.0.1:1',
      workers: opts.workers,
      env: opts.env,
      configure: (raw) => {
        if (!opts.keepLimits) {
          raw.routes = {
            ...raw.routes,
            decide: { rate_limit: { limit: 1000000, window_seconds: 60 } },
            messages: { rate_limit: { limit: 1000000, window_seconds: 60 } },
          };
        }
        if (opts.configure) opts.configure(raw);
      },
    });
    t.url = t.gateway.url;
    t.port = t.gateway.port;
    t.host = '127.0.0.1';
    if (t.nats) await waitReady(t.url);
  }, 60000);
  afterAll(async () => {
    // Only this handle's processes, newest first (other describe blocks may still need theirs).
    for (const p of [t.gateway, t.router, t.nats]) {
      if (p) await p.stop().catch(() => {});
    }
  }, 30000);
  return t;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until /readyz says ready (the worker's NATS connection is up). */
async function waitReady(url, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await request(url, { path: '/readyz' }).catch(() => ({ status: 0 }));
    if (r.status === 200) return;
    if (Date.now() > deadline) throw new Error(`gateway ${url} not ready after ${timeoutMs} ms (last status ${r.status})`);
    await sleep(50);
  }
}

/**
 * One HTTP request. `body`: an object is sent as JSON with `Content-Type: application/json`
 * (unless the headers name a Content-Type, in any case, or `contentType: null`); a string or
 * Buffer is sent as is.
 */
function call(t, { method = 'GET', path = '/', headers = {}, body, contentType } = {}) {
  const h = { ...headers };
  let payload = body;
  const hasCt = Object.keys(h).some((k) => k.toLowerCase() === 'content-type');
  if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) {
    payload = JSON.stringify(body);
    if (!hasCt && contentType !== null) h['Content-Type'] = contentType || 'application/json';
  } else if (body !== undefined && !hasCt && contentType) {
    h['Content-Type'] = contentType;
  }
  // A Content-Length like curl and most clients send (Node would otherwise send the body chunked;
  // chunked uploads are tested on purpose where they matter).
  if (payload !== undefined && !Object.keys(h).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) {
    h['Content-Length'] = String(Buffer.byteLength(payload));
  }
  return request(t.url, { method, path, headers: h, body: payload });
}

/** A canonical decide body (§3) with the given fields merged over it. */
function canonical(extra = {}) {
  return { version: '1', task: { type: 'chat', payload: { text: 'hello' } }, ...extra };
}

/** POST a body to decide (or `path`) with X-Tenant-ID set to `tenantId` (null: no header). */
function post(t, body, { tenantId, headers = {}, path = '/api/v1/routes/decide', contentType } = {}) {
  const h = { ...headers };
  if (tenantId !== null) h['X-Tenant-ID'] = tenantId === undefined ? tenant() : tenantId;
  return call(t, { method: 'POST', path, headers: h, body, contentType });
}

/**
 * POST with the reference Router in `echo` mode (chosen through `context.router_mode`, so the
 * body needs no `metadata`, which would be mirrored into `message{}`). Resolves with the HTTP
 * response plus what the Router received: `{r, request, headers, subject, reply}`.
 */
async function echo(t, body, opts = {}) {
  const b = { ...body };
  if (b.context === undefined) b.context = { router_mode: 'echo' };
  const r = await post(t, b, opts);
  const meta = r.json && r.json.decision && r.json.decision.metadata;
  if (r.status !== 200 || !meta || !meta.request) {
    throw new Error(`echo request failed: ${r.status} ${r.body}`);
  }
  return { r, request: meta.request, headers: meta.headers, subject: meta.subject, reply: meta.reply };
}

/** Content-Type of every JSON response: application/json (a charset parameter is tolerated). */
function expectJsonType(r) {
  expect(r.headers['content-type']).toMatch(/^application\/json(; ?charset=utf-8)?$/i);
}

/**
 * Asserts a §5 gateway error exactly: status, Content-Type, and the body
 * `{"ok":false,"error":{"code","message","intake_error_code":null,"details"},"context":{request_id,trace_id,tenant_id}}`
 * with no other keys. `api: true` (default for /api paths) also asserts the X-Trace-Id /
 * X-Request-Id headers and that they equal the body's context.
 *
 * @param {object} r  response of `call`
 * @param {number} status
 * @param {string} code
 * @param {object} [o]
 * @param {object} [o.details]  exact details (default {})
 * @param {string} [o.tenant]  exact context.tenant_id (default: any string)
 * @param {string} [o.requestId]  exact context.request_id
 * @param {string} [o.traceId]  exact context.trace_id
 * @param {string|RegExp} [o.message]  exact text or pattern of error.message
 * @param {boolean} [o.api]  API response (X-Trace-Id required)
 */
function expectGatewayError(r, status, code, o = {}) {
  if (r.status !== status || !r.json) {
    // Show the whole response when the status is wrong: easier to read than a diff of fields.
    expect({ status: r.status, body: r.body }).toEqual({ status, body: expect.stringContaining(`"${code}"`) });
  }
  expect(r.status).toBe(status);
  expectJsonType(r);
  const msg =
    o.message instanceof RegExp
      ? expect.stringMatching(o.message)
      : typeof o.message === 'string'
        ? o.message
        : expect.stringMatching(/\S/);
  expect(r.json).toEqual({
    ok: false,
    error: { code, message: msg, intake_error_code: null, details: o.details || {} },
    context: {
      request_id: o.requestId !== undefined ? o.requestId : expect.any(String),
      trace_id: o.traceId !== undefined ? o.traceId : expect.any(String),
      tenant_id: o.tenant !== undefined ? o.tenant : expect.any(String),
    },
  });
  if (o.api) {
    const tr = r.headers['x-trace-id'];
    expect(tr).toMatch(VALID_TRACE);
    expect(r.json.context.trace_id).toBe(tr);
    expect(r.headers['x-request-id']).toBe(r.json.context.request_id);
    expect(r.json.context.request_id).not.toBe('');
  }
  // Nothing internal reaches a client.
  expect(r.body).not.toMatch(/stack traceback|\.lua:\d+|\/dist-lua\/|\/usr\/share\/|nginx\/\d/);
}

/** Parses an Allow header into a sorted list of methods. */
function allowOf(r) {
  return String(r.headers.allow || '')
    .split(',')
    .map((s) => s.trim().toUpperCase())
    .filter(Boolean)
    .sort();
}

/**
 * Sends raw bytes to the gateway and resolves with the raw response text (for requests an HTTP
 * client will not produce: malformed request lines, huge URIs and headers).
 */
function raw(t, bytes, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port: t.port, host: t.host || '127.0.0.1' });
    const chunks = [];
    sock.on('data', (c) => chunks.push(c));
    sock.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    sock.on('error', (e) => (chunks.length ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(e)));
    sock.write(bytes);
    sock.setTimeout(timeoutMs, () => {
      sock.destroy();
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

/** Splits a raw HTTP/1.1 response (Content-Length or chunked) into {status, headers, body, json}. */
function parseRaw(text) {
  const end = text.indexOf('\r\n\r\n');
  const head = end >= 0 ? text.slice(0, end) : text;
  let body = end >= 0 ? text.slice(end + 4) : '';
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] || '');
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  if (/chunked/i.test(headers['transfer-encoding'] || '')) {
    let out = '';
    let rest = body;
    for (;;) {
      const nl = rest.indexOf('\r\n');
      if (nl < 0) break;
      const size = parseInt(rest.slice(0, nl), 16);
      if (!size) break;
      out += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    body = out;
  }
  let json;
  try {
    json = JSON.parse(body);
  } catch (e) {
    json = undefined;
  }
  return { status: m ? Number(m[1]) : 0, headers, body, json };
}

module.exports = {
  EXTERNAL,
  REFERENCE_ROUTER,
  describeRouterModes,
  describeOwnStack,
  HEX32,
  UUID_LOWER,
  UUID_V4,
  VALID_TRACE,
  API_PATHS,
  tenant,
  uid,
  hex32,
  sleep,
  useGateway,
  waitReady,
  call,
  canonical,
  post,
  echo,
  expectJsonType,
  expectGatewayError,
  allowOf,
  raw,
  parseRaw,
  request,
};
