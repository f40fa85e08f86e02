'use strict';
// Idempotency-Key (CONTRACT §5, §10) on the real stack with 2 workers: replay of the stored
// status and body with the original ids and no Router call, 409 while in flight and for another
// body, release after a 5xx, scope per tenant and route, TTL.
const { startStack, request } = require('../support/gateway');
const { stopAll } = require('../support/processes');
const { DECIDE, MESSAGES, decideBody, post, sleep, settle, scrape, value } = require('../support/api');

let gw;
beforeAll(async () => {
  ({ gateway: gw } = await startStack({
    workers: 2,
    configure: (raw) => {
      raw.idempotency = { ttl_seconds: 2 };
      raw.router = { request_timeout_ms: 1000 };
    },
  }));
});
afterAll(() => stopAll());

let seq = 0;
const newKey = () => `key-${process.pid}-${++seq}`;
const routerCalls = async () => {
  await settle();
  return value(await scrape(gw.url), 'gateway_router_replies_total');
};
const withMode = (mode, extra = {}) => decideBody({ metadata: { router_mode: mode }, ...extra });

test('a repeat replays status, body and the original ids, without calling the Router', async () => {
  const key = newKey();
  const body = decideBody({ context: { user_id: 'u1' } });
  const first = await post(gw.url, { headers: { 'idempotency-key': key }, body });
  expect(first.status).toBe(200);
  expect(first.headers['idempotent-replayed']).toBeUndefined();
  const calls = await routerCalls();
  // Several repeats on fresh connections (both workers), one with a different X-Request-ID.
  const repeats = await Promise.all([
    post(gw.url, { headers: { 'idempotency-key': key }, body }),
    post(gw.url, { headers: { 'idempotency-key': key, 'x-request-id': 'another-id' }, body }),
    post(gw.url, { headers: { 'idempotency-key': key }, body }),
  ]);
  for (const r of repeats) {
    expect(r.status).toBe(200);
    expect(r.body).toBe(first.body);
    expect(r.headers['idempotent-replayed']).toBe('true');
    expect(r.headers['x-request-id']).toBe(first.headers['x-request-id']);
    expect(r.headers['x-trace-id']).toBe(first.headers['x-trace-id']);
    expect(r.headers['content-type']).toBe('application/json');
  }
  expect(await routerCalls()).toBe(calls);
  const s = await scrape(gw.url);
  expect(value(s, 'gateway_idempotency_replays_total')).toBeGreaterThanOrEqual(3);
});

test('the same key with a different body is 409 conflict', async () => {
  const key = newKey();
  expect((await post(gw.url, { headers: { 'idempotency-key': key }, body: decideBody({ request_id: 'a1' }) })).status).toBe(200);
  const r = await post(gw.url, { headers: { 'idempotency-key': key }, body: decideBody({ request_id: 'a2' }) });
  expect(r.status).toBe(409);
  expect(r.json.error).toEqual({
    code: 'conflict',
    message: expect.stringMatching(/different request body/),
    intake_error_code: null,
    details: {},
  });
  expect(r.headers['idempotent-replayed']).toBeUndefined();
  // Whitespace counts: "same body" means the same bytes.
  const r2 = await post(gw.url, { headers: { 'idempotency-key': key }, body: `${decideBody({ request_id: 'a1' })} ` });
  expect(r2.status).toBe(409);
});

test('concurrent duplicates: one runs, the others get 409 while it is in flight; afterwards it replays', async () => {
  const key = newKey();
  const body = withMode('delay:400');
  const calls = await routerCalls();
  const rs = await Promise.all(Array.from({ length: 6 }, () => post(gw.url, { headers: { 'idempotency-key': key }, body })));
  const ok = rs.filter((r) => r.status === 200);
  const conflicts = rs.filter((r) => r.status === 409);
  expect(ok).toHaveLength(1);
  expect(conflicts).toHaveLength(5);
  for (const r of conflicts) expect(r.json.error.message).toMatch(/in progress/);
  expect(await routerCalls()).toBe(calls + 1);
  const again = await post(gw.url, { headers: { 'idempotency-key': key }, body });
  expect(again.status).toBe(200);
  expect(again.headers['idempotent-replayed']).toBe('true');
  expect(again.body).toBe(ok[0].body);
});

