'use strict';
// End-to-end, issue 9 (traffic switch): the split of the API routes between this gateway and
// the old one (spec/support/legacy.js) by a stable hash of the tenant, the X-Beamline-Gateway
// override, header-less legacy bodies, and the routes that always stay local. Real nginx,
// nats-server and the reference Router (--fast); the fake old gateway runs in this process.
const zlib = require('zlib');
const { startGateway, request } = require('../support/gateway');
const { startNats, startRouter, stopAll } = require('../support/processes');
const { startLegacy } = require('../support/legacy');
const { runLoad, sleep } = require('../support/load');

const DECIDE = '/api/v1/routes/decide';
const N = 10000;
const TOLERANCE = 3; // percentage points, over N distinct tenants

/** The gateway's bucket: CRC-32 (IEEE) of the tenant, mod 100 (beamline.traffic.bucket). */
const bucket = (tenant) => zlib.crc32(tenant) % 100;

const body = (extra = {}) => JSON.stringify({ version: '1', task: { type: 'chat', payload: { text: 'hi' } }, ...extra });

function decide(gw, tenant, headers = {}, b = body()) {
  const h = { 'content-type': 'application/json', ...headers };
  if (tenant !== null) h['x-tenant-id'] = tenant;
  return request(gw.url, { method: 'POST', path: DECIDE, headers: h, body: b });
}

async function waitReady(gw) {
  const deadline = Date.now() + 10000;
  while ((await request(gw.url, { path: '/readyz' })).status !== 200) {
    if (Date.now() > deadline) throw new Error(`gateway never became ready:\n${gw.errorLog()}`);
    await sleep(20);
  }
}

/** Sends one decide per tenant (tenant i = `${prefix}${i}`); returns the side that answered each. */
async function sides(gw, prefix, count) {
  const side = new Array(count);
  const res = await runLoad({
    url: gw.url,
    concurrency: 32,
    count,
    durationMs: 120000,
    request: (i) => ({
      method: 'POST',
      path: DECIDE,
      headers: { 'content-type': 'application/json', 'x-tenant-id': `${prefix}${i}` },
      body: body(),
    }),
    onResponse: (r, i) => {
      side[i] = r.error ? 'error' : r.status === 200 ? r.headers['x-beamline-gateway'] : `status ${r.status}`;
    },
  });
  return { side, res };
}

function configure(legacyUrl, share) {
  return (raw) => {
    raw.routes = {
      decide: { rate_limit: { limit: 1000000000, window_seconds: 60 } },
      messages: { rate_limit: { limit: 1000000000, window_seconds: 60 } },
    };
    raw.migration = { enabled: true, legacy_url: legacyUrl, share_percent: share, allow_override: true };
  };
}

