'use strict';
// API keys (CONTRACT §2) and CORS (§8) on the real stack.
const fs = require('fs');
const path = require('path');
const { startNats, startRouter, stopAll } = require('../support/processes');
const { startGateway, request } = require('../support/gateway');
const { loadConfig, ConfigError } = require('../../scripts/lib/config');
const { DECIDE, MESSAGES, decideBody, post, sha256, freshWindow } = require('../support/api');

const KEY_A = 'ka_9f3c2e1d0b8a7f6e5d4c3b2a1f0e9d8c';
const KEY_B = 'kb_0a1b2c3d4e5f60718293a4b5c6d7e8f9';
const ORIGIN = 'https://app.example.com';

let nats;
beforeAll(async () => {
  nats = await startNats();
  await startRouter({ natsUrl: nats.url });
});
afterAll(() => stopAll());

describe('API keys', () => {
  let gw;
  beforeAll(async () => {
    gw = await startGateway({
      natsUrl: nats.url,
      workers: 2,
      configure: (raw) => {
        raw.auth = {
          enabled: true,
          api_keys: [
            { tenant_id: 'tenant-a', key_sha256: sha256(KEY_A), name: 'a primary' },
            { tenant_id: 'tenant-b', key_sha256: sha256(KEY_B).toUpperCase() },
          ],
        };
        raw.routes = { decide: { rate_limit: { limit: 2, window_seconds: 3600 } } };
      },
    });
  });

  test('missing or unknown key → 401 unauthorized with WWW-Authenticate', async () => {
    for (const headers of [
      {},
      { authorization: 'Bearer nope' },
      { 'x-api-key': 'nope' },
      { authorization: `Basic ${KEY_A}` },
      { authorization: `Bearer ${KEY_A}x` },
    ]) {
      const r = await post(gw.url, { tenant: 'tenant-a', headers });
      expect(r.status).toBe(401);
      expect(r.headers['www-authenticate']).toBe('Bearer');
      expect(r.json.error).toEqual({ code: 'unauthorized', message: expect.any(String), intake_error_code: null, details: {} });
      expect(r.json.context.tenant_id).toBe('tenant-a');
      expect(r.headers['x-trace-id']).toMatch(/^[0-9a-f]{32}$/);
      expect(r.headers['x-ratelimit-limit']).toBeUndefined();
    }
  });

  test('a valid key as Bearer or X-API-Key → the request runs', async () => {
    await freshWindow(3600, 20);
    const a = await post(gw.url, { tenant: 'tenant-a', headers: { authorization: `Bearer ${KEY_A}` } });
    expect(a.status).toBe(200);
    const b = await post(gw.url, { tenant: 'tenant-b', path: MESSAGES, headers: { 'x-api-key': KEY_B } });
    expect(b.status).toBe(200);
  });

  test('a valid key of another tenant → 403 forbidden (header, legacy body and lookup)', async () => {
    const r = await post(gw.url, { tenant: 'tenant-a', headers: { 'x-api-key': KEY_B } });
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe('forbidden');
    expect(r.json.context.tenant_id).toBe('tenant-a');
    const legacy = JSON.stringify({ message: { tenant_id: 'tenant-a', message_type: 'chat', payload: '{}' } });
    const l = await post(gw.url, { tenant: null, headers: { 'x-api-key': KEY_B }, body: legacy });
    expect(l.status).toBe(403);
    const g = await request(gw.url, { path: `${DECIDE}/x`, headers: { 'x-tenant-id': 'tenant-b', 'x-api-key': KEY_A } });
    expect(g.status).toBe(403);
    const g401 = await request(gw.url, { path: `${DECIDE}/x`, headers: { 'x-tenant-id': 'tenant-b' } });
    expect(g401.status).toBe(401);
  });

  test('auth comes before the tenant header and the rate limit: rejected requests are not counted', async () => {
    await freshWindow(3600, 20);
    const noTenant = await post(gw.url, { tenant: null, headers: {} });
    expect(noTenant.status).toBe(401);
    for (let i = 0; i < 3; i++) expect((await post(gw.url, { tenant: 'tenant-b', headers: { 'x-api-key': 'wrong' } })).status).toBe(401);
    for (let i = 0; i < 3; i++) expect((await post(gw.url, { tenant: 'tenant-b', headers: { 'x-api-key': KEY_A } })).status).toBe(403);
    const ok = await post(gw.url, { tenant: 'tenant-b', headers: { 'x-api-key': KEY_B } });
    expect(ok.status).toBe(200);
    // The first counted decide request of tenant-b in this window (limit 2).
    expect(ok.headers['x-ratelimit-remaining']).toBe('1');
  });

  test('the key is never forwarded to the Router and never logged', async () => {
    const r = await post(gw.url, {
      tenant: 'tenant-a',
      headers: { authorization: `Bearer ${KEY_A}`, 'x-api-key': KEY_A },
      body: decideBody({ metadata: { router_mode: 'echo' } }),
    });
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body).decision.metadata;
    expect(JSON.stringify(seen)).not.toContain(KEY_A);
    expect(Object.keys(seen.headers).sort()).toEqual(['request_id', 'tenant_id', 'trace_id', 'version']);
    const logs = fs.readFileSync(path.join(gw.prefix, 'logs', 'access.log'), 'utf8') + gw.errorLog();
    expect(logs).not.toContain(KEY_A);
    expect(logs).not.toContain(KEY_B);
    expect(gw.errorLog()).not.toMatch(/\[error\].*lua/i);
  });
});

