'use strict';
// Issue 17, item 2: one tenant cannot evict another tenant's Idempotency-Key records or stored
// decisions (local backend). Reproduction of the review: 6,000 requests with fresh keys from
// tenant A against 1 MiB dicts made tenant B's retry run twice and B's decision lookup 404. And
// each tenant's own bound (idempotency.max_keys_per_tenant, decision_cache.max_per_tenant): past
// it, its own oldest go first; evictions counted per reason. Real nginx, nats-server, Router.
const { startGateway, request } = require('../support/gateway');
const { startNats, startRouter, stopAll } = require('../support/processes');
const { runLoad } = require('../support/load');
const { DECIDE, decideBody, post, scrape, value, settle } = require('../support/api');

let nats;
beforeAll(async () => {
  nats = await startNats();
  await startRouter({ natsUrl: nats.url, args: ['--fast'] });
});
afterAll(() => stopAll());

const configure = (extra) => (raw) => {
  raw.routes = {
    decide: { rate_limit: { limit: 1000000000, window_seconds: 60 } },
    messages: { rate_limit: { limit: 1000000000, window_seconds: 60 } },
  };
  Object.assign(raw, extra);
};

/** B's idempotent decide: its status, whether it was a replay, and its request id. */
async function tenantB(gw, key) {
  const r = await post(gw.url, { tenant: 'tenant-b', headers: { 'idempotency-key': key }, body: decideBody({ request_id: `b-${key}` }) });
  return { status: r.status, replayed: r.headers['idempotent-replayed'] === 'true', id: r.headers['x-request-id'] };
}

const lookup = (gw, tenant, id) => request(gw.url, { path: `${DECIDE}/${id}`, headers: { 'x-tenant-id': tenant } });

test("6,000 fresh keys (and 3,000 more decisions) from tenant A (1 MiB dicts) neither evict B's record nor B's decision; A's newest decisions still stored", async () => {
  const gw = await startGateway({
    natsUrl: nats.url,
    configure: configure({ idempotency: { size_mb: 1 }, decision_cache: { size_mb: 1 } }),
  });
  try {
    const first = await tenantB(gw, 'b-key-1');
    expect(first).toMatchObject({ status: 200, replayed: false });
    const statuses = {};
    const res = await runLoad({
      url: gw.url,
      concurrency: 16,
      count: 6000,
      durationMs: 180000,
      request: (i) => ({
        method: 'POST',
        path: DECIDE,
        headers: { 'content-type': 'application/json', 'x-tenant-id': 'tenant-a', 'idempotency-key': `a-fresh-${i}` },
        body: decideBody({ request_id: `a-${i}` }),
      }),
      onResponse: (r) => {
        statuses[r.status] = (statuses[r.status] || 0) + 1;
      },
    });
    expect(res.errors).toBe(0);
    // and 3,000 without a key: their decisions alone overfill the 1 MiB decision cache
    const plain = await runLoad({
      url: gw.url,
      concurrency: 16,
      count: 3000,
      durationMs: 180000,
      request: (i) => ({
        method: 'POST',
        path: DECIDE,
        headers: { 'content-type': 'application/json', 'x-tenant-id': 'tenant-a' },
        body: decideBody({ request_id: `a-plain-${i}` }),
      }),
      onResponse: (r) => expect(r.status).toBe(200),
    });
    expect(plain.errors).toBe(0);
    const again = await tenantB(gw, 'b-key-1');
    expect(again).toEqual({ ...first, replayed: true });
    const d = await lookup(gw, 'tenant-b', first.id);
    expect(d.status).toBe(200);
    // the dict filled up: A's later keys were refused (503), nobody's record was dropped
    expect(statuses[503]).toBeGreaterThan(0);
    expect(statuses[200] + statuses[503]).toBe(6000);
    await settle();
    const m = await scrape(gw.url);
    // every refused key, plus the few whose response no longer fitted (released: a retry runs)
    expect(value(m, 'gateway_idempotency_evictions_total', { reason: 'no_memory' })).toBeGreaterThanOrEqual(statuses[503]);
    // the full decision cache took A's own oldest decisions for its new ones (B's untouched), so
    // A's newest decision is found: a full cache never makes the lookup of a fresh decision 404
    expect(value(m, 'gateway_decision_cache_evictions_total', { reason: 'dict_full' })).toBeGreaterThan(0);
    const newest = await post(gw.url, { tenant: 'tenant-a', body: decideBody({ request_id: 'a-plain-newest' }) });
    expect(newest.status).toBe(200);
    const found = await lookup(gw, 'tenant-a', newest.headers['x-request-id']);
    expect(found.status).toBe(200);
    expect(found.body).toBe(newest.body);
    console.log(
      `tenant A flood over 1 MiB dicts: ${JSON.stringify(statuses)} in ${(res.elapsedMs / 1000).toFixed(1)} s; B replayed, B's decision kept`,
    );
  } finally {
    await gw.stop();
  }
}, 240000);

test("past its bound a tenant's own oldest records and decisions go first, counted as tenant_quota", async () => {
  const gw = await startGateway({
    natsUrl: nats.url,
    configure: configure({ idempotency: { max_keys_per_tenant: 20 }, decision_cache: { max_per_tenant: 20 } }),
  });
  try {
    const b = await tenantB(gw, 'b-only');
    for (let i = 1; i <= 30; i++) {
      const r = await post(gw.url, {
        tenant: 'tenant-a',
        headers: { 'idempotency-key': `q-${i}` },
        body: decideBody({ request_id: `qa-${i}` }),
      });
      expect(r.status).toBe(200);
    }
    const replay = async (i) =>
      (await post(gw.url, { tenant: 'tenant-a', headers: { 'idempotency-key': `q-${i}` }, body: decideBody({ request_id: `qa-${i}` }) }))
        .headers['idempotent-replayed'];
    expect(await replay(30)).toBe('true');
    expect(await replay(11)).toBe('true');
    expect(await replay(1)).toBeUndefined(); // evicted: it ran again
    expect((await lookup(gw, 'tenant-a', 'qa-30')).status).toBe(200);
    expect((await lookup(gw, 'tenant-a', 'qa-2')).status).toBe(404);
    // B, within its share, kept everything
    expect(await tenantB(gw, 'b-only')).toEqual({ ...b, replayed: true });
    expect((await lookup(gw, 'tenant-b', b.id)).status).toBe(200);
    await settle();
    const m = await scrape(gw.url);
    expect(value(m, 'gateway_idempotency_evictions_total', { reason: 'tenant_quota' })).toBeGreaterThanOrEqual(10);
    expect(value(m, 'gateway_decision_cache_evictions_total', { reason: 'tenant_quota' })).toBeGreaterThanOrEqual(10);
  } finally {
    await gw.stop();
  }
});
