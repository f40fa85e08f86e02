'use strict';
// CONTRACT §1/§10: GET /api/v1/routes/decide/{id} — the last successful decision stored for this
// tenant under message_id (and request_id), exact bytes, per tenant, messages route too, TTL.
const {
  useGateway,
  describeRouterModes,
  describeOwnStack,
  call,
  post,
  canonical,
  tenant,
  uid,
  expectGatewayError,
  expectJsonType,
  sleep,
} = require('./support');

const t = useGateway();
const get = (g, id, tn, method = 'GET') =>
  call(g, { method, path: `/api/v1/routes/decide/${encodeURIComponent(id)}`, headers: tn === null ? {} : { 'X-Tenant-ID': tn } });

describe('§1/§10 decision lookup', () => {
  test('a decision is stored under its request_id: exactly the bytes of the 200 body', async () => {
    const tn = tenant();
    const rid = uid();
    const r = await post(t, canonical({ request_id: rid }), { tenantId: tn });
    expect(r.status).toBe(200);
    const g = await get(t, rid, tn);
    expect(g.status).toBe(200);
    expectJsonType(g);
    expect(g.body).toBe(r.body);
  });

  test('… and also under its message_id', async () => {
    const tn = tenant();
    const rid = uid();
    const mid = uid('msg');
    const r = await post(t, canonical({ request_id: rid, message_id: mid }), { tenantId: tn });
    expect(r.status).toBe(200);
    const byMessage = await get(t, mid, tn);
    expect(byMessage.status).toBe(200);
    expect(byMessage.body).toBe(r.body);
    const byRequest = await get(t, rid, tn);
    expect(byRequest.body).toBe(r.body);
  });

  test('a request id from X-Request-ID, or a generated one, is a lookup key too', async () => {
    const tn = tenant();
    const hid = uid('hdr');
    const a = await post(t, canonical(), { tenantId: tn, headers: { 'X-Request-ID': hid } });
    expect((await get(t, hid, tn)).body).toBe(a.body);
    const b = await post(t, canonical(), { tenantId: tn });
    expect((await get(t, b.headers['x-request-id'], tn)).body).toBe(b.body);
  });

  test('decisions made through POST /api/v1/messages are stored too', async () => {
    const tn = tenant();
    const rid = uid();
    const r = await post(t, canonical({ request_id: rid }), { tenantId: tn, path: '/api/v1/messages' });
    expect(r.status).toBe(200);
    const g = await get(t, rid, tn);
    expect(g.status).toBe(200);
    expect(g.body).toBe(r.body);
  });

  test('a legacy body is stored under message.message_id', async () => {
    const tn = tenant();
    const mid = uid('m');
    const r = await post(t, { message: { message_id: mid, message_type: 'chat', payload: 'hi' } }, { tenantId: tn });
    expect(r.status).toBe(200);
    expect((await get(t, mid, tn)).body).toBe(r.body);
  });

  test('another tenant never sees it → 404 not_found', async () => {
    const tn = tenant();
    const rid = uid();
    expect((await post(t, canonical({ request_id: rid }), { tenantId: tn })).status).toBe(200);
    const other = tenant();
    const g = await get(t, rid, other);
    expectGatewayError(g, 404, 'not_found', { api: true, tenant: other });
  });

  test('an unknown id → 404 not_found in the gateway shape, with X-Trace-Id', async () => {
    const tn = tenant();
    const g = await get(t, uid('none'), tn);
    expectGatewayError(g, 404, 'not_found', { api: true, tenant: tn });
  });

  test('HEAD is accepted: 200 without a body', async () => {
    const tn = tenant();
    const rid = uid();
    expect((await post(t, canonical({ request_id: rid }), { tenantId: tn })).status).toBe(200);
    const h = await get(t, rid, tn, 'HEAD');
    expect(h.status).toBe(200);
    expect(h.body).toBe('');
    expectJsonType(h);
  });

  test('a malformed X-Tenant-ID → 400 details.header', async () => {
    const g = await get(t, uid(), 'bad tenant');
    expectGatewayError(g, 400, 'invalid_request', { api: true, details: { header: 'X-Tenant-ID' } });
  });

  test('a gateway 400 stores nothing', async () => {
    const tn = tenant();
    const rid = uid();
    const r = await post(t, canonical({ request_id: rid, version: '2' }), { tenantId: tn });
    expect(r.status).toBe(400);
    expectGatewayError(await get(t, rid, tn), 404, 'not_found', { api: true });
  });
});

describeRouterModes('[reference Router] only successful decisions are stored, the last one wins', () => {
  test('a Router error reply is not stored', async () => {
    const tn = tenant();
    const rid = uid();
    const r = await post(t, canonical({ request_id: rid, metadata: { router_mode: 'error:validator_blocked' } }), { tenantId: tn });
    expect(r.status).toBe(403);
    expectGatewayError(await get(t, rid, tn), 404, 'not_found', { api: true });
  });

  test('an error after a success keeps the success; a second success replaces it', async () => {
    const tn = tenant();
    const rid = uid();
    const first = await post(t, canonical({ request_id: rid, context: { router_mode: 'echo' } }), { tenantId: tn });
    expect(first.status).toBe(200);
    const failed = await post(t, canonical({ request_id: rid, metadata: { router_mode: 'error:internal' } }), { tenantId: tn });
    expect(failed.status).toBe(500);
    expect((await get(t, rid, tn)).body).toBe(first.body);
    const second = await post(t, canonical({ request_id: rid, context: { router_mode: 'echo' } }), { tenantId: tn });
    expect(second.status).toBe(200);
    expect(second.body).not.toBe(first.body); // the echo shows a different reply inbox
    expect((await get(t, rid, tn)).body).toBe(second.body);
  });

  test('a 502 (malformed Router reply) is not stored', async () => {
    const tn = tenant();
    const rid = uid();
    expect((await post(t, canonical({ request_id: rid, metadata: { router_mode: 'non_json' } }), { tenantId: tn })).status).toBe(502);
    expect((await get(t, rid, tn)).status).toBe(404);
  });
});

describeOwnStack('[own stack: decision_cache.ttl_seconds 1] entries expire', () => {
  const s = useGateway({
    own: true,
    configure: (raw) => {
      raw.decision_cache = { ttl_seconds: 1 };
    },
  });
  test('found at once, 404 after the TTL', async () => {
    const tn = tenant();
    const rid = uid();
    expect((await post(s, canonical({ request_id: rid }), { tenantId: tn })).status).toBe(200);
    expect((await get(s, rid, tn)).status).toBe(200);
    await sleep(2100);
    expectGatewayError(await get(s, rid, tn), 404, 'not_found', { api: true });
  });
});
