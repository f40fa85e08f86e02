'use strict';
// CONTRACT §2 and §10: X-Tenant-ID, X-Trace-ID (+ traceparent/tracestate), X-Request-ID,
// Idempotency-Key validation, Content-Type, and the id headers on every API response.
const {
  useGateway,
  describeRouterModes,
  call,
  post,
  echo,
  canonical,
  tenant,
  uid,
  hex32,
  expectGatewayError,
  expectJsonType,
  HEX32,
  UUID_V4,
  API_PATHS,
} = require('./support');

const t = useGateway();

const DECIDE = '/api/v1/routes/decide';

describe('§2 X-Tenant-ID', () => {
  test.each(API_PATHS)('missing on POST %s → 400 "missing X-Tenant-ID header", details.header', async (p) => {
    const r = await post(t, canonical(), { tenantId: null, path: p });
    expectGatewayError(r, 400, 'invalid_request', {
      api: true,
      details: { header: 'X-Tenant-ID' },
      tenant: '',
      message: 'missing X-Tenant-ID header',
    });
  });

  test('missing on GET /api/v1/routes/decide/{id} → 400 details.header', async () => {
    const r = await call(t, { path: `${DECIDE}/${uid()}` });
    expectGatewayError(r, 400, 'invalid_request', {
      api: true,
      details: { header: 'X-Tenant-ID' },
      tenant: '',
      message: 'missing X-Tenant-ID header',
    });
  });

  test.each(['x-tenant-id', 'X-TENANT-ID', 'X-Tenant-Id', 'x-TeNaNt-Id'])('the header name is case-insensitive: %s', async (name) => {
    const id = tenant();
    const r = await call(t, { method: 'POST', path: DECIDE, headers: { [name]: id }, body: canonical() });
    expect(r.status).toBe(200);
    expect(r.json.ok).toBe(true);
  });

  test.each([
    ['empty', ''],
    ['a space', 'ten ant'],
    ['a slash', 'tenant/1'],
    ['a pipe', 'a|b'],
    ['a non-ASCII letter', 'tenänt'],
    ['129 characters', 'a'.repeat(129)],
    ['a quote', 'a"b'],
  ])('malformed (%s) → 400 details.header, the bad value never echoed', async (_what, value) => {
    const r = await call(t, { method: 'POST', path: DECIDE, headers: { 'X-Tenant-ID': value }, body: canonical() });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { header: 'X-Tenant-ID' }, tenant: '' });
  });

  test.each([
    ['128 characters', 'a'.repeat(128)],
    ['every allowed character class', 'Aa0.b_c:d-9'],
  ])('valid (%s) → 200', async (_w, v) => {
    const r = await call(t, { method: 'POST', path: DECIDE, headers: { 'X-Tenant-ID': v }, body: canonical() });
    expect(r.status).toBe(200);
  });

  test('sent twice → 400 details.header (gateway choice: repeated single-valued headers are rejected)', async () => {
    const r = await call(t, { method: 'POST', path: DECIDE, headers: { 'X-Tenant-ID': [tenant(), tenant()] }, body: canonical() });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { header: 'X-Tenant-ID' } });
  });

  test('a header error comes before body errors (header checks run before the body is read)', async () => {
    const r = await call(t, {
      method: 'POST',
      path: DECIDE,
      headers: { 'X-Tenant-ID': 'bad tenant', 'Content-Type': 'text/plain' },
      body: 'not json',
    });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { header: 'X-Tenant-ID' } });
  });
});

