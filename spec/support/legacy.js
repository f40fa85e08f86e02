'use strict';
/**
 * A small fake of the OLD gateways for the traffic-switch tests: a Node HTTP server on
 * 127.0.0.1 that answers the API routes in the predecessors' shapes (CONTRACT §9).
 *
 *   const legacy = await startLegacy({ mode: 'same' });
 *   legacy.url, legacy.port, legacy.requests (what it received), legacy.count, legacy.reset(),
 *   legacy.mode = 'nest', legacy.delayMs = 500, legacy.record = false
 *   await legacy.stop();
 *
 * Modes (switchable at any time through `legacy.mode`):
 *   same  answers exactly like this gateway does with the reference Router in `--fast` mode:
 *         200 {"ok":true,"decision":{…"reason":"fast"…},"context":{…}}; unknown path: 404 not_found
 *         in the contract's shape. Shadow comparisons against it match.
 *   nest  the NestJS gateway: POST /api/v1/messages stores and acknowledges (201
 *         {message_id, status, timestamp}); decide answers the flat decision; errors are
 *         {code, message, timestamp, path}.
 *   cgw   the C gateway: every decide is the Router's rejection inside a 200
 *         {"ok":false,"error":{"code":"invalid_request",…}} (C-GW did not forward `task`); an
 *         unknown path is 404 invalid_request.
 * Every answer carries `X-Legacy-Mode: <mode>`. `delayMs` delays every answer (a slow old
 * gateway). A request without X-Tenant-ID and without a body tenant gets 400 in each mode's
 * error shape. Nothing here starts processes; the server lives in the test process.
 */
const http = require('http');
const crypto = require('crypto');

/** The decision the reference Router answers in `--fast` mode (router/reference-router.js). */
const FAST_DECISION = { provider_id: 'openai', reason: 'fast', priority: 50, expected_latency_ms: 850, expected_cost: 0.002, metadata: {} };

function tenantOf(headers, body) {
  if (typeof headers['x-tenant-id'] === 'string') return headers['x-tenant-id'];
  if (body && body.message && typeof body.message.tenant_id === 'string') return body.message.tenant_id;
  if (body && typeof body.tenant_id === 'string') return body.tenant_id;
  return undefined;
}

function answer(mode, req, raw) {
  let body;
  try {
    body = raw.length ? JSON.parse(raw) : undefined;
  } catch (e) {
    body = undefined;
  }
  const url = new URL(req.url, 'http://legacy');
  const isApi =
    url.pathname === '/api/v1/routes/decide' ||
    url.pathname === '/api/v1/messages' ||
    /^\/api\/v1\/routes\/decide\/[^/]+$/.test(url.pathname);
  const tenant = tenantOf(req.headers, body);
  const requestId = req.headers['x-request-id'] || (body && body.request_id) || crypto.randomUUID();
  const traceId = (req.headers['x-trace-id'] || crypto.randomBytes(16).toString('hex')).toLowerCase();
  const nestError = (status, code, message) => [status, { code, message, timestamp: new Date().toISOString(), path: url.pathname }];
  const contractError = (status, code, message, details = {}) => [
    status,
    {
      ok: false,
      error: { code, message, intake_error_code: null, details },
      context: { request_id: requestId, trace_id: traceId, tenant_id: tenant || '' },
    },
  ];
  if (!isApi) {
    if (mode === 'nest') return nestError(404, 'NOT_FOUND', `Cannot ${req.method} ${url.pathname}`);
    return contractError(404, mode === 'cgw' ? 'invalid_request' : 'not_found', 'not found');
  }
  if (tenant === undefined) {
    if (mode === 'nest') return nestError(400, 'BAD_REQUEST', 'tenant_id is required');
    return contractError(400, 'invalid_request', 'missing X-Tenant-ID header', { header: 'X-Tenant-ID' });
  }
  if (mode === 'nest') {
    if (url.pathname === '/api/v1/messages') {
      const id = (body && body.message && body.message.message_id) || crypto.randomUUID();
      return [201, { message_id: id, status: 'stored', timestamp: new Date().toISOString() }];
    }
    return [200, { ...FAST_DECISION, request_id: requestId, trace_id: traceId }];
  }
  if (mode === 'cgw') {
    return [
      200,
      {
        ok: false,
        error: { code: 'invalid_request', message: 'task is required', intake_error_code: null, details: {} },
        context: { request_id: requestId, trace_id: traceId },
      },
    ];
  }
  return [200, { ok: true, decision: FAST_DECISION, context: { request_id: requestId, trace_id: traceId } }];
}

/**
 * @param {{mode?: 'same'|'nest'|'cgw', delayMs?: number, port?: number, record?: boolean}} [opts]
 *   record (default true): keep every request in `requests` ({method, url, headers, body, at}).
 */
function startLegacy(opts = {}) {
  const state = {
    mode: opts.mode || 'same',
    delayMs: opts.delayMs || 0,
    requests: [],
    record: opts.record !== false,
    count: 0,
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      state.count++;
      if (state.record) state.requests.push({ method: req.method, url: req.url, headers: req.headers, body: raw, at: performance.now() });
      const mode = state.mode;
      const [status, body] = answer(mode, req, raw);
      const text = JSON.stringify(body);
      const send = () => {
        res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'X-Legacy-Mode': mode });
        res.end(req.method === 'HEAD' ? undefined : text);
      };
      if (state.delayMs > 0) setTimeout(send, state.delayMs);
      else send();
    });
  });
  server.keepAliveTimeout = 65000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port || 0, '127.0.0.1', () => {
      const { port } = server.address();
      const sockets = new Set();
      server.on('connection', (s) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      resolve({
        port,
        url: `http://127.0.0.1:${port}`,
        get mode() {
          return state.mode;
        },
        set mode(m) {
          state.mode = m;
        },
        get delayMs() {
          return state.delayMs;
        },
        set delayMs(ms) {
          state.delayMs = ms;
        },
        get requests() {
          return state.requests;
        },
        get record() {
          return state.record;
        },
        set record(on) {
          state.record = on;
        },
        get count() {
          return state.count;
        },
        reset() {
          state.requests = [];
          state.count = 0;
        },
        stop() {
          return new Promise((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          });
        },
      });
    });
  });
}

module.exports = { startLegacy, FAST_DECISION };

// A stand-in for the old gateway in `make run` (docs/RUNBOOK.md, phase 1 "Dev"):
//   node spec/support/legacy.js [--port 9090] [--mode same|nest|cgw] [--delay-ms 0]
if (require.main === module) {
  const { parseArgs } = require('../../scripts/lib/args');
  const a = parseArgs(process.argv.slice(2), { string: ['port', 'mode', 'delay-ms'] });
  startLegacy({ port: Number(a.port || 9090), mode: a.mode || 'same', delayMs: Number(a['delay-ms'] || 0), record: false }).then((l) =>
    process.stdout.write(`fake old gateway (mode ${l.mode}) listening on ${l.url}\n`),
  );
}
