'use strict';
// CONTRACT §12: the Router admin routes and configured NATS routes (`nats_routes`). The Router
// side is a NATS responder started by this test on the gateway's nats-server, so every reply
// (documents, ok:false codes, malformed bytes, silence) is chosen per test; what the gateway sent
// (subject, payload bytes, NATS headers) is recorded. Own stacks only: they need special config.
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { connect } = require('nats');
const { useGateway, describeOwnStack, call, tenant, uid, hex32, expectGatewayError, allowOf, sleep } = require('./support');

const sha = (s) => crypto.createHash('sha256').update(s).digest('hex');
const HEALTH = '/api/v1/extensions/health';
const BREAKERS = '/api/v1/extensions/circuit-breakers';
const DRY_RUN = '/api/v1/policies/dry-run';
const complexity = (t, p) => `/api/v1/policies/${t}/${p}/complexity`;
const SUBJECTS = {
  health: 'beamline.router.v1.admin.get_extension_health',
  breakers: 'beamline.router.v1.admin.get_circuit_breaker_states',
  dryRun: 'beamline.router.v1.admin.dry_run_pipeline',
  complexity: 'beamline.router.v1.admin.get_pipeline_complexity',
};
// An operator's own routes: two methods on one path, and a subject nobody answers.
const OPS_ROUTES = [
  { name: 'ops_put', method: 'PUT', path: '/api/v1/ops/{item}', subject: 'test.ops.put', body: 'path_params', admin: false },
  { name: 'ops_delete', method: 'DELETE', path: '/api/v1/ops/{item}', subject: 'test.ops.delete', body: 'empty', timeout_ms: 200 },
  { name: 'ops_nobody', method: 'GET', path: '/api/v1/ops-nobody', subject: 'test.nobody.listens' },
];

/**
 * A NATS responder on `subjects` (wildcards allowed): `reply(msg)` returns the bytes (string or
 * Buffer) to answer, or undefined to stay silent. Records every request.
 */
async function startResponder(url, subjects, r = { seen: [], reply: () => '{}' }) {
  const nc = await connect({ servers: url });
  r.nc = nc;
  for (const s of subjects) {
    nc.subscribe(s, {
      callback: (err, m) => {
        if (err) return;
        const msg = {
          subject: m.subject,
          data: Buffer.from(m.data).toString('utf8'),
          headers: m.headers ? Object.fromEntries([...m.headers].map(([k, v]) => [k, v[0]])) : {},
        };
        r.seen.push(msg);
        const out = r.reply(msg);
        if (out !== undefined) m.respond(Buffer.from(out));
      },
    });
  }
  await nc.flush();
  r.last = () => r.seen[r.seen.length - 1];
  return r;
}

function withResponder(s) {
  const h = { seen: [] };
  beforeAll(async () => {
    await startResponder(s.nats.url, ['beamline.router.v1.admin.*', 'test.ops.*'], h);
  });
  afterAll(async () => {
    if (h.nc) await h.nc.close();
  });
  beforeEach(() => {
    h.seen.length = 0;
    h.reply = () => '{"ok":true}';
  });
  return h;
}

const get = (s, p, t, headers = {}) => call(s, { path: p, headers: t === null ? headers : { 'X-Tenant-ID': t, ...headers } });

