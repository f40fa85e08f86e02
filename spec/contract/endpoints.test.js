'use strict';
// CONTRACT §1 (endpoints, methods, 404/405, HEAD, OPTIONS without CORS), §6 (health document)
// and the §10 rules about nginx's own errors and version disclosure.
const path = require('path');
const {
  EXTERNAL,
  useGateway,
  call,
  post,
  canonical,
  tenant,
  expectJsonType,
  expectGatewayError,
  allowOf,
  raw,
  parseRaw,
  VALID_TRACE,
} = require('./support');

const PKG_VERSION = require(path.join(__dirname, '..', '..', 'package.json')).version;

const t = useGateway();

const GET_ENDPOINTS = [
  ['/healthz', { status: 'ok' }],
  ['/health/live', { status: 'alive' }],
  ['/readyz', { status: 'ready' }],
  ['/health/ready', { status: 'ready' }],
];

describe('§1 liveness and readiness', () => {
  test.each(GET_ENDPOINTS)('GET %s → 200 with exactly %j', async (p, body) => {
    const r = await call(t, { path: p });
    expect(r.status).toBe(200);
    expectJsonType(r);
    expect(r.json).toEqual(body);
  });

  test.each([...GET_ENDPOINTS.map(([p]) => p), '/health', '/_health'])('HEAD %s → 200, same headers, no body', async (p) => {
    const r = await call(t, { method: 'HEAD', path: p });
    expect(r.status).toBe(200);
    expectJsonType(r);
    expect(r.body).toBe('');
  });

  test('a query string does not change the route', async () => {
    const r = await call(t, { path: '/healthz?probe=1' });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ status: 'ok' });
  });
});

describe('§6 health document', () => {
  test.each(['/health', '/_health'])('GET %s → 200 with the §6 fields and types, healthy while NATS is up', async (p) => {
    const before = Date.now();
    const r = await call(t, { path: p });
    const after = Date.now();
    expect(r.status).toBe(200);
    expectJsonType(r);
    expect(r.json).toEqual({
      status: 'healthy',
      service: 'beamline-gateway',
      version: EXTERNAL ? expect.stringMatching(/\S/) : PKG_VERSION,
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/),
      timestamp_ms: expect.any(Number),
      nats: { connected: true, server: expect.stringMatching(/^[^\s:]+:\d{1,5}$/), subscriptions: expect.any(Number) },
    });
    expect(Number.isInteger(r.json.timestamp_ms)).toBe(true);
    // Both timestamps are "now" (this machine's clock; allow 5 s of skew) and agree with each other.
    expect(r.json.timestamp_ms).toBeGreaterThanOrEqual(before - 5000);
    expect(r.json.timestamp_ms).toBeLessThanOrEqual(after + 5000);
    expect(Math.abs(Date.parse(r.json.timestamp) - r.json.timestamp_ms)).toBeLessThan(1000);
    if (!EXTERNAL) expect(r.json.nats.server).toBe(`127.0.0.1:${t.nats.port}`);
  });
});

describe('§1 405 method_not_allowed with Allow', () => {
  const GET_PATHS = ['/healthz', '/health', '/_health', '/readyz', '/health/ready', '/health/live'];
  const cases = [];
  for (const p of GET_PATHS) for (const m of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) cases.push([m, p, ['GET', 'HEAD']]);
  for (const p of ['/api/v1/routes/decide', '/api/v1/messages']) {
    for (const m of ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) cases.push([m, p, ['POST']]);
  }
  for (const m of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) cases.push([m, '/api/v1/routes/decide/some-id', ['GET', 'HEAD']]);

  test.each(cases)('%s %s → 405, Allow: %j (OPTIONS too: CORS is off)', async (method, p, allow) => {
    const api = p.startsWith('/api/');
    const headers = api ? { 'X-Tenant-ID': tenant() } : {};
    const r = await call(t, { method, path: p, headers, body: ['POST', 'PUT', 'PATCH'].includes(method) ? canonical() : undefined });
    expect(r.status).toBe(405);
    expect(allowOf(r)).toEqual(allow);
    if (method === 'HEAD') {
      expect(r.body).toBe('');
      expectJsonType(r);
      if (api) expect(r.headers['x-trace-id']).toMatch(VALID_TRACE);
      return;
    }
    expectGatewayError(r, 405, 'method_not_allowed', { api });
  });
});