describe('§2 X-Trace-ID', () => {
  test('absent everywhere → a generated 32-lowercase-hex id, echoed as X-Trace-Id', async () => {
    const r = await post(t, canonical());
    expect(r.status).toBe(200);
    expect(r.headers['x-trace-id']).toMatch(HEX32);
    const r2 = await post(t, canonical());
    expect(r2.headers['x-trace-id']).not.toBe(r.headers['x-trace-id']);
  });

  test('32 hex characters in upper case are accepted and lower-cased', async () => {
    const tr = hex32().toUpperCase();
    const r = await post(t, canonical(), { headers: { 'X-Trace-ID': tr } });
    expect(r.status).toBe(200);
    expect(r.headers['x-trace-id']).toBe(tr.toLowerCase());
  });

  test('a UUID is accepted, lower-cased, keeps its dashes', async () => {
    const tr = 'A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D';
    const r = await post(t, canonical(), { headers: { 'x-trace-id': tr } });
    expect(r.status).toBe(200);
    expect(r.headers['x-trace-id']).toBe(tr.toLowerCase());
  });

  test.each([
    ['too short', 'abc'],
    ['31 hex', 'a'.repeat(31)],
    ['33 hex', 'a'.repeat(33)],
    ['non-hex', 'g'.repeat(32)],
    ['UUID in braces', '{a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d}'],
    ['UUID with misplaced dashes', 'a1b2c3d4e-5f6-4a7b-8c9d-0e1f2a3b4c5d'],
    ['empty', ''],
    ['a traceparent', `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`],
  ])('invalid (%s) → 400 details.header X-Trace-ID, with a fresh id in X-Trace-Id and context', async (_w, tr) => {
    const r = await post(t, canonical(), { headers: { 'X-Trace-ID': tr } });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { header: 'X-Trace-ID' } });
    expect(r.headers['x-trace-id']).toMatch(HEX32);
    expect(r.headers['x-trace-id']).not.toBe(tr.toLowerCase());
  });

  test('invalid body trace_id → 400 details.field trace_id, fresh id (not the raw value)', async () => {
    const r = await post(t, canonical({ trace_id: 'not-a-trace' }));
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { field: 'trace_id' } });
    expect(r.headers['x-trace-id']).toMatch(HEX32);
  });

  test('the body trace_id is used when the header is absent (lower-cased)', async () => {
    const tr = hex32();
    const r = await post(t, canonical({ trace_id: tr.toUpperCase() }));
    expect(r.status).toBe(200);
    expect(r.headers['x-trace-id']).toBe(tr);
  });

  test('header and body both valid and different → the header wins', async () => {
    const h = hex32();
    const r = await post(t, canonical({ trace_id: hex32() }), { headers: { 'X-Trace-ID': h } });
    expect(r.status).toBe(200);
    expect(r.headers['x-trace-id']).toBe(h);
  });

  test('the X-Trace-Id is on API errors too (a Router-independent 400)', async () => {
    const tr = hex32();
    const r = await post(t, canonical({ version: '2' }), { headers: { 'X-Trace-ID': tr } });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { field: 'version' }, traceId: tr });
  });
});

describe('§2/§10 X-Request-ID', () => {
  test('used as request_id when the body has none, echoed as X-Request-Id', async () => {
    const id = uid();
    const r = await post(t, canonical(), { headers: { 'X-Request-ID': id } });
    expect(r.status).toBe(200);
    expect(r.headers['x-request-id']).toBe(id);
    expect(r.json.context.request_id).toBe(id);
  });

  test('the body request_id wins; X-Request-Id is the effective one', async () => {
    const body = uid('body');
    const r = await post(t, canonical({ request_id: body }), { headers: { 'x-request-id': uid('hdr') } });
    expect(r.status).toBe(200);
    expect(r.headers['x-request-id']).toBe(body);
  });

  test('absent → a generated UUIDv4, echoed', async () => {
    const r = await post(t, canonical());
    expect(r.status).toBe(200);
    expect(r.headers['x-request-id']).toMatch(UUID_V4);
    expect(r.json.context.request_id).toBe(r.headers['x-request-id']);
  });

  test.each([
    ['a space', 'req 1'],
    ['129 characters', 'r'.repeat(129)],
    ['empty', ''],
    ['non-ASCII', 'réq'],
    ['a tab inside', 'a\tb'],
  ])('invalid (%s) → 400 details.header X-Request-ID', async (_w, v) => {
    const r = await post(t, canonical(), { headers: { 'X-Request-ID': v } });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { header: 'X-Request-ID' } });
    expect(r.headers['x-request-id']).not.toBe(v);
  });

  test('128 printable characters are valid', async () => {
    const v = `${'!~'.repeat(10)}${'x'.repeat(108)}`;
    const r = await post(t, canonical(), { headers: { 'X-Request-ID': v } });
    expect(r.status).toBe(200);
    expect(r.headers['x-request-id']).toBe(v);
  });
});