describeOwnStack('[own stack: NATS responder of the test] §12 admin routes', () => {
  const s = useGateway({
    own: true,
    router: false,
    configure: (raw) => {
      raw.limits = { body_bytes: 4096 };
      raw.router = { admin_timeout_ms: 300 };
      raw.nats_routes = [...require('../../scripts/lib/config-schema').ADMIN_ROUTES, ...OPS_ROUTES];
    },
  });
  const nats = withResponder(s);

  test('GET extensions/health: {} on its subject with the §4 NATS headers; the reply bytes unchanged, 200', async () => {
    const doc = '{"extensions": [ {"id":"pii","status":"healthy"} ],  "n": 1.50}';
    nats.reply = () => doc;
    const t = tenant();
    const rid = uid();
    const tr = hex32();
    const r = await get(s, HEALTH, t, { 'X-Request-ID': rid, 'X-Trace-ID': tr.toUpperCase() });
    expect(r.status).toBe(200);
    expect(r.body).toBe(doc);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(r.headers['x-trace-id']).toBe(tr);
    expect(r.headers['x-request-id']).toBe(rid);
    expect(r.headers['x-ratelimit-limit']).toBe('60');
    const m = nats.last();
    expect(m.subject).toBe(SUBJECTS.health);
    expect(m.data).toBe('{}');
    expect(m.headers).toEqual({ trace_id: tr, tenant_id: t, request_id: rid, version: '1' });
  });

  test('a valid traceparent is forwarded and gives the trace id; HEAD answers without a body', async () => {
    const tr = hex32();
    const tp = `00-${tr}-${crypto.randomBytes(8).toString('hex')}-01`;
    const r = await get(s, BREAKERS, tenant(), { traceparent: tp, tracestate: 'a=b' });
    expect(r.status).toBe(200);
    expect(r.headers['x-trace-id']).toBe(tr);
    expect(nats.last().subject).toBe(SUBJECTS.breakers);
    expect(nats.last().headers).toMatchObject({ trace_id: tr, traceparent: tp, tracestate: 'a=b' });
    const h = await call(s, { method: 'HEAD', path: BREAKERS, headers: { 'X-Tenant-ID': tenant() } });
    expect(h.status).toBe(200);
    expect(h.body).toBe('');
  });

  test.each([
    ['a JSON array', '[{"extension_id":"pii","state":"closed"}]'],
    ['a JSON string', '"all closed"'],
    ['a number', '42'],
    ['an ok:true object', '{"ok":true,"circuit_breakers":[]}'],
    ['an object without ok', '{"circuit_breakers":{}}'],
    ['an object whose ok is not boolean', '{"ok":"false"}'],
  ])('any JSON value other than an ok:false object is passed through with 200: %s', async (_w, doc) => {
    nats.reply = () => doc;
    const r = await get(s, BREAKERS, tenant());
    expect(r.status).toBe(200);
    expect(r.body).toBe(doc);
  });

  test.each([
    ['policy_not_found', 404],
    ['extension_not_found', 404],
    ['invalid_request', 400],
    ['unauthorized', 401],
    ['validator_blocked', 403],
    ['rate_limit_exceeded', 429],
    ['extension_unavailable', 503],
    ['extension_timeout', 504],
    ['internal', 500],
    ['some_new_code', 500],
  ])('ok:false with code %s → %i, the Router body completed with intake_error_code null and details {}', async (code, status) => {
    nats.reply = () => JSON.stringify({ ok: false, error: { code, message: `router says ${code}` }, context: { request_id: 'x' } });
    const r = await get(s, complexity('pt', 'default'), 'pt');
    expect(r.status).toBe(status);
    expect(r.json).toEqual({
      ok: false,
      error: { code, message: `router says ${code}`, intake_error_code: null, details: {} },
      context: { request_id: 'x' },
    });
    expect(r.headers['x-trace-id']).toMatch(/^[0-9a-f]{32}$/);
  });

  test('ok:false with its own intake_error_code and details: the Router bytes unchanged', async () => {
    const body = '{"ok":false,"error":{"code":"policy_not_found","message":"no","intake_error_code":null,"details":{"policy_id":"p"}}}';
    nats.reply = () => body;
    const r = await get(s, complexity('pt', 'p'), 'pt');
    expect(r.status).toBe(404);
    expect(r.body).toBe(body);
  });

  test.each([
    ['not JSON', '<html>oops</html>'],
    ['empty', ''],
    ['ok:false with a string error', '{"ok":false,"error":"broken"}'],
    ['ok:false without error', '{"ok":false}'],
    ['ok:false whose error has no code', '{"ok":false,"error":{"message":"x"}}'],
  ])('a malformed reply (%s) → 502 bad_gateway', async (_w, bytes) => {
    nats.reply = () => bytes;
    expectGatewayError(await get(s, HEALTH, tenant()), 502, 'bad_gateway', { api: true });
  });

  test('no reply within router.admin_timeout_ms → 504 timeout; a route timeout_ms of its own wins', async () => {
    nats.reply = () => undefined;
    const t0 = Date.now();
    expectGatewayError(await get(s, HEALTH, tenant()), 504, 'timeout', { api: true, message: /300 ms/ });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    const d = await call(s, { method: 'DELETE', path: '/api/v1/ops/x1', headers: { 'X-Tenant-ID': tenant() } });
    expectGatewayError(d, 504, 'timeout', { api: true, message: /200 ms/ });
  });

  test('no responders on the subject → 503 unavailable with Retry-After', async () => {
    const r = await get(s, '/api/v1/ops-nobody', tenant());
    expectGatewayError(r, 503, 'unavailable', { api: true });
    expect(r.headers['retry-after']).toBe('1');
  });

  test('POST policies/dry-run forwards the client JSON object byte for byte', async () => {
    nats.reply = (m) => `{"dry_run":true,"echo":${m.data}}`;
    const raw = '{"policy_id":"default", "n": 12345678901234567890, "nested":{"a":[1,2]}}';
    const t = tenant();
    const r = await call(s, {
      method: 'POST',
      path: DRY_RUN,
      headers: { 'X-Tenant-ID': t, 'Content-Type': 'application/json' },
      body: raw,
    });
    expect(r.status).toBe(200);
    expect(nats.last().subject).toBe(SUBJECTS.dryRun);
    expect(nats.last().data).toBe(raw);
    expect(nats.last().headers.tenant_id).toBe(t);
    expect(r.body).toBe(`{"dry_run":true,"echo":${raw}}`);
  });

  test.each([
    ['an empty body', ''],
    ['a body that is not JSON', '{"policy_id":'],
    ['a JSON array', '[1,2]'],
    ['a JSON string', '"x"'],
  ])('dry-run with %s → 400 invalid_request, nothing published', async (_w, body) => {
    const r = await call(s, { method: 'POST', path: DRY_RUN, headers: { 'X-Tenant-ID': tenant() }, body, contentType: 'application/json' });
    expectGatewayError(r, 400, 'invalid_request', { api: true });
    expect(nats.seen).toHaveLength(0);
  });

  test('dry-run with text/plain → 415; over the body limit → 413 with limit_bytes', async () => {
    const t = tenant();
    const r = await call(s, { method: 'POST', path: DRY_RUN, headers: { 'X-Tenant-ID': t }, body: '{}', contentType: 'text/plain' });
    expectGatewayError(r, 415, 'unsupported_media_type', { api: true, tenant: t });
    const big = JSON.stringify({ pad: 'x'.repeat(5000) });
    const b = await call(s, { method: 'POST', path: DRY_RUN, headers: { 'X-Tenant-ID': t }, body: big });
    expectGatewayError(b, 413, 'payload_too_large', { api: true, tenant: t, details: { limit_bytes: 4096 } });
    expect(nats.seen).toHaveLength(0);
  });

  test('complexity: {"tenant_id","policy_id"} from the path', async () => {
    const t = tenant();
    const r = await get(s, complexity(t, 'cost-optimized'), t);
    expect(r.status).toBe(200);
    expect(nats.last().subject).toBe(SUBJECTS.complexity);
    expect(JSON.parse(nats.last().data)).toEqual({ tenant_id: t, policy_id: 'cost-optimized' });
  });

  test('complexity: a {tenant_id} other than X-Tenant-ID → 403 forbidden, nothing published', async () => {
    const t = tenant();
    expectGatewayError(await get(s, complexity('someone-else', 'p'), t), 403, 'forbidden', { api: true, tenant: t });
    expect(nats.seen).toHaveLength(0);
  });

  test.each([
    ['policy_id', complexity('ten', 'bad%20id')],
    ['policy_id', complexity('ten', 'x'.repeat(129))],
    ['tenant_id', complexity('t%24x', 'p')],
  ])('complexity: a path segment outside [A-Za-z0-9._:-]{1,128} → 400 with details.field %s', async (field, p) => {
    expectGatewayError(await get(s, p, 'ten'), 400, 'invalid_request', { api: true, details: { field } });
    expect(nats.seen).toHaveLength(0);
  });

  test.each([
    '/api/v1/policies/a',
    '/api/v1/policies/a/b',
    '/api/v1/policies/a/b/complexity/x',
    '/api/v1/policies/a/b/other',
    '/api/v1/policies',
  ])('any other /api/v1/policies/* path → 404 not_found: %s', async (p) => {
    expectGatewayError(await get(s, p, 'ten'), 404, 'not_found');
  });

  test('missing X-Tenant-ID → 400 with details.header; an invalid X-Request-ID → 400', async () => {
    expectGatewayError(await get(s, HEALTH, null), 400, 'invalid_request', { api: true, details: { header: 'X-Tenant-ID' } });
    const r = await get(s, HEALTH, tenant(), { 'X-Request-ID': 'has space' });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { header: 'X-Request-ID' } });
    expect(nats.seen).toHaveLength(0);
  });

  test.each([
    ['POST', HEALTH, ['GET', 'HEAD']],
    ['DELETE', BREAKERS, ['GET', 'HEAD']],
    ['GET', DRY_RUN, ['POST']],
    ['POST', complexity('a', 'b'), ['GET', 'HEAD']],
    ['OPTIONS', HEALTH, ['GET', 'HEAD']],
    ['GET', '/api/v1/ops/x', ['DELETE', 'PUT']],
  ])('%s %s → 405 with Allow', async (method, p, allow) => {
    const r = await call(s, { method, path: p, headers: { 'X-Tenant-ID': 'ten' } });
    expectGatewayError(r, 405, 'method_not_allowed');
    expect(allowOf(r)).toEqual(allow);
  });

  test('an operator route: two methods on one path, path_params body, no admin key needed', async () => {
    const t = tenant();
    const r = await call(s, { method: 'PUT', path: '/api/v1/ops/item-7', headers: { 'X-Tenant-ID': t } });
    expect(r.status).toBe(200);
    expect(nats.last()).toMatchObject({ subject: 'test.ops.put', data: '{"item":"item-7"}' });
    nats.reply = () => '{"deleted":true}';
    const d = await call(s, { method: 'DELETE', path: '/api/v1/ops/item-7', headers: { 'X-Tenant-ID': t } });
    expect(d.body).toBe('{"deleted":true}');
    expect(nats.last()).toMatchObject({ subject: 'test.ops.delete', data: '{}' });
  });

  test('metrics and the access log name the route, like the API routes', async () => {
    nats.reply = () => '{"ok":false,"error":{"code":"extension_unavailable","message":"down"}}';
    const rid = uid();
    expect((await get(s, HEALTH, tenant(), { 'X-Request-ID': rid })).status).toBe(503);
    const m = await call(s, { path: '/metrics' });
    expect(m.body).toMatch(/gateway_http_requests_total\{route="admin_extension_health",method="GET",status="503"\} [1-9]/);
    expect(m.body).toMatch(/gateway_router_replies_total\{code="extension_unavailable"\} [1-9]/);
    expect(m.body).toMatch(/gateway_router_request_duration_seconds_count\{route="admin_extension_health"\} [1-9]/);
    const logFile = path.join(s.gateway.prefix, 'logs', 'access.log');
    let line;
    for (const deadline = Date.now() + 5000; !line && Date.now() < deadline; await sleep(50)) {
      line = fs
        .readFileSync(logFile, 'utf8')
        .split('\n')
        .find((l) => l.includes(rid));
    }
    expect(JSON.parse(line)).toMatchObject({
      request_id: rid,
      route: 'admin_extension_health',
      method: 'GET',
      status: 503,
      router_code: 'extension_unavailable',
    });
    expect(JSON.parse(line).router_time).toEqual(expect.any(Number));
  });
});

