'use strict';
// CONTRACT §5/§10 rate limits (feature of its own issue; lands separately): per tenant and route,
// fixed windows aligned to the epoch, shared by all workers, X-RateLimit-* on counted requests,
// 429 with Retry-After and details, no Router call, order of checks, env overrides.
// Every block needs a gateway configured by the suite, so all of it is skipped with GATEWAY_URL.
const { connect } = require('nats');
const { useGateway, describeOwnStack, call, post, canonical, tenant, uid, expectGatewayError, sleep } = require('./support');

const now = () => Date.now() / 1000;

/** Waits when the current window of `w` seconds ends within `margin` seconds (no flaky resets). */
async function freshWindow(w, margin = 8) {
  const left = w - (now() % w);
  if (left < margin) await sleep(left * 1000 + 200);
}

function expectRateHeaders(r, limit, remaining, window) {
  expect(r.headers['x-ratelimit-limit']).toBe(String(limit));
  expect(r.headers['x-ratelimit-remaining']).toBe(String(remaining));
  const reset = Number(r.headers['x-ratelimit-reset']);
  expect(Number.isInteger(reset)).toBe(true);
  expect(reset % window).toBe(0); // aligned: floor(now / window) * window + window
  expect(reset).toBeGreaterThan(now() - 1);
  expect(reset).toBeLessThanOrEqual(Math.ceil(now()) + window);
}
const noRateHeaders = (r) => {
  expect(r.headers['x-ratelimit-limit']).toBeUndefined();
  expect(r.headers['x-ratelimit-remaining']).toBeUndefined();
  expect(r.headers['x-ratelimit-reset']).toBeUndefined();
};

function expect429(r, { limit, window, tn }) {
  expectGatewayError(r, 429, 'rate_limit_exceeded', {
    api: true,
    tenant: tn,
    details: { endpoint: expect.stringMatching(/\S/), limit, window_seconds: window, retry_after_seconds: expect.any(Number) },
  });
  expect(r.headers['x-ratelimit-remaining']).toBe('0');
  const ra = Number(r.headers['retry-after']);
  expect(Number.isInteger(ra)).toBe(true);
  expect(r.json.error.details.retry_after_seconds).toBe(ra);
  const left = Number(r.headers['x-ratelimit-reset']) - now();
  expect(Math.abs(ra - left)).toBeLessThanOrEqual(2);
  expect(ra).toBeGreaterThanOrEqual(0);
  expect(ra).toBeLessThanOrEqual(window);
}

