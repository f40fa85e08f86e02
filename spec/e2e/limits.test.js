'use strict';
// Rate limits (CONTRACT §5, §10) on the real stack: fixed epoch-aligned windows per tenant and
// route, counted in a shared dict across 2 workers, optionally in Redis across 2 gateways.
const { startNats, startRouter, stopAll, freePort } = require('../support/processes');
const { startRedis } = require('../support/cluster');
const { startGateway, request } = require('../support/gateway');
const { DECIDE, MESSAGES, post, freshWindow, sleep, settle, scrape, value } = require('../support/api');

const LIMIT = 5;

let nats;
beforeAll(async () => {
  nats = await startNats();
  await startRouter({ natsUrl: nats.url });
});
afterAll(() => stopAll());

const limits = (decide, messages, window) => (raw) => {
  raw.routes = {
    decide: { rate_limit: { limit: decide, window_seconds: window } },
    messages: { rate_limit: { limit: messages, window_seconds: window } },
  };
};

describe('shared dict, 2 workers', () => {
  let gw;
  beforeAll(async () => {
    gw = await startGateway({ natsUrl: nats.url, workers: 2, configure: limits(LIMIT, 3, 3600) });
  });

  test('exactly the configured count passes across both workers, then 429 without a Router call', async () => {
    await freshWindow(3600, 30);
    await settle();
    const before = await scrape(gw.url);
    // Concurrent requests on fresh connections: reuseport spreads them over both workers.
    const rs = await Promise.all(Array.from({ length: 12 }, () => post(gw.url, { tenant: 'burst' })));
    const ok = rs.filter((r) => r.status === 200);
    const limited = rs.filter((r) => r.status === 429);
    expect(ok).toHaveLength(LIMIT);
    expect(limited).toHaveLength(12 - LIMIT);
    const windowEnd = Math.floor(Date.now() / 1000 / 3600) * 3600 + 3600;
    for (const r of rs) {
      expect(r.headers['x-ratelimit-limit']).toBe(String(LIMIT));
      expect(Number(r.headers['x-ratelimit-reset'])).toBe(windowEnd);
    }
    expect(ok.map((r) => Number(r.headers['x-ratelimit-remaining'])).sort()).toEqual([0, 1, 2, 3, 4]);
    for (const r of limited) {
      expect(r.headers['x-ratelimit-remaining']).toBe('0');
      const retry = Number(r.headers['retry-after']);
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(3600);
      expect(r.json.error).toEqual({
        code: 'rate_limit_exceeded',
        message: expect.any(String),
        intake_error_code: null,
        details: { endpoint: DECIDE, limit: LIMIT, window_seconds: 3600, retry_after_seconds: retry },
      });
      expect(r.json.context.tenant_id).toBe('burst');
      expect(r.headers['x-trace-id']).toMatch(/^[0-9a-f]{32}$/);
    }
    // The Router saw only the allowed requests.
    await settle();
    const after = await scrape(gw.url);
    const replies = (s) => value(s, 'gateway_router_replies_total', { code: 'ok' });
    expect(replies(after) - replies(before)).toBe(LIMIT);
    const hits = (s) => value(s, 'gateway_rate_limit_hits_total', { route: 'decide' });
    expect(hits(after) - hits(before)).toBe(12 - LIMIT);
  });

  test('a 429 comes before body checks: an invalid body over the limit is still 429', async () => {
    const r = await post(gw.url, { tenant: 'burst', body: '{not json', headers: { 'content-type': 'text/plain' } });
    expect(r.status).toBe(429);
  });

  test('tenants are counted separately, and messages has its own limit', async () => {
    await freshWindow(3600, 30);
    expect((await post(gw.url, { tenant: 'other-tenant' })).status).toBe(200);
    const m = [];
    for (let i = 0; i < 4; i++) m.push(await post(gw.url, { tenant: 'burst', path: MESSAGES }));
    expect(m.map((r) => r.status)).toEqual([200, 200, 200, 429]);
    expect(m[3].json.error.details).toMatchObject({ endpoint: MESSAGES, limit: 3 });
    expect(m[0].headers['x-ratelimit-limit']).toBe('3');
  });

  test('only requests that passed the route and tenant checks count; errors after the limiter carry the headers', async () => {
    await freshWindow(3600, 30);
    const t = 'checks';
    // Not counted: wrong method, missing or malformed tenant, invalid X-Trace-ID.
    expect((await post(gw.url, { tenant: t, method: 'PUT' })).status).toBe(405);
    expect((await post(gw.url, { tenant: null })).status).toBe(400);
    expect((await post(gw.url, { tenant: 'bad tenant!' })).status).toBe(400);
    const bad = await post(gw.url, { tenant: t, headers: { 'x-trace-id': 'nope' } });
    expect(bad.status).toBe(400);
    expect(bad.headers['x-ratelimit-limit']).toBeUndefined();
    // Counted, and carrying the headers: errors after the limiter.
    const r415 = await post(gw.url, { tenant: t, headers: { 'content-type': 'text/plain' } });
    expect(r415.status).toBe(415);
    expect(r415.headers['x-ratelimit-remaining']).toBe(String(LIMIT - 1));
    const r400 = await post(gw.url, { tenant: t, body: '{"version":"2"}' });
    expect(r400.status).toBe(400);
    expect(r400.headers['x-ratelimit-remaining']).toBe(String(LIMIT - 2));
  });

  test('the decision lookup counts against the decide limit', async () => {
    await freshWindow(3600, 30);
    const t = 'lookup';
    const statuses = [];
    for (let i = 0; i < LIMIT - 1; i++) statuses.push((await post(gw.url, { tenant: t })).status);
    const get1 = await request(gw.url, { path: `${DECIDE}/nothing-here`, headers: { 'x-tenant-id': t } });
    expect(get1.status).toBe(404);
    expect(get1.headers['x-ratelimit-remaining']).toBe('0');
    const get2 = await request(gw.url, { path: `${DECIDE}/nothing-here`, headers: { 'x-tenant-id': t } });
    expect(get2.status).toBe(429);
    expect(get2.json.error.details.endpoint).toBe('/api/v1/routes/decide/{id}');
    expect((await post(gw.url, { tenant: t })).status).toBe(429);
    expect(statuses).toEqual(Array(LIMIT - 1).fill(200));
  });

  test('legacy bodies without X-Tenant-ID are counted under the body tenant', async () => {
    await freshWindow(3600, 30);
    const body = JSON.stringify({ message: { tenant_id: 'legacy-t', message_type: 'chat', payload: '{"a":1}' } });
    const rs = [];
    for (let i = 0; i < LIMIT + 1; i++) rs.push(await post(gw.url, { tenant: null, body }));
    expect(rs.map((r) => r.status)).toEqual([...Array(LIMIT).fill(200), 429]);
  });
});

