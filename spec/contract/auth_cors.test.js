'use strict';
// CONTRACT §2 API keys and §8 CORS (features of their own issue; land separately). Both need a
// gateway configured by the suite (auth.api_keys, cors.allowed_origins), so everything here is
// skipped with GATEWAY_URL. CORS off (OPTIONS → 405) is covered in endpoints.test.js.
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { startGateway } = require('../support/gateway');
const { useGateway, describeOwnStack, call, post, canonical, uid, expectGatewayError, expectJsonType } = require('./support');

const sha = (s) => crypto.createHash('sha256').update(s).digest('hex');
const KEY_A = `ka_${crypto.randomBytes(16).toString('hex')}`;
const KEY_B = `kb_${crypto.randomBytes(16).toString('hex')}`;
const TENANT_A = 'auth-tenant-a';
const TENANT_B = 'auth-tenant-b';

describeOwnStack('[own stack: auth.enabled with one key per tenant] §2 API keys', () => {
  const s = useGateway({
    own: true,
    configure: (raw) => {
      raw.auth = {
        enabled: true,
        api_keys: [
          { tenant_id: TENANT_A, key_sha256: sha(KEY_A) },
          { tenant_id: TENANT_B, key_sha256: sha(KEY_B).toUpperCase() },
        ],
      };
    },
  });

  test('Authorization: Bearer <key> of the tenant → 200', async () => {
    const r = await post(s, canonical(), { tenantId: TENANT_A, headers: { Authorization: `Bearer ${KEY_A}` } });
    expect(r.status).toBe(200);
  });

  test('X-API-Key: <key> (any header-name case) → 200; a digest configured in upper case works', async () => {
    expect((await post(s, canonical(), { tenantId: TENANT_A, headers: { 'x-api-key': KEY_A } })).status).toBe(200);
    expect((await post(s, canonical(), { tenantId: TENANT_B, headers: { 'X-API-KEY': KEY_B } })).status).toBe(200);
  });

  test('no key → 401 unauthorized', async () => {
    expectGatewayError(await post(s, canonical(), { tenantId: TENANT_A }), 401, 'unauthorized', { api: true });
  });

  test.each([
    ['an unknown key', { 'X-API-Key': 'nope' }],
    ['an unknown bearer key', { Authorization: 'Bearer nope' }],
    ['a non-bearer scheme', { Authorization: `Basic ${KEY_A}` }],
    ['an empty key', { 'X-API-Key': '' }],
  ])('%s → 401 unauthorized', async (_w, headers) => {
    expectGatewayError(await post(s, canonical(), { tenantId: TENANT_A, headers }), 401, 'unauthorized', { api: true });
  });

  test('a valid key of another tenant → 403 forbidden', async () => {
    expectGatewayError(await post(s, canonical(), { tenantId: TENANT_A, headers: { 'X-API-Key': KEY_B } }), 403, 'forbidden', {
      api: true,
    });
  });

  test('the decision lookup and /api/v1/messages need the key too', async () => {
    expectGatewayError(
      await call(s, { path: `/api/v1/routes/decide/${uid()}`, headers: { 'X-Tenant-ID': TENANT_A } }),
      401,
      'unauthorized',
      { api: true },
    );
    expectGatewayError(await post(s, canonical(), { tenantId: TENANT_A, path: '/api/v1/messages' }), 401, 'unauthorized', { api: true });
    const ok = await call(s, { path: `/api/v1/routes/decide/${uid()}`, headers: { 'X-Tenant-ID': TENANT_A, 'X-API-Key': KEY_A } });
    expect(ok.status).toBe(404);
  });

  test('order: auth comes before the tenant header, content type and body checks', async () => {
    expectGatewayError(await post(s, canonical(), { tenantId: null }), 401, 'unauthorized', { api: true });
    expectGatewayError(await post(s, 'x', { tenantId: 'bad tenant', headers: { 'Content-Type': 'text/plain' } }), 401, 'unauthorized', {
      api: true,
    });
  });

  test('order: the route and method come before auth (405, 404 without a key)', async () => {
    expect((await call(s, { method: 'PUT', path: '/api/v1/routes/decide' })).status).toBe(405);
    expect((await call(s, { path: '/nope' })).status).toBe(404);
  });

  test('health endpoints need no key', async () => {
    expect((await call(s, { path: '/healthz' })).status).toBe(200);
    expect((await call(s, { path: '/health' })).status).toBe(200);
  });

  test('the key is never forwarded to the Router and never logged', async () => {
    const r = await post(s, canonical({ context: { router_mode: 'echo' } }), {
      tenantId: TENANT_A,
      headers: { Authorization: `Bearer ${KEY_A}` },
    });
    expect(r.status).toBe(200);
    expect(r.body).not.toContain(KEY_A);
    expect(Object.keys(r.json.decision.metadata.headers).sort()).toEqual(['request_id', 'tenant_id', 'trace_id', 'version']);
    await post(s, canonical(), { tenantId: TENANT_A, headers: { 'X-API-Key': KEY_B } });
    await post(s, canonical(), { tenantId: TENANT_A, headers: { 'X-API-Key': `${KEY_A}x` } });
    const logs = path.join(s.gateway.prefix, 'logs');
    for (const f of fs.readdirSync(logs)) {
      const text = fs.readFileSync(path.join(logs, f), 'utf8');
      expect(text).not.toContain(KEY_A);
      expect(text).not.toContain(KEY_B);
    }
  });
});

