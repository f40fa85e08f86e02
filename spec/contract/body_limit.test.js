'use strict';
// CONTRACT §5/§10 body size: the smaller of the configured limit (default 1 MiB) and the NATS
// server's max_payload → 413 payload_too_large with details.limit_bytes, in the JSON shape even
// when nginx answers; a Router request that would exceed max_payload → 413, nothing published.
const { request } = require('../support/gateway');
const { connect } = require('nats');
const {
  useGateway,
  describeOwnStack,
  describeRouterModes,
  call,
  post,
  canonical,
  tenant,
  expectGatewayError,
  sleep,
  uid,
  hex32,
} = require('./support');

const MIB = 1048576;

/** A canonical decide body of exactly `n` bytes (padding in task.payload.pad). */
function bodyOfSize(n, extra = {}) {
  const base = JSON.stringify(canonical({ ...extra, task: { type: 'chat', payload: { pad: '' } } }));
  if (n < base.length) throw new Error(`cannot build a ${n}-byte body`);
  return JSON.stringify(canonical({ ...extra, task: { type: 'chat', payload: { pad: 'x'.repeat(n - base.length) } } }));
}

/** POST with Transfer-Encoding: chunked (no Content-Length). */
function chunked(t, path, headers, chunks) {
  return request(t.url, {
    method: 'POST',
    path,
    headers: { ...headers, 'Transfer-Encoding': 'chunked' },
    body: chunks,
    ignoreResetErrors: true,
  });
}

const tooLarge = (r, limit, o = {}) => expectGatewayError(r, 413, 'payload_too_large', { details: { limit_bytes: limit }, ...o });

const t = useGateway();

describe('§5 default limit (1 MiB)', () => {
  test.each(['/api/v1/routes/decide', '/api/v1/messages'])('POST %s with 1 MiB + 1 byte → 413, details.limit_bytes 1048576', async (p) => {
    const r = await post(t, bodyOfSize(MIB + 1), { path: p, contentType: 'application/json' });
    tooLarge(r, MIB);
  });

  test('no X-Tenant-ID + oversized → 413 (§10: size before the tenant)', async () => {
    const r = await post(t, bodyOfSize(MIB + 1), { tenantId: null, contentType: 'application/json' });
    tooLarge(r, MIB);
  });

  test('text/plain + oversized → 413 (size before content type)', async () => {
    const r = await post(t, bodyOfSize(MIB + 100), { headers: { 'Content-Type': 'text/plain' } });
    tooLarge(r, MIB);
  });

  test('a chunked body over the limit (no Content-Length) → 413 in the JSON shape, with the request ids (§2)', async () => {
    const piece = 'x'.repeat(256 * 1024);
    const [tn, rid, tr] = [tenant(), uid(), hex32()];
    const headers = { 'X-Tenant-ID': tn, 'X-Request-ID': rid, 'X-Trace-ID': tr, 'Content-Type': 'application/json' };
    const r = await chunked(t, '/api/v1/routes/decide', headers, ['{"version":"1","pad":"', piece, piece, piece, piece, piece, '"}']);
    tooLarge(r, MIB, { api: true, tenant: tn, requestId: rid, traceId: tr });
    // Without ids sent: generated ones, the same in the headers and the body.
    const g = await chunked(t, '/api/v1/routes/decide', { 'X-Tenant-ID': tn, 'Content-Type': 'application/json' }, [
      piece,
      piece,
      piece,
      piece,
      piece,
    ]);
    tooLarge(g, MIB, { api: true, tenant: tn });
  });

  test('a chunked body over the limit with text/plain → 413 (size is checked before content type)', async () => {
    const piece = 'x'.repeat(256 * 1024);
    const r = await chunked(t, '/api/v1/routes/decide', { 'X-Tenant-ID': tenant(), 'Content-Type': 'text/plain' }, [
      piece,
      piece,
      piece,
      piece,
      piece,
    ]);
    tooLarge(r, MIB);
  });

  test('a body under the limit is accepted', async () => {
    const r = await post(t, bodyOfSize(200 * 1024), { contentType: 'application/json' });
    expect(r.status).toBe(200);
  });
});