describe('window reset (2 s windows)', () => {
  let gw;
  beforeAll(async () => {
    gw = await startGateway({ natsUrl: nats.url, workers: 2, configure: limits(2, 2, 2) });
  });

  test('the count starts over in the next window; Reset and Retry-After point at its start', async () => {
    await freshWindow(2, 1.2);
    const rs = [];
    for (let i = 0; i < 3; i++) rs.push(await post(gw.url, { tenant: 'w' }));
    expect(rs.map((r) => r.status)).toEqual([200, 200, 429]);
    const reset = Number(rs[2].headers['x-ratelimit-reset']);
    expect(reset % 2).toBe(0);
    expect(Number(rs[2].headers['retry-after'])).toBe(Math.max(1, Math.ceil(reset - Date.now() / 1000)));
    await sleep(reset * 1000 - Date.now() + 100);
    const next = await post(gw.url, { tenant: 'w' });
    expect(next.status).toBe(200);
    expect(next.headers['x-ratelimit-remaining']).toBe('1');
    expect(Number(next.headers['x-ratelimit-reset'])).toBe(reset + 2);
  });
});

describe('environment overrides', () => {
  test('GATEWAY_RATE_LIMIT_ROUTES_DECIDE_LIMIT and GATEWAY_RATE_LIMIT_TTL_SECONDS apply', async () => {
    const gw = await startGateway({
      natsUrl: nats.url,
      env: { GATEWAY_RATE_LIMIT_ROUTES_DECIDE_LIMIT: '1', GATEWAY_RATE_LIMIT_TTL_SECONDS: '3600' },
    });
    await freshWindow(3600, 10);
    expect((await post(gw.url, { tenant: 'env' })).status).toBe(200);
    const r = await post(gw.url, { tenant: 'env' });
    expect(r.status).toBe(429);
    expect(r.json.error.details).toMatchObject({ limit: 1, window_seconds: 3600 });
    await gw.stop();
  });
});