describe('§2/§10 Idempotency-Key validation', () => {
  test.each([
    ['257 characters', 'k'.repeat(257)],
    ['empty', ''],
    ['non-ASCII', 'clé'],
    ['a tab inside', 'a\tb'],
  ])('invalid (%s) → 400 details.header Idempotency-Key', async (_w, v) => {
    const r = await post(t, canonical(), { headers: { 'Idempotency-Key': v } });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { header: 'Idempotency-Key' } });
  });

  test('256 printable characters (spaces allowed) are valid', async () => {
    const r = await post(t, canonical(), { headers: { 'idempotency-key': `key with spaces ${uid()}`.padEnd(256, 'z') } });
    expect(r.status).toBe(200);
  });

  test('the key is validated with the headers: before the body (bad key + bad JSON → header error)', async () => {
    const r = await post(t, '{', { headers: { 'Idempotency-Key': 'k'.repeat(300) } });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { header: 'Idempotency-Key' } });
  });
});

describe('§2/§10 Content-Type', () => {
  test.each([
    ['absent', null],
    ['application/json', 'application/json'],
    ['with a charset', 'application/json; charset=utf-8'],
    ['upper case', 'APPLICATION/JSON'],
    ['mixed case with parameters', 'Application/Json;Charset=UTF-8'],
    ['with an unknown parameter', 'application/json; foo=bar'],
  ])('%s → accepted (200)', async (_w, ct) => {
    const headers = ct === null ? {} : { 'Content-Type': ct };
    const r = await call(t, {
      method: 'POST',
      path: DECIDE,
      headers: { 'X-Tenant-ID': tenant(), ...headers },
      body: JSON.stringify(canonical()),
    });
    expect(r.status).toBe(200);
    expectJsonType(r);
  });

  test.each([
    'text/plain',
    'application/vnd.api+json',
    'application/problem+json',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/jsonx',
    'json',
    'text/json',
    '',
  ])('"%s" → 415 unsupported_media_type', async (ct) => {
    const tn = tenant();
    const r = await call(t, {
      method: 'POST',
      path: DECIDE,
      headers: { 'X-Tenant-ID': tn, 'Content-Type': ct },
      body: JSON.stringify(canonical()),
    });
    expectGatewayError(r, 415, 'unsupported_media_type', { api: true, tenant: tn });
  });

  test('415 on /api/v1/messages too', async () => {
    const r = await post(t, JSON.stringify(canonical()), { path: '/api/v1/messages', headers: { 'Content-Type': 'text/plain' } });
    expectGatewayError(r, 415, 'unsupported_media_type', { api: true });
  });

  test('content type is checked before JSON (text/plain + broken JSON → 415)', async () => {
    const r = await post(t, '{{{', { headers: { 'Content-Type': 'text/plain' } });
    expectGatewayError(r, 415, 'unsupported_media_type', { api: true });
  });

  // Gateway choice: bodies are not decompressed; a compressed one is a 415 that says why.
  test('Content-Encoding gzip (a valid gzipped JSON body) → 415 naming Content-Encoding', async () => {
    const gz = require('zlib').gzipSync(JSON.stringify(canonical()));
    const r = await post(t, gz, { contentType: 'application/json', headers: { 'Content-Encoding': 'gzip' } });
    expectGatewayError(r, 415, 'unsupported_media_type', { api: true, message: /Content-Encoding/ });
  });

  test('Content-Encoding identity is the same as none', async () => {
    const r = await post(t, JSON.stringify(canonical()), { contentType: 'application/json', headers: { 'Content-Encoding': 'Identity' } });
    expect(r.status).not.toBe(415);
  });
});