describeOwnStack(
  '[own stack: GATEWAY_RATE_LIMIT_ROUTES_DECIDE_LIMIT=3, GATEWAY_RATE_LIMIT_MESSAGES=4, GATEWAY_RATE_LIMIT_TTL_SECONDS=60]',
  () => {
    const s = useGateway({
      own: true,
      keepLimits: true,
      env: { GATEWAY_RATE_LIMIT_ROUTES_DECIDE_LIMIT: '3', GATEWAY_RATE_LIMIT_MESSAGES: '4', GATEWAY_RATE_LIMIT_TTL_SECONDS: '60' },
    });
    let nc;
    const routed = []; // tenant ids the Router was asked about
    beforeAll(async () => {
      nc = await connect({ servers: s.nats.url });
      nc.subscribe('beamline.router.v1.decide', {
        callback: (e, m) => {
          try {
            routed.push(JSON.parse(Buffer.from(m.data).toString()).tenant_id);
          } catch (x) {
            /* */
          }
        },
      });
      await nc.flush();
    });
    afterAll(async () => {
      if (nc) await nc.close();
    });
    beforeEach(() => freshWindow(60));

    test('X-RateLimit-* on every counted response; the 4th decide in the window → 429 without a Router call', async () => {
      const tn = tenant();
      for (let i = 0; i < 3; i++) {
        const r = await post(s, canonical(), { tenantId: tn });
        expect(r.status).toBe(200);
        expectRateHeaders(r, 3, 2 - i, 60);
      }
      await sleep(50);
      const calls = routed.filter((x) => x === tn).length;
      expect(calls).toBe(3);
      const r = await post(s, canonical(), { tenantId: tn });
      expect429(r, { limit: 3, window: 60, tn });
      expectRateHeaders(r, 3, 0, 60);
      await sleep(100);
      expect(routed.filter((x) => x === tn).length).toBe(calls);
    });

    test('a 429 comes before body checks (an invalid body still gets 429)', async () => {
      const tn = tenant();
      for (let i = 0; i < 3; i++) expect((await post(s, canonical(), { tenantId: tn })).status).toBe(200);
      expect429(await post(s, '{', { tenantId: tn, contentType: 'application/json' }), { limit: 3, window: 60, tn });
      expect429(await post(s, 'x', { tenantId: tn, headers: { 'Content-Type': 'text/plain' } }), { limit: 3, window: 60, tn });
    });

    test('per tenant: another tenant has its own count', async () => {
      const a = tenant();
      for (let i = 0; i < 4; i++) await post(s, canonical(), { tenantId: a });
      const r = await post(s, canonical(), { tenantId: tenant() });
      expect(r.status).toBe(200);
      expectRateHeaders(r, 3, 2, 60);
    });

    test('per route: messages has its own count and limit (4)', async () => {
      const tn = tenant();
      for (let i = 0; i < 4; i++) await post(s, canonical(), { tenantId: tn });
      for (let i = 0; i < 4; i++) {
        const r = await post(s, canonical(), { tenantId: tn, path: '/api/v1/messages' });
        expect(r.status).toBe(200);
        expectRateHeaders(r, 4, 3 - i, 60);
      }
      expect429(await post(s, canonical(), { tenantId: tn, path: '/api/v1/messages' }), { limit: 4, window: 60, tn });
    });

    test('GET /api/v1/routes/decide/{id} counts against the decide limit', async () => {
      const tn = tenant();
      const g1 = await call(s, { path: `/api/v1/routes/decide/${uid()}`, headers: { 'X-Tenant-ID': tn } });
      expect(g1.status).toBe(404);
      expectRateHeaders(g1, 3, 2, 60);
      await call(s, { path: `/api/v1/routes/decide/${uid()}`, headers: { 'X-Tenant-ID': tn } });
      expect((await post(s, canonical(), { tenantId: tn })).status).toBe(200);
      expect429(await post(s, canonical(), { tenantId: tn }), { limit: 3, window: 60, tn });
      expect429(await call(s, { path: `/api/v1/routes/decide/${uid()}`, headers: { 'X-Tenant-ID': tn } }), { limit: 3, window: 60, tn });
    });

    test('requests failing the route, tenant or header checks are not counted and carry no X-RateLimit-*', async () => {
      const tn = tenant();
      for (let i = 0; i < 5; i++) {
        const bad = await post(s, canonical(), { tenantId: tn, headers: { 'X-Trace-ID': 'nope' } });
        expect(bad.status).toBe(400);
        noRateHeaders(bad);
      }
      const wrongMethod = await call(s, { method: 'PUT', path: '/api/v1/routes/decide', headers: { 'X-Tenant-ID': tn } });
      expect(wrongMethod.status).toBe(405);
      noRateHeaders(wrongMethod);
      noRateHeaders(await post(s, canonical(), { tenantId: null }));
      const ok = await post(s, canonical(), { tenantId: tn });
      expect(ok.status).toBe(200);
      expectRateHeaders(ok, 3, 2, 60);
    });

    test('requests that pass the checks count even when they fail later (field errors, Router errors)', async () => {
      const tn = tenant();
      expect((await post(s, canonical({ version: '2' }), { tenantId: tn })).status).toBe(400);
      expect((await post(s, canonical({ metadata: { router_mode: 'error:internal' } }), { tenantId: tn })).status).toBe(500);
      const r = await post(s, canonical(), { tenantId: tn });
      expectRateHeaders(r, 3, 0, 60);
    });

    test('a legacy body without X-Tenant-ID is limited by message.tenant_id', async () => {
      const tn = tenant();
      const body = () => ({ message: { tenant_id: tn, message_type: 'chat', payload: 'hi' } });
      for (let i = 0; i < 3; i++) {
        const r = await post(s, body(), { tenantId: null });
        expect(r.status).toBe(200);
        expectRateHeaders(r, 3, 2 - i, 60);
      }
      expect429(await post(s, body(), { tenantId: null }), { limit: 3, window: 60, tn });
    });
  },
);

describeOwnStack('[own stack: 2 workers, decide limit 10] one count shared by all workers', () => {
  const s = useGateway({
    own: true,
    keepLimits: true,
    workers: 2,
    configure: (raw) => {
      raw.routes = { decide: { rate_limit: { limit: 10, window_seconds: 60 } } };
    },
  });
  beforeEach(() => freshWindow(60));
  test('30 concurrent requests on fresh connections → exactly 10 × 200 and 20 × 429', async () => {
    const tn = tenant();
    const rs = await Promise.all(Array.from({ length: 30 }, () => post(s, canonical(), { tenantId: tn })));
    const counts = rs.reduce((m, r) => ({ ...m, [r.status]: (m[r.status] || 0) + 1 }), {});
    expect(counts).toEqual({ 200: 10, 429: 20 });
  });
});

describeOwnStack('[own stack: default limits] 50 / 60 s for decide, 100 / 60 s for messages', () => {
  const s = useGateway({ own: true, keepLimits: true });
  test('the defaults are announced in X-RateLimit-Limit', async () => {
    await freshWindow(60, 2);
    const tn = tenant();
    expectRateHeaders(await post(s, canonical(), { tenantId: tn }), 50, 49, 60);
    expectRateHeaders(await post(s, canonical(), { tenantId: tn, path: '/api/v1/messages' }), 100, 99, 60);
  });
});

describeOwnStack('[own stack: GATEWAY_RATE_LIMIT_TTL_SECONDS=2, decide limit 1] the window ends and the count starts again', () => {
  const s = useGateway({
    own: true,
    keepLimits: true,
    env: { GATEWAY_RATE_LIMIT_TTL_SECONDS: '2', GATEWAY_RATE_LIMIT_ROUTES_DECIDE_LIMIT: '1' },
  });
  test('429 in the window, 200 in the next one', async () => {
    await freshWindow(2, 1.5);
    const tn = tenant();
    const a = await post(s, canonical(), { tenantId: tn });
    expect(a.status).toBe(200);
    expectRateHeaders(a, 1, 0, 2);
    const b = await post(s, canonical(), { tenantId: tn });
    expect(b.status).toBe(429);
    await sleep(Number(b.headers['x-ratelimit-reset']) * 1000 - Date.now() + 100);
    expect((await post(s, canonical(), { tenantId: tn })).status).toBe(200);
  });
});