// The v1 keys (`rate_limit.backend: redis`, `rate_limit.redis`): an alias of `state.backend:
// redis`, so old configs keep working (spec/e2e/multi_instance.test.js covers `state`).
describe('Redis backend (v1 rate_limit.backend alias)', () => {
  let redis;
  let redisPort;
  const redisConfig = (onError, limit) => (raw) => {
    limits(limit, 100, 3600)(raw);
    raw.rate_limit = {
      backend: 'redis',
      redis: { host: '127.0.0.1', port: redisPort, on_error: onError, retry_after_ms: 200, timeout_ms: 200, key_prefix: `t${Date.now()}:` },
    };
  };

  beforeAll(async () => {
    redisPort = await freePort();
    redis = await startRedis({ port: redisPort });
  });

  test('two gateway instances share one count', async () => {
    const a = await startGateway({ natsUrl: nats.url, workers: 2, configure: redisConfig('fail_open', LIMIT) });
    const b = await startGateway({
      natsUrl: nats.url,
      workers: 1,
      configure: (raw) => {
        redisConfig('fail_open', LIMIT)(raw);
        raw.rate_limit.redis.key_prefix = a.config.rate_limit.redis.key_prefix;
      },
    });
    await freshWindow(3600, 30);
    const rs = [];
    for (let i = 0; i < 2 * LIMIT; i++) rs.push(await post(i % 2 ? b.url : a.url, { tenant: 'shared' }));
    expect(rs.filter((r) => r.status === 200)).toHaveLength(LIMIT);
    expect(rs.slice(0, LIMIT).map((r) => r.status)).toEqual(Array(LIMIT).fill(200));
    expect(rs.slice(0, LIMIT).map((r) => r.headers['x-ratelimit-remaining'])).toEqual(['4', '3', '2', '1', '0']);
    expect(rs[LIMIT].status).toBe(429);
    // The counter lives in Redis with the window as its expiry.
    const s = await scrape(a.url);
    expect(value(s, 'gateway_rate_limit_backend_errors_total')).toBe(0);
    await a.stop();
    await b.stop();
  });

  test('Redis down: fail_open counts per instance, fail_closed answers 503; recovery after restart', async () => {
    const open = await startGateway({ natsUrl: nats.url, configure: redisConfig('fail_open', 2) });
    const closed = await startGateway({ natsUrl: nats.url, configure: redisConfig('fail_closed', 2) });
    await freshWindow(3600, 30);
    expect((await post(open.url, { tenant: 'down' })).status).toBe(200);
    await redis.stop();
    // fail_open: allowed, counted in the shared dict of this instance meanwhile.
    const o = [];
    for (let i = 0; i < 3; i++) o.push(await post(open.url, { tenant: 'down-open' }));
    expect(o.map((r) => r.status)).toEqual([200, 200, 429]);
    // fail_closed: 503 unavailable with Retry-After, no Router call.
    const c = await post(closed.url, { tenant: 'down-closed' });
    expect(c.status).toBe(503);
    expect(c.headers['retry-after']).toBe('1');
    expect(c.json.error.code).toBe('unavailable');
    const so = await scrape(open.url);
    expect(value(so, 'gateway_rate_limit_backend_errors_total', { mode: 'fail_open' })).toBeGreaterThanOrEqual(1);
    const sc = await scrape(closed.url);
    expect(value(sc, 'gateway_rate_limit_backend_errors_total', { mode: 'fail_closed' })).toBeGreaterThanOrEqual(1);
    expect(value(sc, 'gateway_router_replies_total')).toBe(0);
    // Redis back: after retry_after_ms the gateways use it again.
    redis = await startRedis({ port: redisPort });
    await sleep(300);
    const back = await post(closed.url, { tenant: 'down-closed' });
    expect(back.status).toBe(200);
    expect(back.headers['x-ratelimit-remaining']).toBe('1');
    expect(open.errorLog()).not.toMatch(/\[error\].*lua/i);
    await open.stop();
    await closed.stop();
  });
});