const ADMIN_KEY = `adm_${crypto.randomBytes(12).toString('hex')}`;
const USER_KEY = `usr_${crypto.randomBytes(12).toString('hex')}`;
const OTHER_ADMIN_KEY = `oad_${crypto.randomBytes(12).toString('hex')}`;
const ORIGIN = 'http://ui.example.test';

describeOwnStack('[own stack: auth on, admin keys, CORS, GATEWAY_RATE_LIMIT_ADMIN=3] §12 admin keys and limits', () => {
  const s = useGateway({
    own: true,
    router: false,
    env: { GATEWAY_RATE_LIMIT_ADMIN: '3' },
    configure: (raw) => {
      raw.auth = {
        enabled: true,
        api_keys: [
          { tenant_id: 'adm-t', key_sha256: sha(ADMIN_KEY), admin: true },
          { tenant_id: 'adm-t', key_sha256: sha(USER_KEY) },
          { tenant_id: 'other-t', key_sha256: sha(OTHER_ADMIN_KEY), admin: true },
        ],
      };
      raw.cors = { allowed_origins: [ORIGIN] };
    },
  });
  const nats = withResponder(s);

  test('an admin key of the tenant → 200; a key without admin: true → 403; no key → 401', async () => {
    const ok = await get(s, HEALTH, 'adm-t', { 'X-API-Key': ADMIN_KEY });
    expect(ok.status).toBe(200);
    const user = await get(s, BREAKERS, 'adm-t', { Authorization: `Bearer ${USER_KEY}` });
    expectGatewayError(user, 403, 'forbidden', { api: true, tenant: 'adm-t', message: /admin/ });
    expectGatewayError(await get(s, BREAKERS, 'adm-t'), 401, 'unauthorized', { api: true });
    expect(nats.seen).toHaveLength(1);
  });

  test("an admin key of another tenant → 403 (§2: the key's tenant must be X-Tenant-ID's)", async () => {
    expectGatewayError(await get(s, BREAKERS, 'adm-t', { 'X-API-Key': OTHER_ADMIN_KEY }), 403, 'forbidden', { api: true });
    expect(nats.seen).toHaveLength(0);
  });

  test('route admin: GATEWAY_RATE_LIMIT_ADMIN per tenant, shared by the admin routes → 429 with details', async () => {
    const h = { 'X-API-Key': OTHER_ADMIN_KEY };
    const statuses = [];
    for (const p of [HEALTH, BREAKERS, complexity('other-t', 'default'), HEALTH]) statuses.push((await get(s, p, 'other-t', h)).status);
    expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
    const r = await get(s, HEALTH, 'other-t', h);
    expectGatewayError(r, 429, 'rate_limit_exceeded', {
      api: true,
      details: { endpoint: HEALTH, limit: 3, window_seconds: 60, retry_after_seconds: expect.any(Number) },
    });
    expect(r.headers['x-ratelimit-remaining']).toBe('0');
    expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  });

  test('CORS as on the other API routes: preflight 204 with the methods, and the headers on answers', async () => {
    const pre = await call(s, {
      method: 'OPTIONS',
      path: DRY_RUN,
      headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'POST' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBe(ORIGIN);
    expect(pre.headers['access-control-allow-methods']).toBe('POST, OPTIONS');
    const r = await get(s, HEALTH, 'adm-t', { 'X-API-Key': ADMIN_KEY, Origin: ORIGIN });
    expect(r.headers['access-control-allow-origin']).toBe(ORIGIN);
    const wrong = await call(s, { method: 'PUT', path: HEALTH, headers: { Origin: ORIGIN } });
    expect(allowOf(wrong)).toEqual(['GET', 'HEAD', 'OPTIONS']);
  });
});