describe('traffic switch: split by tenant', () => {
  let nats;
  let legacy;
  let gw;

  beforeAll(async () => {
    legacy = await startLegacy({ mode: 'same', record: false });
    nats = await startNats();
    await startRouter({ natsUrl: nats.url, args: ['--fast'] });
    gw = await startGateway({ natsUrl: nats.url, workers: 2, configure: configure(legacy.url, 30) });
    await waitReady(gw);
  });
  afterAll(async () => {
    await stopAll();
    await legacy.stop();
  });

  test(`30 %: ${N} distinct tenants split ${30} ± ${TOLERANCE} %, each exactly by its bucket; stable; 30 → 50 moves no tenant back`, async () => {
    const before = legacy.count;
    const a = await sides(gw, 'tenant-', N);
    expect(a.res.errors).toBe(0);
    const newA = a.side.filter((s) => s === 'new').length;
    const legacyA = a.side.filter((s) => s === 'legacy').length;
    expect(newA + legacyA).toBe(N);
    expect(legacy.count - before).toBe(legacyA);
    const mismatched = a.side.filter((s, i) => s !== (bucket(`tenant-${i}`) < 30 ? 'new' : 'legacy'));
    expect(mismatched).toEqual([]);
    const ratioA = (100 * newA) / N;
    expect(Math.abs(ratioA - 30)).toBeLessThanOrEqual(TOLERANCE);

    // Stability: the same tenants again (another worker may answer): every one on the same side.
    const again = await sides(gw, 'tenant-', 2000);
    expect(again.side).toEqual(a.side.slice(0, 2000));

    // 30 → 50 (config change + reload): only additions to the new side.
    gw.config.migration.share_percent = 50;
    const { render } = require('../../scripts/lib/render');
    render(gw.config, { prefix: gw.prefix });
    gw.reload();
    const deadline = Date.now() + 10000;
    // until every worker runs the new share (a tenant of bucket 40 answered by the new side twice in a row)
    const probe = Array.from({ length: 200 }, (_, i) => `probe-${i}`).find((t) => bucket(t) >= 30 && bucket(t) < 50);
    for (let ok = 0; ok < 8;) {
      const r = await decide(gw, probe);
      ok = r.headers['x-beamline-gateway'] === 'new' ? ok + 1 : 0;
      if (Date.now() > deadline) throw new Error('the new share never went live');
      await sleep(10);
    }
    const b = await sides(gw, 'tenant-', N);
    expect(b.res.errors).toBe(0);
    const movedBack = a.side.map((s, i) => (s === 'new' && b.side[i] !== 'new' ? i : -1)).filter((i) => i >= 0);
    expect(movedBack).toEqual([]);
    const newB = b.side.filter((s) => s === 'new').length;
    const ratioB = (100 * newB) / N;
    expect(Math.abs(ratioB - 50)).toBeLessThanOrEqual(TOLERANCE);
    expect(b.side.filter((s, i) => s !== (bucket(`tenant-${i}`) < 50 ? 'new' : 'legacy'))).toEqual([]);
    console.log(
      `split over ${N} distinct tenants: share 30 → ${ratioA.toFixed(2)} % new (${newA}), share 50 → ${ratioB.toFixed(2)} % new (${newB}); ` +
        `0 tenants moved back; ${(a.res.elapsedMs / 1000).toFixed(1)} s / ${(b.res.elapsedMs / 1000).toFixed(1)} s per ${N} requests`,
    );
  }, 180000);

  test('X-Beamline-Gateway forces a side both ways and is not forwarded to the old gateway', async () => {
    const share = gw.config.migration.share_percent;
    const onNew = Array.from({ length: 500 }, (_, i) => `o-${i}`).find((t) => bucket(t) < share);
    const onLegacy = Array.from({ length: 500 }, (_, i) => `o-${i}`).find((t) => bucket(t) >= share);
    expect((await decide(gw, onNew)).headers['x-beamline-gateway']).toBe('new');
    expect((await decide(gw, onLegacy)).headers['x-beamline-gateway']).toBe('legacy');
    legacy.record = true;
    legacy.reset();
    const r1 = await decide(gw, onNew, { 'x-beamline-gateway': 'legacy' });
    expect(r1.status).toBe(200);
    expect(r1.headers['x-beamline-gateway']).toBe('legacy');
    expect(r1.headers['x-legacy-mode']).toBe('same');
    const r2 = await decide(gw, onLegacy, { 'X-Beamline-Gateway': 'New' });
    expect(r2.status).toBe(200);
    expect(r2.headers['x-beamline-gateway']).toBe('new');
    expect(r2.headers['x-legacy-mode']).toBeUndefined();
    // an unknown value is ignored: the share decides
    expect((await decide(gw, onLegacy, { 'x-beamline-gateway': 'both' })).headers['x-beamline-gateway']).toBe('legacy');
    expect(legacy.requests).toHaveLength(2);
    expect(legacy.requests.every((q) => q.headers['x-beamline-gateway'] === undefined)).toBe(true);
  });

  test('the old gateway gets the request as sent: method, path, query, body, headers', async () => {
    const l = await startLegacy({ mode: 'nest' });
    const g = await startGateway({ natsUrl: nats.url, configure: configure(l.url, 0) });
    try {
      const b = body({ request_id: 'req-legacy-1' });
      const r = await request(g.url, {
        method: 'POST',
        path: '/api/v1/messages?x=1',
        body: b,
        headers: { 'content-type': 'application/json', 'x-tenant-id': 'acme', 'x-request-id': 'req-legacy-1', authorization: 'Bearer k' },
      });
      expect(r.status).toBe(201); // Nest: store + ack, passed through as is
      expect(r.headers['x-beamline-gateway']).toBe('legacy');
      expect(r.json).toMatchObject({ status: 'stored' });
      expect(l.requests).toHaveLength(1);
      const q = l.requests[0];
      expect(q).toMatchObject({ method: 'POST', url: '/api/v1/messages?x=1', body: b });
      expect(q.headers).toMatchObject({
        'x-tenant-id': 'acme',
        'x-request-id': 'req-legacy-1',
        authorization: 'Bearer k',
        'content-type': 'application/json',
      });
      expect(q.headers['x-forwarded-for']).toBe('127.0.0.1');
      // a Nest error passes through unchanged too
      const e = await request(g.url, { method: 'POST', path: DECIDE, headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(e.status).toBe(400);
      expect(Object.keys(e.json).sort()).toEqual(['code', 'message', 'path', 'timestamp']);
      // the old gateway down: 502 in the contract's shape, not an HTML page
      g.expectErrorLog(/connect\(\) failed \(111: Connection refused\) while connecting to upstream/);
      await l.stop();
      const down = await decide(g, 'acme');
      expect(down.status).toBe(502);
      expect(down.json.error.code).toBe('bad_gateway');
    } finally {
      await g.stop();
      await l.stop();
    }
  });

  test('a legacy body without X-Tenant-ID is split by message.tenant_id: the same side as with the header', async () => {
    const share = gw.config.migration.share_percent;
    const tenants = Array.from({ length: 40 }, (_, i) => `nest-${i}`);
    for (const t of tenants) {
      const nest = JSON.stringify({ message: { message_id: `m-${t}`, tenant_id: t, message_type: 'chat', payload: '{"text":"hi"}' } });
      const viaBody = await request(gw.url, {
        method: 'POST',
        path: '/api/v1/messages',
        headers: { 'content-type': 'application/json' },
        body: nest,
      });
      const viaHeader = await decide(gw, t);
      expect(viaBody.status).toBe(200);
      expect([t, viaBody.headers['x-beamline-gateway']]).toEqual([t, viaHeader.headers['x-beamline-gateway']]);
      expect(viaBody.headers['x-beamline-gateway']).toBe(bucket(t) < share ? 'new' : 'legacy');
    }
    // no tenant anywhere: tenant "" (one bucket for all of them)
    const none = await decide(gw, null);
    expect(none.status).toBe(400);
    expect(none.headers['x-beamline-gateway']).toBe(bucket('') < share ? 'new' : 'legacy');
  });

  test('health, readiness, metrics and the admin routes stay local, whatever the share and the override', async () => {
    legacy.reset();
    for (const path of ['/healthz', '/health', '/readyz', '/health/live', '/metrics', '/_metrics', '/api/v1/extensions/health']) {
      const r = await request(gw.url, { path, headers: { 'x-beamline-gateway': 'legacy', 'x-tenant-id': 'acme' } });
      expect([path, r.status, r.headers['x-beamline-gateway']]).toEqual([path, 200, undefined]);
    }
    expect(legacy.count).toBe(0);
    const m = await request(gw.url, { path: '/metrics' });
    expect(m.body).toMatch(/^gateway_traffic_requests_total\{side="new"\} \d+$/m);
    expect(m.body).toMatch(/^gateway_traffic_requests_total\{side="legacy"\} \d+$/m);
    // proxied requests count in the request metrics under their route
    expect(m.body).toMatch(/^gateway_http_requests_total\{route="decide",method="POST",status="200"\} \d+$/m);
  });
});

describe('migration.proxy_unknown_paths (CONTRACT §14)', () => {
  let nats;
  let legacy;
  beforeAll(async () => {
    legacy = await startLegacy({ mode: 'nest' });
    nats = await startNats();
    await startRouter({ natsUrl: nats.url, args: ['--fast'] });
  });
  afterAll(async () => {
    await stopAll();
    await legacy.stop();
  });

  test('on (the default while migrating): a path this gateway does not serve goes to the old gateway, marked legacy', async () => {
    const gw = await startGateway({ natsUrl: nats.url, configure: configure(legacy.url, 100) });
    try {
      await waitReady(gw);
      legacy.reset();
      const b = JSON.stringify({ name: 'p1', rules: [] });
      const r = await request(gw.url, {
        method: 'PUT',
        path: '/api/v1/policies/p1?dry=1',
        headers: { 'content-type': 'application/json', 'x-tenant-id': 'acme', 'x-beamline-gateway': 'new' },
        body: b,
      });
      // The old gateway's own answer (Nest's 404 shape), passed through and marked.
      expect(r.status).toBe(404);
      expect(r.headers['x-beamline-gateway']).toBe('legacy');
      expect(r.headers['x-legacy-mode']).toBe('nest');
      expect(Object.keys(r.json).sort()).toEqual(['code', 'message', 'path', 'timestamp']);
      expect(legacy.requests).toHaveLength(1);
      expect(legacy.requests[0]).toMatchObject({ method: 'PUT', url: '/api/v1/policies/p1?dry=1', body: b });
      expect(legacy.requests[0].headers['x-tenant-id']).toBe('acme');
      // The override header is not forwarded.
      expect(legacy.requests[0].headers['x-beamline-gateway']).toBeUndefined();
      const swagger = await request(gw.url, { path: '/api/docs' });
      expect(swagger.headers['x-beamline-gateway']).toBe('legacy');
      // Served paths stay here (share 100: the API is answered by this gateway).
      const h = await request(gw.url, { path: '/healthz' });
      expect(h.headers['x-beamline-gateway']).toBeUndefined();
      expect(legacy.requests).toHaveLength(2);
      // Logged and counted under their own route name.
      const m = await request(gw.url, { path: '/metrics' });
      expect(m.body).toMatch(/^gateway_http_requests_total\{route="legacy_unknown",method="PUT",status="404"\} 1$/m);
    } finally {
      await gw.stop();
    }
  });

  test("off: an unknown path is the gateway's own 404 again", async () => {
    const gw = await startGateway({
      natsUrl: nats.url,
      configure: (raw) => {
        configure(legacy.url, 100)(raw);
        raw.migration.proxy_unknown_paths = false;
      },
    });
    try {
      await waitReady(gw);
      legacy.reset();
      const r = await request(gw.url, { path: '/api/v1/policies/p1' });
      expect(r.status).toBe(404);
      expect(r.json.error.code).toBe('not_found');
      expect(r.headers['x-beamline-gateway']).toBeUndefined();
      expect(legacy.count).toBe(0);
    } finally {
      await gw.stop();
    }
  });
});

describe('traffic switch off (the default)', () => {
  test('nothing of the switch is rendered or answered', async () => {
    const nats = await startNats();
    await startRouter({ natsUrl: nats.url, args: ['--fast'] });
    const gw = await startGateway({ natsUrl: nats.url });
    try {
      await waitReady(gw);
      const fs = require('fs');
      const conf = fs.readFileSync(`${gw.prefix}/conf.d/20-gateway.conf`, 'utf8');
      expect(conf).not.toMatch(/beamline_legacy|beamline_side|body_filter|shadow/);
      const r = await decide(gw, 'acme', { 'x-beamline-gateway': 'legacy' });
      expect(r.status).toBe(200);
      expect(r.headers['x-beamline-gateway']).toBeUndefined();
      const m = await request(gw.url, { path: '/metrics' });
      expect(m.body).not.toMatch(/^gateway_traffic_requests_total\{/m);
      // migration off: proxy_unknown_paths (default true) does nothing
      const u = await request(gw.url, { path: '/no/such/path' });
      expect(u.status).toBe(404);
      expect(u.json.error.code).toBe('not_found');
      expect(u.headers['x-beamline-gateway']).toBeUndefined();
    } finally {
      await stopAll();
    }
  });
});
