'use strict';
// /metrics (CONTRACT §7) on the real stack with 2 workers: Prometheus text format 0.0.4 (parsed
// by the npm parser), summed over the workers, values that follow the requests made.
const { startStack, request } = require('../support/gateway');
const { stopAll } = require('../support/processes');
const { DECIDE, decideBody, post, sleep, settle, scrape, value, histogram } = require('../support/api');

const FAMILIES = {
  gateway_http_requests_total: 'COUNTER',
  gateway_http_request_duration_seconds: 'HISTOGRAM',
  gateway_router_request_duration_seconds: 'HISTOGRAM',
  gateway_router_replies_total: 'COUNTER',
  gateway_rate_limit_hits_total: 'COUNTER',
  gateway_nats_connection_status: 'GAUGE',
  gateway_nats_reconnects_total: 'COUNTER',
  gateway_nats_messages_sent_total: 'COUNTER',
  gateway_nats_messages_received_total: 'COUNTER',
  gateway_nats_publish_failures_total: 'COUNTER',
  gateway_idempotency_replays_total: 'COUNTER',
};
const BUCKETS = ['0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '+Inf'];

let gw;
beforeAll(async () => {
  ({ gateway: gw } = await startStack({
    workers: 2,
    configure: (raw) => {
      raw.routes = { messages: { rate_limit: { limit: 1, window_seconds: 3600 } } };
      raw.router = { request_timeout_ms: 500 };
    },
  }));
});
afterAll(() => stopAll());

/** Scrapes until `pred(scrape)` holds (NATS counters reach the dict within a second). */
async function until(pred, ms = 4000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await scrape(gw.url);
    if (pred(s) || Date.now() > deadline) return s;
    await sleep(100);
  }
}