describeRouterModes('[reference Router] ids and trace context forwarded to the Router', () => {
  test('generated trace and request ids are the ones the Router gets (body and NATS headers)', async () => {
    const { r, request, headers } = await echo(t, canonical());
    expect(request.trace_id).toBe(r.headers['x-trace-id']);
    expect(headers.trace_id).toBe(r.headers['x-trace-id']);
    expect(request.request_id).toBe(r.headers['x-request-id']);
    expect(headers.request_id).toBe(r.headers['x-request-id']);
  });

  test('X-Trace-ID (upper case) reaches the Router lower-cased', async () => {
    const tr = hex32();
    const { request, headers } = await echo(t, canonical(), { headers: { 'X-Trace-ID': tr.toUpperCase() } });
    expect(request.trace_id).toBe(tr);
    expect(headers.trace_id).toBe(tr);
  });

  const TRACE = hex32();
  const PARENT = '00f067aa0ba902b7';
  const TP = `00-${TRACE}-${PARENT}-01`;

  test('a valid traceparent is the trace-id fallback and is forwarded with tracestate', async () => {
    const { r, request, headers } = await echo(t, canonical(), {
      headers: { traceparent: TP, tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE' },
    });
    expect(r.headers['x-trace-id']).toBe(TRACE);
    expect(request.trace_id).toBe(TRACE);
    expect(headers).toEqual({
      trace_id: TRACE,
      tenant_id: request.tenant_id,
      request_id: request.request_id,
      version: '1',
      traceparent: TP,
      tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE',
    });
  });

  test('the body trace_id beats traceparent; traceparent is still forwarded', async () => {
    const body = hex32();
    const { r, headers } = await echo(t, canonical({ trace_id: body }), { headers: { traceparent: TP } });
    expect(r.headers['x-trace-id']).toBe(body);
    expect(headers.traceparent).toBe(TP);
  });

  test('a future traceparent version whose first 55 characters parse is accepted', async () => {
    const tp = `01-${TRACE}-${PARENT}-01-whatever`;
    const { r, headers } = await echo(t, canonical(), { headers: { traceparent: tp } });
    expect(r.headers['x-trace-id']).toBe(TRACE);
    expect(headers.traceparent).toBe(tp);
  });

  test.each([
    ['upper-case hex', `00-${TRACE.toUpperCase()}-${PARENT}-01`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`],
    ['all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['version ff', `ff-${TRACE}-${PARENT}-01`],
    ['version 00 with a suffix', `${TP}-extra`],
    ['too short', `00-${TRACE}-${PARENT}-1`],
    ['garbage', 'hello'],
  ])('an invalid traceparent (%s) is ignored, not an error: 200, generated trace id, not forwarded', async (_w, tp) => {
    const { r, headers } = await echo(t, canonical(), { headers: { traceparent: tp, tracestate: 'a=b' } });
    expect(r.headers['x-trace-id']).toMatch(HEX32);
    expect(r.headers['x-trace-id']).not.toBe(TRACE);
    expect(Object.keys(headers).sort()).toEqual(['request_id', 'tenant_id', 'trace_id', 'version']);
  });

  test('tracestate without a traceparent is not forwarded', async () => {
    const { headers } = await echo(t, canonical(), { headers: { tracestate: 'a=b' } });
    expect(headers.tracestate).toBeUndefined();
  });

  test('tracestate over 512 characters is dropped, traceparent kept', async () => {
    const { headers } = await echo(t, canonical(), { headers: { traceparent: TP, tracestate: `a=${'b'.repeat(511)}` } });
    expect(headers.traceparent).toBe(TP);
    expect(headers.tracestate).toBeUndefined();
  });

  test('tracestate of exactly 512 characters is forwarded', async () => {
    const ts = `a=${'b'.repeat(510)}`;
    const { headers } = await echo(t, canonical(), { headers: { traceparent: TP, tracestate: ts } });
    expect(headers.tracestate).toBe(ts);
  });
});