test('after a 5xx the key is released and the request runs again', async () => {
  const key = newKey();
  const body = withMode('error:internal');
  const first = await post(gw.url, { headers: { 'idempotency-key': key }, body });
  expect(first.status).toBe(500);
  const calls = await routerCalls();
  const second = await post(gw.url, { headers: { 'idempotency-key': key }, body });
  expect(second.status).toBe(500);
  expect(second.headers['idempotent-replayed']).toBeUndefined();
  expect(await routerCalls()).toBe(calls + 1);
  // A Router timeout (504) releases it too.
  const k2 = newKey();
  const t = await post(gw.url, { headers: { 'idempotency-key': k2 }, body: withMode('silence') });
  expect(t.status).toBe(504);
  const t2 = await post(gw.url, { headers: { 'idempotency-key': k2 }, body: decideBody() });
  expect(t2.status).toBe(200);
});

test('a 4xx answer is stored and replayed', async () => {
  const key = newKey();
  const body = decideBody({ policy_id: 'no-such-policy' });
  const first = await post(gw.url, { headers: { 'idempotency-key': key }, body });
  expect(first.status).toBe(404);
  const again = await post(gw.url, { headers: { 'idempotency-key': key }, body });
  expect(again.status).toBe(404);
  expect(again.body).toBe(first.body);
  expect(again.headers['idempotent-replayed']).toBe('true');
});

test('keys are scoped per tenant and per route', async () => {
  const key = newKey();
  const body = decideBody();
  const a = await post(gw.url, { tenant: 'ta', headers: { 'idempotency-key': key }, body });
  const b = await post(gw.url, { tenant: 'tb', headers: { 'idempotency-key': key }, body });
  const m = await post(gw.url, { tenant: 'ta', path: MESSAGES, headers: { 'idempotency-key': key }, body });
  for (const r of [a, b, m]) {
    expect(r.status).toBe(200);
    expect(r.headers['idempotent-replayed']).toBeUndefined();
  }
  expect(b.headers['x-request-id']).not.toBe(a.headers['x-request-id']);
});

test('entries expire after idempotency.ttl_seconds', async () => {
  const key = newKey();
  const body = decideBody();
  const first = await post(gw.url, { headers: { 'idempotency-key': key }, body });
  expect((await post(gw.url, { headers: { 'idempotency-key': key }, body })).headers['idempotent-replayed']).toBe('true');
  await sleep(2600);
  const later = await post(gw.url, { headers: { 'idempotency-key': key }, body });
  expect(later.status).toBe(200);
  expect(later.headers['idempotent-replayed']).toBeUndefined();
  expect(later.headers['x-request-id']).not.toBe(first.headers['x-request-id']);
});

test('an invalid Idempotency-Key is 400 about the header; requests without one are never replayed', async () => {
  const long = await post(gw.url, { headers: { 'idempotency-key': 'x'.repeat(257) } });
  expect(long.status).toBe(400);
  expect(long.json.error.details).toEqual({ header: 'Idempotency-Key' });
  const body = decideBody();
  const a = await post(gw.url, { body });
  const b = await post(gw.url, { body });
  expect(b.headers['idempotent-replayed']).toBeUndefined();
  expect(b.headers['x-request-id']).not.toBe(a.headers['x-request-id']);
});

test('the decision lookup ignores Idempotency-Key; no Lua errors', async () => {
  const r = await request(gw.url, { path: `${DECIDE}/unknown`, headers: { 'x-tenant-id': 't1', 'idempotency-key': 'k' } });
  expect(r.status).toBe(404);
  expect(gw.errorLog()).not.toMatch(/\[error\].*lua/i);
});
