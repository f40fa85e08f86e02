'use strict';
// CONTRACT §12 `GET /_metrics`: the UI dashboard's JSON over the last 60 s of this instance, API
// routes only: rps, latency p50/p95 (ms), error_rate (5xx share), nats, ts. An own stack, so
// this test's requests are the only ones in the window.
const { useGateway, describeOwnStack, call, post, canonical, tenant, expectGatewayError } = require('./support');

describeOwnStack('[own stack] §12 GET /_metrics', () => {
  const s = useGateway({ own: true });

  test('nothing yet: zeros, connected, ts in epoch seconds', async () => {
    const r = await call(s, { path: '/_metrics' });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(r.json).toEqual({ rps: 0, latency: { p50: 0, p95: 0 }, error_rate: 0, nats: 'connected', ts: expect.any(Number) });
    expect(Math.abs(r.json.ts - Date.now() / 1000)).toBeLessThan(3);
  });

  test('rps, error rate and latency percentiles from the API requests of the last 60 s', async () => {
    const send = (mode) => post(s, canonical(mode ? { context: { router_mode: mode } } : {}), { tenantId: tenant() });
    const statuses = [];
    for (let i = 0; i < 30; i++) statuses.push((await send()).status);
    for (let i = 0; i < 6; i++) statuses.push((await send('error:internal')).status);
    // 4 of 40 (10 %) take 300 ms: p95 falls among them, p50 among the fast ones.
    statuses.push(...(await Promise.all([1, 2, 3, 4].map(() => send('delay:300')))).map((r) => r.status));
    expect(statuses.filter((x) => x === 200)).toHaveLength(34);
    expect(statuses.filter((x) => x === 500)).toHaveLength(6);
    // Not API routes: not counted.
    for (const p of ['/healthz', '/metrics', '/readyz', '/nope']) await call(s, { path: p });
    const r = await call(s, { path: '/_metrics' });
    expect(r.status).toBe(200);
    expect(r.json.rps).toBeCloseTo(40 / 60, 3);
    expect(r.json.error_rate).toBeCloseTo(6 / 40, 4);
    expect(r.json.nats).toBe('connected');
    expect(r.json.latency.p50).toBeGreaterThan(0);
    expect(r.json.latency.p50).toBeLessThan(250);
    // Within one bucket (a factor 2^(1/4)) of the 300 ms the slow ones took.
    expect(r.json.latency.p95).toBeGreaterThan(300 / 1.2);
    expect(r.json.latency.p95).toBeLessThan(300 * 1.5);
  });

  test('GET and HEAD only', async () => {
    const r = await call(s, { method: 'POST', path: '/_metrics', body: '{}' });
    expectGatewayError(r, 405, 'method_not_allowed');
    expect(r.headers.allow).toBe('GET, HEAD');
    expect((await call(s, { method: 'HEAD', path: '/_metrics' })).status).toBe(200);
  });
});

describeOwnStack('[own stack: NATS down] §12 GET /_metrics', () => {
  const s = useGateway({ own: true, nats: false });

  test('nats: disconnected; the failed API requests count as errors', async () => {
    const d = await post(s, canonical(), { tenantId: tenant() });
    expect(d.status).toBe(503);
    const r = await call(s, { path: '/_metrics' });
    expect(r.json).toMatchObject({ nats: 'disconnected', error_rate: 1, rps: expect.any(Number) });
    expect(r.json.rps).toBeCloseTo(1 / 60, 3);
  });
});