describe('§1 404 not_found', () => {
  const UNKNOWN = [
    ['GET', '/'],
    ['GET', '/nope'],
    ['GET', '/no/such/path?x=1'],
    ['GET', '/api/v1/routes'],
    ['GET', '/api/v1/routes/decide/a/b'],
    ['GET', '/api/v2/routes/decide'],
    ['GET', '/healthz/extra'],
    ['GET', '/HEALTHZ'],
    ['POST', '/api/v1/decide'],
    ['POST', '/api/v1/messages/x'],
    ['DELETE', '/nope'],
  ];
  test.each(UNKNOWN)('%s %s → 404 not_found in the §5 shape', async (method, p) => {
    const r = await call(t, { method, path: p, headers: { 'X-Tenant-ID': tenant() }, body: method === 'POST' ? canonical() : undefined });
    expectGatewayError(r, 404, 'not_found');
  });

  test('a 404 does not need X-Trace-Id, and an API-looking 404 is still not_found (not invalid_request)', async () => {
    const r = await post(t, canonical(), { path: '/api/v1/routes/decid' });
    expectGatewayError(r, 404, 'not_found');
  });

  test('a long unknown path is echoed at most 256 bytes deep, never splitting a character', async () => {
    const r = await call(t, { path: `/${'A'.repeat(3000)}` });
    expectGatewayError(r, 404, 'not_found');
    expect(r.json.error.message).toBe(`no route for GET /${'A'.repeat(255)}…`);
    // 'é' is two bytes: byte 256 is the first half of the 128th one, so the cut falls before it.
    const e = await call(t, { path: `/${encodeURIComponent('é'.repeat(300))}` });
    expectGatewayError(e, 404, 'not_found');
    expect(e.json.error.message).toBe(`no route for GET /${'é'.repeat(127)}…`);
    expect(e.body).not.toContain('\ufffd');
  });
});

describe('§10 protocol-level errors nginx answers itself are JSON, and no version is disclosed', () => {
  const ERR = (code) => ({
    ok: false,
    error: { code, message: expect.stringMatching(/\S/), intake_error_code: null, details: {} },
    context: { request_id: expect.any(String), trace_id: expect.any(String), tenant_id: expect.any(String) },
  });

  test('malformed request line → 400 invalid_request JSON', async () => {
    const r = parseRaw(await raw(t, 'GET /healthz HTTP/1.1 garbage\r\nHost: x\r\n\r\n'));
    expect(r.status).toBe(400);
    expectJsonType(r);
    expect(r.body).not.toMatch(/<html/i);
    expect(r.json).toEqual(ERR('invalid_request'));
  });

  test('URI too long (nginx 414) → 400 invalid_request JSON', async () => {
    const r = parseRaw(await raw(t, `GET /healthz?${'a'.repeat(70000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    expect(r.status).toBe(400);
    expectJsonType(r);
    expect(r.json).toEqual(ERR('invalid_request'));
  });

  test('request headers too large (nginx 494) → 400 invalid_request JSON', async () => {
    const r = parseRaw(
      await raw(t, `POST /api/v1/routes/decide HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70000)}\r\nConnection: close\r\n\r\n`),
    );
    expect(r.status).toBe(400);
    expectJsonType(r);
    expect(r.json).toEqual(ERR('invalid_request'));
  });

  // nginx refuses TRACE and CONNECT before any location runs; the answer still names the
  // methods of the route the URI is for (§1), and a URI of no route is a 404 like any other.
  test.each([
    ['TRACE', '/healthz', ['GET', 'HEAD']],
    ['TRACE', '/api/v1/routes/decide?x=1', ['POST']],
    ['TRACE', '/api/v1/routes/decide/some-id', ['GET', 'HEAD']],
    ['CONNECT', '/api/v1/messages', ['POST']],
  ])('%s %s → 405 JSON with Allow %j', async (method, p, allow) => {
    const r = parseRaw(await raw(t, `${method} ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    expect(r.status).toBe(405);
    expectJsonType(r);
    expect(r.json).toEqual(ERR('method_not_allowed'));
    // CORS on adds OPTIONS to the API routes (a gateway under test may have it either way).
    expect(allowOf(r).filter((m) => m !== 'OPTIONS')).toEqual(allow);
  });

  test('TRACE on a path of no route → 404 not_found JSON', async () => {
    const r = parseRaw(await raw(t, 'TRACE /no/such/thing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    expect(r.status).toBe(404);
    expectJsonType(r);
    expect(r.json).toEqual(ERR('not_found'));
    expect(r.headers.allow).toBeUndefined();
  });

  test('no response reveals a server version', async () => {
    const rs = await Promise.all([
      call(t, { path: '/healthz' }),
      call(t, { path: '/nope' }),
      post(t, '{', {}),
      parseRaw(await raw(t, 'GET / HTTP/1.1 x\r\n\r\n')),
    ]);
    for (const r of rs) {
      expect(r.headers.server === undefined || !/\d/.test(r.headers.server)).toBe(true);
      expect(r.headers['x-powered-by']).toBeUndefined();
      expect(r.body).not.toMatch(/<html|nginx\/\d|openresty\/\d/i);
    }
  });
});
