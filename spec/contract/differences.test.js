'use strict';
// CONTRACT §9: one test per row of the "deliberate differences" table, asserting the "This
// gateway" column. Run against the C or Nest gateway (GATEWAY_URL=…) these are the rows that
// show where the predecessors differ. Rate-limit scope and Idempotency-Key are in limits.test.js
// and idempotency.test.js (features landing separately).
const http = require('http');
const {
  useGateway,
  describeRouterModes,
  describeOwnStack,
  call,
  post,
  echo,
  canonical,
  tenant,
  uid,
  expectGatewayError,
  HEX32,
} = require('./support');

const t = useGateway();

describeRouterModes('[reference Router] §9 rows that need the Router modes', () => {
  test('task forwarded to the Router: yes', async () => {
    const { request } = await echo(t, canonical({ task: { type: 'chat', payload: { q: 'x' } } }));
    expect(request.task).toEqual({ type: 'chat', payload: { q: 'x' } });
  });

  test.each([
    ['validator_blocked', 403],
    ['extension_timeout', 504],
    ['rate_limit_exceeded', 429],
  ])('Router %s → HTTP %i (the predecessors sent 200)', async (code, status) => {
    const r = await post(t, canonical({ metadata: { router_mode: `error:${code}` } }));
    expect(r.status).toBe(status);
    expect(r.json.ok).toBe(false);
    expect(r.json.error.code).toBe(code);
  });

  test('Router timeout → 504 timeout after the default 5000 ms, no retry (C-GW: 503, Nest: 500 after 3 retries)', async () => {
    const t0 = Date.now();
    const r = await post(t, canonical({ metadata: { router_mode: 'silence' } }));
    const took = Date.now() - t0;
    expectGatewayError(r, 504, 'timeout', { api: true });
    expect(took).toBeGreaterThanOrEqual(4500);
    expect(took).toBeLessThan(8000); // three retries would take 15 s
  }, 20000);
});

describe('§9 rows that need no Router mode', () => {
  test('header names match case-insensitively (C-GW: case-sensitive)', async () => {
    const r = await call(t, {
      method: 'POST',
      path: '/api/v1/routes/decide',
      headers: { 'x-tenant-id': tenant(), 'content-type': 'application/json' },
      body: JSON.stringify(canonical()),
    });
    expect(r.status).toBe(200);
  });

  test('trace id when absent: 32 hex, echoed (C-GW: none)', async () => {
    const r = await post(t, canonical());
    expect(r.headers['x-trace-id']).toMatch(HEX32);
  });

  test('body limit: over 1 MiB → 413 payload_too_large (C-GW: truncated into a 400; Nest: 100 KB)', async () => {
    const r = await post(t, JSON.stringify(canonical({ pad: 'x'.repeat(1048576) })), { contentType: 'application/json' });
    expectGatewayError(r, 413, 'payload_too_large', { details: { limit_bytes: 1048576 } });
  });

  test('a 150 KB body is accepted (Nest rejected anything over 100 KB)', async () => {
    const r = await post(t, JSON.stringify(canonical({ pad: 'x'.repeat(150 * 1024) })), { contentType: 'application/json' });
    expect(r.status).toBe(200);
  });

  test('body tenant_id ≠ header → 400 (C-GW: header silently wins; Nest: body only)', async () => {
    const r = await post(t, canonical({ tenant_id: tenant() }));
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { field: 'tenant_id' } });
  });

  test('POST /api/v1/messages → decide, 200 with the decision envelope (Nest: store + ack, 201)', async () => {
    const rid = uid();
    const r = await post(t, canonical({ request_id: rid }), { path: '/api/v1/messages' });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ ok: true, decision: { provider_id: expect.any(String) }, context: { request_id: rid } });
  });

  test('error body: the §5 shape (Nest: {code,message,timestamp,path})', async () => {
    const r = await post(t, '{', { contentType: 'application/json' });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: {} });
    expect(r.json).not.toHaveProperty('timestamp');
    expect(r.json).not.toHaveProperty('path');
  });

  test('unknown route → 404 not_found (C-GW: 404 invalid_request)', async () => {
    expectGatewayError(await call(t, { path: '/api/v1/unknown' }), 404, 'not_found');
  });
});

describeOwnStack('[own stack: NATS monitoring] §9 NATS connection: one persistent connection per worker', () => {
  const s = useGateway({ own: true, workers: 2, nats: { httpPort: true } });
  const connz = () =>
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: s.nats.httpPort, path: '/connz?subs=1' }, (res) => {
          let b = '';
          res.on('data', (d) => {
            b += d;
          });
          res.on('end', () => resolve(JSON.parse(b)));
        })
        .on('error', reject);
    });
  const gatewayConns = (c) =>
    c.connections
      .filter((x) => x.name === 'beamline-gateway')
      .map((x) => x.cid)
      .sort();

  test('50 concurrent decisions open no new NATS connections (2 workers → 2 connections, the same before and after)', async () => {
    // Both workers connect at start; wait until both are there.
    const deadline = Date.now() + 10000;
    let before;
    do {
      before = gatewayConns(await connz());
    } while (before.length < 2 && Date.now() < deadline && (await new Promise((r) => setTimeout(r, 50))) === undefined);
    expect(before).toHaveLength(2);
    const rs = await Promise.all(Array.from({ length: 50 }, () => post(s, canonical())));
    for (const r of rs) expect(r.status).toBe(200);
    const after = gatewayConns(await connz());
    expect(after).toEqual(before);
    const c = await connz();
    expect(c.total).toBe(3); // 2 gateway workers + the reference Router
  });
});