test('text format 0.0.4 with every §7 family, its type and HELP', async () => {
  const s = await scrape(gw.url);
  expect(s.status).toBe(200);
  expect(s.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
  expect(s.text.endsWith('\n')).toBe(true);
  for (const [name, type] of Object.entries(FAMILIES)) {
    expect(s.families.get(name)).toMatchObject({ name, type, help: expect.stringMatching(/\S/) });
  }
  const head = await request(gw.url, { method: 'HEAD', path: '/metrics' });
  expect(head.status).toBe(200);
  expect(head.body).toBe('');
  const postr = await request(gw.url, { method: 'POST', path: '/metrics', body: '' });
  expect(postr.status).toBe(405);
  expect(postr.headers.allow).toBe('GET, HEAD');
});

test('both workers report a connected NATS connection', async () => {
  const s = await until((x) => value(x, 'gateway_nats_connection_status') === 2);
  expect(value(s, 'gateway_nats_connection_status')).toBe(2);
});

test('request counts, durations and Router metrics follow the requests, summed over workers', async () => {
  await settle();
  const before = await scrape(gw.url);
  const N = 8;
  const rs = await Promise.all(Array.from({ length: N }, () => post(gw.url)));
  expect(rs.every((r) => r.status === 200)).toBe(true);
  expect((await post(gw.url, { tenant: null })).status).toBe(400);
  expect((await post(gw.url, { body: decideBody({ metadata: { router_mode: 'error:validator_blocked' } }) })).status).toBe(403);
  expect((await post(gw.url, { body: decideBody({ metadata: { router_mode: 'silence' } }) })).status).toBe(504);
  expect((await request(gw.url, { path: '/no/such/thing' })).status).toBe(404);
  await settle();
  const after = await until(
    (x) =>
      value(x, 'gateway_nats_messages_received_total') - value(before, 'gateway_nats_messages_received_total') >= N + 1 &&
      value(x, 'gateway_http_requests_total', { route: 'not_found' }) -
        (value(before, 'gateway_http_requests_total', { route: 'not_found' }) || 0) >=
        1,
  );

  const d = (name, labels) => value(after, name, labels) - (value(before, name, labels) || 0);
  expect(d('gateway_http_requests_total', { route: 'decide', method: 'POST', status: '200' })).toBe(N);
  expect(d('gateway_http_requests_total', { route: 'decide', method: 'POST', status: '400' })).toBe(1);
  expect(d('gateway_http_requests_total', { route: 'decide', method: 'POST', status: '403' })).toBe(1);
  expect(d('gateway_http_requests_total', { route: 'decide', method: 'POST', status: '504' })).toBe(1);
  expect(d('gateway_http_requests_total', { route: 'not_found', method: 'GET', status: '404' })).toBe(1);
  expect(d('gateway_router_replies_total', { code: 'ok' })).toBe(N);
  expect(d('gateway_router_replies_total', { code: 'validator_blocked' })).toBe(1);
  expect(d('gateway_router_replies_total', { code: 'timeout' })).toBe(1);
  // NATS: one request frame per Router call; replies for all but the silent one.
  expect(d('gateway_nats_messages_sent_total')).toBe(N + 2);
  expect(d('gateway_nats_messages_received_total')).toBe(N + 1);
  expect(d('gateway_nats_publish_failures_total')).toBe(0);
  expect(value(after, 'gateway_nats_reconnects_total')).toBe(0);

  const hb = histogram(before, 'gateway_http_request_duration_seconds', { route: 'decide' });
  const ha = histogram(after, 'gateway_http_request_duration_seconds', { route: 'decide' });
  expect(ha.order).toEqual(BUCKETS);
  expect(ha.count - (hb.count || 0)).toBe(N + 3);
  expect(ha.buckets['+Inf']).toBe(ha.count);
  for (let i = 1; i < BUCKETS.length; i++) expect(ha.buckets[BUCKETS[i]]).toBeGreaterThanOrEqual(ha.buckets[BUCKETS[i - 1]]);
  expect(ha.sum).toBeGreaterThan(hb.sum || 0);
  // The timed-out request took >= 0.5 s.
  expect(ha.buckets['0.25'] - (hb.buckets['0.25'] || 0)).toBeLessThanOrEqual(N + 2);
  const rb = histogram(before, 'gateway_router_request_duration_seconds', { route: 'decide' });
  const ra = histogram(after, 'gateway_router_request_duration_seconds', { route: 'decide' });
  expect(ra.count - (rb.count || 0)).toBe(N + 2);
  expect(ra.sum - (rb.sum || 0)).toBeGreaterThanOrEqual(0.45);
});

test('rate-limit hits and idempotency replays are counted', async () => {
  await settle();
  const before = await scrape(gw.url);
  await post(gw.url, { path: '/api/v1/messages', tenant: 'm-hit' });
  await post(gw.url, { path: '/api/v1/messages', tenant: 'm-hit' });
  await post(gw.url, { path: '/api/v1/messages', tenant: 'm-hit' });
  const key = `metrics-${Date.now()}`;
  await post(gw.url, { headers: { 'idempotency-key': key } });
  await post(gw.url, { headers: { 'idempotency-key': key } });
  await settle();
  const after = await scrape(gw.url);
  const d = (name, labels) => value(after, name, labels) - (value(before, name, labels) || 0);
  expect(d('gateway_rate_limit_hits_total', { route: 'messages' })).toBe(2);
  expect(d('gateway_http_requests_total', { route: 'messages', method: 'POST', status: '429' })).toBe(2);
  expect(d('gateway_idempotency_replays_total')).toBe(1);
});

test("nginx's own errors are counted under the request's route and method", async () => {
  await settle();
  const before = await scrape(gw.url);
  const sel = { route: 'messages', method: 'POST', status: '413' };
  const big = await request(gw.url, {
    method: 'POST',
    path: '/api/v1/messages',
    headers: { 'content-type': 'application/json', 'x-tenant-id': 'm-413' },
    body: 'x'.repeat(1048577),
    ignoreResetErrors: true,
  });
  expect(big.status).toBe(413);
  const after = await until(
    (x) => value(x, 'gateway_http_requests_total', sel) - (value(before, 'gateway_http_requests_total', sel) || 0) >= 1,
  );
  expect(value(after, 'gateway_http_requests_total', sel) - (value(before, 'gateway_http_requests_total', sel) || 0)).toBe(1);
  expect(value(after, 'gateway_http_requests_total', { route: 'none', status: '413' }) || 0).toBe(
    value(before, 'gateway_http_requests_total', { route: 'none', status: '413' }) || 0,
  );
});

test('labels stay low-cardinality: route names, no raw paths, no tenants, unknown methods folded', async () => {
  await request(gw.url, { path: `${DECIDE}/some-unique-id-123`, headers: { 'x-tenant-id': 'tenant-secret-name' } });
  await request(gw.url, { method: 'PROPFIND', path: '/x' });
  // The log phase runs after the answer is sent, maybe on the other worker: wait for both counts.
  const s = await until(
    (x) =>
      value(x, 'gateway_http_requests_total', { route: 'decision_lookup', method: 'GET', status: '404' }) >= 1 &&
      value(x, 'gateway_http_requests_total', { route: 'not_found', method: 'OTHER' }) >= 1,
  );
  expect(s.text).not.toContain('some-unique-id-123');
  expect(s.text).not.toContain('tenant-secret-name');
  expect(s.text).not.toContain('tenant_id');
  expect(s.text).not.toContain('PROPFIND');
  expect(value(s, 'gateway_http_requests_total', { route: 'decision_lookup', method: 'GET', status: '404' })).toBeGreaterThanOrEqual(1);
  expect(value(s, 'gateway_http_requests_total', { route: 'not_found', method: 'OTHER' })).toBeGreaterThanOrEqual(1);
  const routes = new Set(s.families.get('gateway_http_requests_total').metrics.map((m) => m.labels.route));
  for (const r of routes) expect(r).toMatch(/^[a-z_]+$/);
  expect(gw.errorLog()).not.toMatch(/\[error\].*lua/i);
});