describeOwnStack('[own stack: cors.allowed_origins] §8 CORS preflight', () => {
  const ORIGIN = 'https://app.example';
  const s = useGateway({
    own: true,
    configure: (raw) => {
      raw.cors = { allowed_origins: [ORIGIN] };
    },
  });
  const preflight = (p, origin = ORIGIN, method = 'POST') =>
    call(s, {
      method: 'OPTIONS',
      path: p,
      headers: { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': 'content-type,x-tenant-id' },
    });

  test.each(['/api/v1/routes/decide', '/api/v1/messages', '/api/v1/routes/decide/some-id'])(
    'OPTIONS %s from an allowed origin → 204 with Access-Control-Allow-*',
    async (p) => {
      const r = await preflight(p, ORIGIN, p.endsWith('some-id') ? 'GET' : 'POST');
      expect(r.status).toBe(204);
      expect(r.body).toBe('');
      expect(r.headers['access-control-allow-origin']).toBe(ORIGIN);
      const methods = String(r.headers['access-control-allow-methods'] || '').toUpperCase();
      expect(methods).toContain(p.endsWith('some-id') ? 'GET' : 'POST');
      const allowed = String(r.headers['access-control-allow-headers'] || '').toLowerCase();
      expect(allowed).toContain('x-tenant-id');
      expect(allowed).toContain('content-type');
      expect(r.headers['access-control-allow-credentials']).toBeUndefined();
    },
  );

  test('the preflight needs no X-Tenant-ID and makes no Router call (NATS not needed)', async () => {
    const r = await preflight('/api/v1/routes/decide');
    expect(r.status).toBe(204);
  });

  test('an actual request from the allowed origin carries Access-Control-Allow-Origin', async () => {
    const r = await post(s, canonical(), { headers: { Origin: ORIGIN } });
    expect(r.status).toBe(200);
    expect(r.headers['access-control-allow-origin']).toBe(ORIGIN);
    expectJsonType(r);
  });

  test('a preflight from an origin not in the list gets no Access-Control-Allow-Origin', async () => {
    const r = await preflight('/api/v1/routes/decide', 'https://evil.example');
    expect(r.headers['access-control-allow-origin']).toBeUndefined();
  });

  test('"*" together with credentials is a config error (the gateway does not start)', async () => {
    await expect(
      startGateway({
        natsUrl: 'nats://127.0.0.1:1',
        configure: (raw) => {
          raw.cors = { allowed_origins: ['*'], allow_credentials: true };
        },
      }),
    ).rejects.toThrow(/cors/);
  });
});
