'use strict';
// CONTRACT §5/§10 Idempotency-Key (feature of its own issue; lands separately): replay of the
// stored status and body with Idempotent-Replayed: true and no Router call, 409 conflict for a
// different body or a request still in flight, only < 500 stored, per tenant and route, TTL.
// The `echo` replies carry the Router's unique reply inbox, so a replayed body that is
// byte-identical proves that the Router was not called again.
const { useGateway, describeRouterModes, describeOwnStack, post, canonical, tenant, uid, expectGatewayError, sleep } = require('./support');

const t = useGateway();

const key = () => `idem ${uid('k')}`;
const echoBody = (extra = {}) => JSON.stringify(canonical({ context: { router_mode: 'echo' }, ...extra }));
const send = (g, body, tn, k, opts = {}) =>
  post(g, body, {
    tenantId: tn,
    headers: { 'Idempotency-Key': k, ...(opts.headers || {}) },
    path: opts.path,
    contentType: 'application/json',
  });

function expectReplay(again, first) {
  expect(again.status).toBe(first.status);
  expect(again.body).toBe(first.body);
  expect(again.headers['idempotent-replayed']).toBe('true');
  expect(again.headers['x-request-id']).toBe(first.headers['x-request-id']);
  expect(again.headers['x-trace-id']).toBe(first.headers['x-trace-id']);
}

describeRouterModes('[reference Router] Idempotency-Key replay', () => {
  test('a repeat returns the stored status and bytes with Idempotent-Replayed: true, without a Router call', async () => {
    const tn = tenant();
    const k = key();
    const b = echoBody();
    const first = await send(t, b, tn, k);
    expect(first.status).toBe(200);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    const again = await send(t, b, tn, k);
    expectReplay(again, first);
    // A third time still replays.
    expectReplay(await send(t, b, tn, k), first);
  });

  test('the replay carries the original ids even when the repeat sends none (they were generated)', async () => {
    const tn = tenant();
    const k = key();
    const b = echoBody();
    const first = await send(t, b, tn, k);
    const again = await send(t, b, tn, k);
    expectReplay(again, first);
  });

  test('the same key with a different body → 409 conflict', async () => {
    const tn = tenant();
    const k = key();
    expect((await send(t, echoBody(), tn, k)).status).toBe(200);
    const r = await send(t, echoBody({ run_id: 'other' }), tn, k);
    expectGatewayError(r, 409, 'conflict', { api: true, tenant: tn });
  });

  test('"same body" means the same raw bytes: equal JSON with other whitespace → 409', async () => {
    const tn = tenant();
    const k = key();
    const b = echoBody();
    expect((await send(t, b, tn, k)).status).toBe(200);
    expectGatewayError(await send(t, b.replace(/,/g, ', '), tn, k), 409, 'conflict', { api: true });
  });

  test('a repeat while the first is still in flight → 409 conflict; afterwards the first is replayed', async () => {
    const tn = tenant();
    const k = key();
    const b = JSON.stringify(canonical({ metadata: { router_mode: 'delay:1200' } }));
    const firstP = send(t, b, tn, k);
    await sleep(300);
    const during = await send(t, b, tn, k);
    expectGatewayError(during, 409, 'conflict', { api: true, tenant: tn });
    const first = await firstP;
    expect(first.status).toBe(200);
    expectReplay(await send(t, b, tn, k), first);
  });

  test('per tenant: the same key and body of another tenant runs normally', async () => {
    const k = key();
    const b = echoBody();
    const a = await send(t, b, tenant(), k);
    const other = await send(t, b, tenant(), k);
    expect(other.status).toBe(200);
    expect(other.headers['idempotent-replayed']).toBeUndefined();
    expect(other.body).not.toBe(a.body);
  });

  test('per route: the same key and body on /api/v1/messages runs normally', async () => {
    const tn = tenant();
    const k = key();
    const b = echoBody();
    const a = await send(t, b, tn, k);
    const m = await send(t, b, tn, k, { path: '/api/v1/messages' });
    expect(m.status).toBe(200);
    expect(m.headers['idempotent-replayed']).toBeUndefined();
    expect(m.body).not.toBe(a.body);
    expectReplay(await send(t, b, tn, k, { path: '/api/v1/messages' }), m);
  });

  test('a 4xx from the Router is stored and replayed', async () => {
    const tn = tenant();
    const k = key();
    const b = JSON.stringify(canonical({ metadata: { router_mode: 'error:validator_blocked' } }));
    const first = await send(t, b, tn, k);
    expect(first.status).toBe(403);
    expectReplay(await send(t, b, tn, k), first);
  });

  test.each([
    ['error:internal', 500],
    ['non_json', 502],
    ['error:extension_unavailable', 503],
  ])('a %s (%i) is not stored: the key is released and a retry runs again', async (mode, status) => {
    const tn = tenant();
    const k = key();
    const b = JSON.stringify(canonical({ metadata: { router_mode: mode } }));
    const first = await send(t, b, tn, k);
    expect(first.status).toBe(status);
    const again = await send(t, b, tn, k);
    expect(again.status).toBe(status);
    expect(again.headers['idempotent-replayed']).toBeUndefined();
    expect(again.headers['x-request-id']).not.toBe(first.headers['x-request-id']);
  });

  test('after a 5xx the same key may carry a corrected body', async () => {
    const tn = tenant();
    const k = key();
    expect((await send(t, JSON.stringify(canonical({ metadata: { router_mode: 'error:internal' } })), tn, k)).status).toBe(500);
    const fixed = await send(t, echoBody(), tn, k);
    expect(fixed.status).toBe(200);
    expect(fixed.headers['idempotent-replayed']).toBeUndefined();
  });

  test('a body rejected by the field checks (before idempotency) does not take the key', async () => {
    const tn = tenant();
    const k = key();
    expect((await send(t, JSON.stringify(canonical({ version: '2' })), tn, k)).status).toBe(400);
    const ok = await send(t, echoBody(), tn, k);
    expect(ok.status).toBe(200);
    expect(ok.headers['idempotent-replayed']).toBeUndefined();
  });

  test('without the header nothing is replayed', async () => {
    const tn = tenant();
    const b = echoBody();
    const a = await post(t, b, { tenantId: tn, contentType: 'application/json' });
    const c = await post(t, b, { tenantId: tn, contentType: 'application/json' });
    expect(c.headers['idempotent-replayed']).toBeUndefined();
    expect(c.body).not.toBe(a.body);
  });
});

describeOwnStack('[own stack: idempotency.ttl_seconds 1] entries expire', () => {
  const s = useGateway({
    own: true,
    configure: (raw) => {
      raw.idempotency = { ttl_seconds: 1 };
    },
  });
  test('after the TTL the same key runs again', async () => {
    const tn = tenant();
    const k = key();
    const b = echoBody();
    const first = await send(s, b, tn, k);
    expectReplay(await send(s, b, tn, k), first);
    await sleep(2100);
    const later = await send(s, b, tn, k);
    expect(later.status).toBe(200);
    expect(later.headers['idempotent-replayed']).toBeUndefined();
    expect(later.body).not.toBe(first.body);
  });
});