describe('auth off (default)', () => {
  test('no key needed; Authorization is ignored', async () => {
    const gw = await startGateway({ natsUrl: nats.url });
    expect((await post(gw.url, {})).status).toBe(200);
    expect((await post(gw.url, { headers: { authorization: 'Bearer whatever' } })).status).toBe(200);
    await gw.stop();
  });
});

describe('CORS', () => {
  let gw;
  beforeAll(async () => {
    gw = await startGateway({
      natsUrl: nats.url,
      configure: (raw) => {
        raw.cors = { allowed_origins: [ORIGIN, 'http://localhost:3000'], allow_credentials: true, max_age_seconds: 900 };
        raw.routes = { decide: { rate_limit: { limit: 1, window_seconds: 3600 } } };
      },
    });
  });

  const preflight = (url, p, origin, extra = {}) =>
    request(url, {
      method: 'OPTIONS',
      path: p,
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-tenant-id', ...extra },
    });

  test('preflight on an API path → 204 with the Allow-* headers, without Router call or rate limit', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await preflight(gw.url, DECIDE, ORIGIN);
      expect(r.status).toBe(204);
      expect(r.body).toBe('');
      expect(r.headers['access-control-allow-origin']).toBe(ORIGIN);
      expect(r.headers['access-control-allow-methods']).toBe('POST, OPTIONS');
      expect(r.headers['access-control-allow-headers']).toMatch(/X-Tenant-ID/);
      expect(r.headers['access-control-allow-headers']).toMatch(/Idempotency-Key/);
      expect(r.headers['access-control-max-age']).toBe('900');
      expect(r.headers['access-control-allow-credentials']).toBe('true');
      expect(r.headers.vary).toMatch(/Origin/);
      expect(r.headers['x-ratelimit-limit']).toBeUndefined();
    }
    const m = await preflight(gw.url, MESSAGES, 'http://localhost:3000');
    expect(m.status).toBe(204);
    expect(m.headers['access-control-allow-origin']).toBe('http://localhost:3000');
    const g = await preflight(gw.url, `${DECIDE}/some-id`, ORIGIN, { 'access-control-request-method': 'GET' });
    expect(g.status).toBe(204);
    expect(g.headers['access-control-allow-methods']).toBe('GET, HEAD, OPTIONS');
  });

  test('a preflight from an origin not listed gets no Allow-Origin', async () => {
    const r = await preflight(gw.url, DECIDE, 'https://evil.example');
    expect(r.status).toBe(204);
    expect(r.headers['access-control-allow-origin']).toBeUndefined();
    expect(r.headers['access-control-allow-methods']).toBeUndefined();
  });

  test('actual responses, errors included, carry Allow-Origin and Vary: Origin for allowed origins', async () => {
    await freshWindow(3600, 20);
    const ok = await post(gw.url, { tenant: 'cors-t', headers: { origin: ORIGIN } });
    expect(ok.status).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe(ORIGIN);
    expect(ok.headers['access-control-allow-credentials']).toBe('true');
    expect(ok.headers['access-control-expose-headers']).toMatch(/X-Request-Id/);
    expect(ok.headers.vary).toBe('Origin');
    const limited = await post(gw.url, { tenant: 'cors-t', headers: { origin: ORIGIN } });
    expect(limited.status).toBe(429);
    expect(limited.headers['access-control-allow-origin']).toBe(ORIGIN);
    const bad = await post(gw.url, { tenant: null, headers: { origin: ORIGIN } });
    expect(bad.status).toBe(400);
    expect(bad.headers['access-control-allow-origin']).toBe(ORIGIN);
    const other = await post(gw.url, { tenant: 'cors-u', headers: { origin: 'https://evil.example' } });
    expect(other.status).toBe(200);
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    expect(other.headers.vary).toBe('Origin');
  });

  test('other methods stay 405, now with OPTIONS in Allow; non-API paths do not answer preflights', async () => {
    const r = await request(gw.url, { method: 'PUT', path: DECIDE, headers: { origin: ORIGIN } });
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe('POST, OPTIONS');
    const h = await request(gw.url, { method: 'OPTIONS', path: '/healthz', headers: { origin: ORIGIN } });
    expect(h.status).toBe(405);
  });

  test('with CORS off (default) OPTIONS is 405 and no CORS header is sent', async () => {
    const off = await startGateway({ natsUrl: nats.url });
    const r = await preflight(off.url, DECIDE, ORIGIN);
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe('POST');
    expect(r.headers['access-control-allow-origin']).toBeUndefined();
    const p = await post(off.url, { headers: { origin: ORIGIN } });
    expect(p.headers['access-control-allow-origin']).toBeUndefined();
    expect(p.headers.vary).toBeUndefined();
    await off.stop();
  });

  test('"*" allows any origin; "*" with credentials is a config error', async () => {
    const any = await startGateway({
      natsUrl: nats.url,
      configure: (raw) => {
        raw.cors = { allowed_origins: ['*'] };
      },
    });
    const r = await preflight(any.url, DECIDE, 'https://whoever.example');
    expect(r.headers['access-control-allow-origin']).toBe('*');
    expect(r.headers['access-control-allow-credentials']).toBeUndefined();
    await any.stop();
    let err;
    try {
      loadConfig({
        env: {},
        overrides: (raw) => {
          raw.cors = { allowed_origins: ['*'], allow_credentials: true };
        },
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/cors\.allowed_origins: "\*" cannot be combined with cors\.allow_credentials: true/);
  });
});
