'use strict';
// CONTRACT §7 /metrics (feature of its own issue; lands separately): Prometheus text 0.0.4,
// summed over all workers, the listed series, low-cardinality labels. Runs against GATEWAY_URL
// too (read-only), except the parts that need a multi-worker gateway or Router modes.
const { useGateway, describeOwnStack, describeRouterModes, call, post, canonical, tenant, uid } = require('./support');

const t = useGateway({ workers: 2 });

/** Parses Prometheus text into [{name, labels, value}] (comments skipped). */
function parse(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels = {};
    if (m[3]) for (const lm of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}
const sum = (samples, name, where = {}) =>
  samples.filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
/**
 * Polls until `read()` returns `expected` (up to 3 s): workers may publish their counts to the
 * shared sum a moment after the request; the final value must still be exact.
 */
async function eventually(read, expected) {
  const deadline = Date.now() + 3000;
  let v;
  for (;;) {
    v = await read();
    if (v === expected || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return v;
}
async function scrape(g) {
  const r = await call(g, { path: '/metrics' });
  expect(r.status).toBe(200);
  return { r, samples: parse(r.body) };
}

const REQUIRED = [
  ['gateway_http_requests_total', 'counter'],
  ['gateway_http_request_duration_seconds', 'histogram'],
  ['gateway_router_request_duration_seconds', 'histogram'],
  ['gateway_router_replies_total', 'counter'],
  ['gateway_rate_limit_hits_total', 'counter'],
  ['gateway_nats_connection_status', 'gauge'],
  ['gateway_nats_reconnects_total', 'counter'],
  ['gateway_nats_messages_sent_total', 'counter'],
  ['gateway_nats_messages_received_total', 'counter'],
  ['gateway_nats_publish_failures_total', 'counter'],
  ['gateway_idempotency_replays_total', 'counter'],
];

describe('§7 /metrics', () => {
  test('200, Prometheus text format 0.0.4, not JSON', async () => {
    const { r } = await scrape(t);
    expect(r.headers['content-type']).toMatch(/^text\/plain; ?version=0\.0\.4(; ?charset=utf-8)?$/);
    expect(r.json).toBeUndefined();
  });

  test.each(REQUIRED)('%s is declared as a %s', async (name, type) => {
    const { r } = await scrape(t);
    expect(r.body).toMatch(new RegExp(`^# TYPE ${name} ${type}$`, 'm'));
  });

  test('a decide request increments gateway_http_requests_total{route="decide",method="POST",status="200"} by exactly 1', async () => {
    // Scrapes and the request may land on different workers: the sums must still agree.
    const before = sum((await scrape(t)).samples, 'gateway_http_requests_total', { route: 'decide', method: 'POST', status: '200' });
    expect((await post(t, canonical())).status).toBe(200);
    const delta = await eventually(
      async () =>
        sum((await scrape(t)).samples, 'gateway_http_requests_total', { route: 'decide', method: 'POST', status: '200' }) - before,
      1,
    );
    expect(delta).toBe(1);
  });

  test('request duration histogram: route label, buckets from 0.0005 to 10 and +Inf, count = sum of requests', async () => {
    await post(t, canonical());
    const { samples } = await scrape(t);
    const buckets = samples.filter((s) => s.name === 'gateway_http_request_duration_seconds_bucket' && s.labels.route === 'decide');
    const les = [...new Set(buckets.map((b) => b.labels.le))];
    expect(les).toContain('+Inf');
    const finite = les
      .filter((l) => l !== '+Inf')
      .map(Number)
      .sort((a, b) => a - b);
    expect(finite[0]).toBe(0.0005);
    expect(finite[finite.length - 1]).toBe(10);
    const inf = sum(samples, 'gateway_http_request_duration_seconds_bucket', { route: 'decide', le: '+Inf' });
    expect(sum(samples, 'gateway_http_request_duration_seconds_count', { route: 'decide' })).toBe(inf);
  });

  test('labels stay low-cardinality: no raw paths, ids or tenants', async () => {
    const tn = tenant('metric');
    const id = uid('metric-id');
    await call(t, { path: `/api/v1/routes/decide/${id}`, headers: { 'X-Tenant-ID': tn } });
    await call(t, { path: `/nope-${id}` });
    await post(t, canonical({ request_id: id }), { tenantId: tn });
    const { r, samples } = await scrape(t);
    expect(r.body).not.toContain(id);
    expect(r.body).not.toContain(tn);
    expect(r.body).not.toContain('/api/v1');
    for (const s of samples)
      expect(s.labels.tenant_id === undefined && s.labels.tenant === undefined && s.labels.path === undefined).toBe(true);
  });

  test('POST /metrics → 405 with Allow', async () => {
    const r = await call(t, { method: 'POST', path: '/metrics', body: '{}' });
    expect(r.status).toBe(405);
    expect(r.headers.allow).toMatch(/GET/);
  });
});

describeRouterModes('[reference Router] §7 Router reply codes', () => {
  test('gateway_router_replies_total{code="validator_blocked"} counts a Router error reply', async () => {
    const before = sum((await scrape(t)).samples, 'gateway_router_replies_total', { code: 'validator_blocked' });
    expect((await post(t, canonical({ metadata: { router_mode: 'error:validator_blocked' } }))).status).toBe(403);
    const delta = await eventually(
      async () => sum((await scrape(t)).samples, 'gateway_router_replies_total', { code: 'validator_blocked' }) - before,
      1,
    );
    expect(delta).toBe(1);
  });
});

describeOwnStack('[own stack: 2 workers] §7 summed over all workers', () => {
  test('N requests on fresh connections (spread over both workers) add exactly N, whichever worker answers the scrape', async () => {
    const sel = { route: 'healthz', method: 'GET', status: '200' };
    const before = sum((await scrape(t)).samples, 'gateway_http_requests_total', sel);
    await Promise.all(Array.from({ length: 40 }, () => call(t, { path: '/healthz' })));
    const delta = await eventually(async () => sum((await scrape(t)).samples, 'gateway_http_requests_total', sel) - before, 40);
    expect(delta).toBe(40);
    for (let i = 0; i < 4; i++) {
      const after = sum((await scrape(t)).samples, 'gateway_http_requests_total', sel);
      expect(after - before).toBe(40);
    }
  });

  test('gateway_nats_connection_status = number of connected workers (2)', async () => {
    const { samples } = await scrape(t);
    expect(sum(samples, 'gateway_nats_connection_status')).toBe(2);
  });

  test('decide round trips are counted as NATS messages sent and received', async () => {
    const b = (await scrape(t)).samples;
    await Promise.all(Array.from({ length: 5 }, () => post(t, canonical())));
    const sent = await eventually(
      async () => sum((await scrape(t)).samples, 'gateway_nats_messages_sent_total') - sum(b, 'gateway_nats_messages_sent_total'),
      5,
    );
    const received = await eventually(
      async () => sum((await scrape(t)).samples, 'gateway_nats_messages_received_total') - sum(b, 'gateway_nats_messages_received_total'),
      5,
    );
    // At least the 5 requests and their 5 replies (PINGs and the like may add to the counts).
    expect(sent).toBeGreaterThanOrEqual(5);
    expect(received).toBeGreaterThanOrEqual(5);
  });
});
