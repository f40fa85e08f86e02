'use strict';
// Issue 17, item 1: with auth on, trust is decided at the front door — the API key, the key's
// tenant and the tenant's rate limit are checked before the traffic split, for both sides — and
// the X-Beamline-Gateway override is off by default, honoured only for admitted requests from
// migration.override_from. Real nginx, nats-server, reference Router; the fake old gateway
// (spec/support/legacy.js) records what reaches it.
const { startGateway, request } = require('../support/gateway');
const { startNats, startRouter, stopAll } = require('../support/processes');
const { startLegacy } = require('../support/legacy');
const { DECIDE, MESSAGES, post, sha256, freshWindow } = require('../support/api');

const KEY_A = 'ka_5b1e0c9d8f7a6b5c4d3e2f1a0b9c8d7e';
const KEY_C = 'kc_1a2b3c4d5e6f708192a3b4c5d6e7f809';

function configure(legacyUrl, migration = {}) {
  return (raw) => {
    raw.auth = {
      enabled: true,
      api_keys: [
        { tenant_id: 'tenant-a', key_sha256: sha256(KEY_A) },
        { tenant_id: 'tenant-c', key_sha256: sha256(KEY_C) },
      ],
    };
    raw.routes = {
      decide: { rate_limit: { limit: 3, window_seconds: 3600 } },
      messages: { rate_limit: { limit: 100000, window_seconds: 3600 } },
    };
    // share 0: every tenant belongs to the old gateway
    raw.migration = { enabled: true, legacy_url: legacyUrl, share_percent: 0, ...migration };
  };
}

let nats;
let legacy;
beforeAll(async () => {
  legacy = await startLegacy({ mode: 'same' });
  nats = await startNats();
  await startRouter({ natsUrl: nats.url, args: ['--fast'] });
});
afterAll(async () => {
  await stopAll();
  await legacy.stop();
});

describe('auth on, override allowed: the front door runs before the split', () => {
  let gw;
  beforeAll(async () => {
    gw = await startGateway({ natsUrl: nats.url, configure: configure(legacy.url, { allow_override: true }) });
  });

  test('no key or an unknown key: 401 here, with or without the override; nothing reaches the old gateway', async () => {
    legacy.reset();
    for (const headers of [{}, { 'x-beamline-gateway': 'legacy' }, { 'x-beamline-gateway': 'new' }, { authorization: 'Bearer nope' }]) {
      for (const path of [DECIDE, MESSAGES]) {
        const r = await post(gw.url, { path, tenant: 'tenant-a', headers });
        expect([path, headers, r.status, r.headers['x-beamline-gateway']]).toEqual([path, headers, 401, undefined]);
        expect(r.json.error.code).toBe('unauthorized');
        expect(r.headers['www-authenticate']).toBe('Bearer');
      }
    }
    const lookup = await request(gw.url, {
      path: `${DECIDE}/some-id`,
      headers: { 'x-tenant-id': 'tenant-a', 'x-beamline-gateway': 'legacy' },
    });
    expect(lookup.status).toBe(401);
    expect(legacy.count).toBe(0);
  });

  test('a key of another tenant (header or legacy body): 403 here, not forwarded', async () => {
    legacy.reset();
    const h = await post(gw.url, { path: MESSAGES, tenant: 'tenant-c', headers: { 'x-api-key': KEY_A, 'x-beamline-gateway': 'legacy' } });
    expect(h.status).toBe(403);
    expect(h.json.error.code).toBe('forbidden');
    const nest = JSON.stringify({ message: { message_id: 'm-1', tenant_id: 'tenant-c', message_type: 'chat', payload: '{}' } });
    const b = await post(gw.url, { path: MESSAGES, tenant: null, body: nest, headers: { authorization: `Bearer ${KEY_A}` } });
    expect(b.status).toBe(403);
    expect(legacy.count).toBe(0);
  });

  test('a valid key: the old gateway answers; the override forces a side only for admitted requests', async () => {
    legacy.reset();
    const r = await post(gw.url, { path: MESSAGES, tenant: 'tenant-a', headers: { authorization: `Bearer ${KEY_A}` } });
    expect(r.status).toBe(200);
    expect(r.headers['x-beamline-gateway']).toBe('legacy');
    const n = await post(gw.url, {
      path: MESSAGES,
      tenant: 'tenant-a',
      headers: { authorization: `Bearer ${KEY_A}`, 'x-beamline-gateway': 'new' },
    });
    expect(n.status).toBe(200);
    expect(n.headers['x-beamline-gateway']).toBe('new');
    expect(legacy.count).toBe(1);
  });

  test("the tenant's rate limit holds for both sides, counted once per request", async () => {
    await freshWindow(3600, 30);
    legacy.reset();
    const auth = { authorization: `Bearer ${KEY_C}` };
    const a = await post(gw.url, { tenant: 'tenant-c', headers: auth });
    expect([a.status, a.headers['x-beamline-gateway']]).toEqual([200, 'legacy']);
    const b = await post(gw.url, { tenant: 'tenant-c', headers: { ...auth, 'x-beamline-gateway': 'new' } });
    expect([b.status, b.headers['x-beamline-gateway'], b.headers['x-ratelimit-remaining']]).toEqual([200, 'new', '1']);
    const c = await post(gw.url, { tenant: 'tenant-c', headers: auth });
    expect(c.status).toBe(200);
    for (const headers of [auth, { ...auth, 'x-beamline-gateway': 'legacy' }, { ...auth, 'x-beamline-gateway': 'new' }]) {
      const over = await post(gw.url, { tenant: 'tenant-c', headers });
      expect(over.status).toBe(429);
      expect(over.json.error.code).toBe('rate_limit_exceeded');
      expect(over.headers['x-beamline-gateway']).toBeUndefined();
    }
    expect(legacy.count).toBe(2);
  });

  test('another method on an API route is answered here (405), never by the old gateway', async () => {
    legacy.reset();
    const r = await request(gw.url, {
      method: 'PUT',
      path: DECIDE,
      headers: { 'x-beamline-gateway': 'legacy', 'x-tenant-id': 'tenant-a' },
    });
    expect(r.status).toBe(405);
    expect(r.json.error.code).toBe('method_not_allowed');
    expect(legacy.count).toBe(0);
  });
});

describe('the override outside its networks, and by default', () => {
  test('override_from without the client: the header is ignored (the share decides)', async () => {
    const gw = await startGateway({
      natsUrl: nats.url,
      configure: configure(legacy.url, { allow_override: true, override_from: ['10.0.0.0/8', 'fd00::/8'] }),
    });
    try {
      legacy.reset();
      const r = await post(gw.url, { path: MESSAGES, tenant: 'tenant-a', headers: { 'x-api-key': KEY_A, 'x-beamline-gateway': 'new' } });
      expect([r.status, r.headers['x-beamline-gateway']]).toEqual([200, 'legacy']);
      expect(legacy.count).toBe(1);
    } finally {
      await gw.stop();
    }
  });

  test('allow_override is off by default: the header is ignored, with or without auth', async () => {
    const gw = await startGateway({
      natsUrl: nats.url,
      configure: (raw) => {
        raw.migration = { enabled: true, legacy_url: legacy.url, share_percent: 0 };
      },
    });
    try {
      legacy.reset();
      const r = await post(gw.url, { path: MESSAGES, tenant: 'tenant-a', headers: { 'x-beamline-gateway': 'new' } });
      expect([r.status, r.headers['x-beamline-gateway']]).toEqual([200, 'legacy']);
      expect(legacy.count).toBe(1);
    } finally {
      await gw.stop();
    }
  });
});