describeOwnStack('[own stack: limits.body_bytes 1024]', () => {
  const s = useGateway({
    own: true,
    configure: (raw) => {
      raw.limits = { body_bytes: 1024 };
    },
  });

  test('exactly 1024 bytes → accepted (200)', async () => {
    const r = await post(s, bodyOfSize(1024), { contentType: 'application/json' });
    expect(r.status).toBe(200);
  });

  test('1025 bytes → 413 with limit_bytes 1024', async () => {
    const r = await post(s, bodyOfSize(1025), { contentType: 'application/json' });
    tooLarge(r, 1024);
  });

  test.each(['/api/v1/routes/decide', '/api/v1/messages', '/api/v1/policies/dry-run'])(
    'a Content-Length over the limit (nginx answers, §14): the 413 carries X-Trace-Id, X-Request-Id and the context ids — %s',
    async (p) => {
      const [tn, rid, tr] = [tenant(), uid(), hex32()];
      const b = bodyOfSize(1025);
      const r = await post(s, b, {
        path: p,
        tenantId: tn,
        headers: { 'X-Request-ID': rid, 'X-Trace-ID': tr.toUpperCase() },
        contentType: 'application/json',
      });
      tooLarge(r, 1024, { api: true, tenant: tn, requestId: rid, traceId: tr });
      // No ids sent: generated ones, the same in the headers and the body.
      const g = await post(s, b, { path: p, tenantId: tn, contentType: 'application/json' });
      tooLarge(g, 1024, { api: true, tenant: tn });
      expect(g.json.context.request_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4/);
      // Invalid ids are never echoed: a fresh trace id, a fresh request id, no tenant.
      const bad = await post(s, b, {
        path: p,
        tenantId: 'bad tenant',
        headers: { 'X-Request-ID': 'has space', 'X-Trace-ID': 'nothex' },
        contentType: 'application/json',
      });
      tooLarge(bad, 1024, { api: true, tenant: '' });
      expect(bad.json.context.trace_id).not.toBe('nothex');
      expect(bad.json.context.request_id).not.toBe('has space');
    },
  );

  test('a valid traceparent gives the 413 its trace id', async () => {
    const tr = hex32();
    const r = await post(s, bodyOfSize(1025), {
      headers: { traceparent: `00-${tr}-0123456789abcdef-01` },
      contentType: 'application/json',
    });
    tooLarge(r, 1024, { api: true, traceId: tr });
  });

  test('1025 bytes chunked → 413 with limit_bytes 1024 and the request ids', async () => {
    const b = bodyOfSize(1025);
    const tn = tenant();
    const r = await chunked(s, '/api/v1/messages', { 'X-Tenant-ID': tn, 'Content-Type': 'application/json' }, [
      b.slice(0, 500),
      b.slice(500),
    ]);
    tooLarge(r, 1024, { api: true, tenant: tn });
  });

  test('a legacy body without X-Tenant-ID over the limit → 413', async () => {
    const r = await post(s, JSON.stringify({ message: { tenant_id: tenant(), message_type: 'chat', payload: 'x'.repeat(2000) } }), {
      tenantId: null,
      contentType: 'application/json',
    });
    tooLarge(r, 1024);
  });
});

describeOwnStack('[own stack: NATS max_payload 4096, configured limit 1 MiB] the smaller limit wins', () => {
  const s = useGateway({ own: true, nats: { config: 'max_payload: 4096\n' } });
  let nc;
  let published = 0;
  beforeAll(async () => {
    nc = await connect({ servers: s.nats.url });
    nc.subscribe('beamline.router.v1.decide', {
      callback: () => {
        published += 1;
      },
    });
    await nc.flush();
  });
  afterAll(async () => {
    if (nc) await nc.close();
  });

  test('a body over max_payload → 413 with limit_bytes 4096, before anything is published', async () => {
    const before = published;
    const tn = tenant();
    const r = await post(s, bodyOfSize(5000), { tenantId: tn, contentType: 'application/json' });
    tooLarge(r, 4096, { api: true, tenant: tn });
    await sleep(100);
    expect(published).toBe(before);
  });

  test('a body under max_payload whose Router request would exceed it → 413 limit_bytes 4096, nothing published, connection kept', async () => {
    const before = published;
    const r = await post(s, bodyOfSize(4000), { contentType: 'application/json' });
    tooLarge(r, 4096, { api: true });
    await sleep(100);
    expect(published).toBe(before);
    // The server did not drop the gateway's connection: the next request works at once.
    const ok = await post(s, canonical());
    expect(ok.status).toBe(200);
    const h = await call(s, { path: '/health' });
    expect(h.json.nats.connected).toBe(true);
  });

  test('a small body still goes through', async () => {
    const r = await post(s, bodyOfSize(1000), { contentType: 'application/json' });
    expect(r.status).toBe(200);
  });
});

describeRouterModes('[reference Router] the limit is on the request body, not on what comes back', () => {
  test('a large echo reply is fine', async () => {
    const r = await post(t, bodyOfSize(300 * 1024, { context: { router_mode: 'echo' } }), { contentType: 'application/json' });
    expect(r.status).toBe(200);
  });
});
