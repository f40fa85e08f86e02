'use strict';
// docs/openapi.yaml: served as GET /openapi.json (rendered from the YAML), and the validator that
// checks every response of the contract suite against it (spec/support/openapi.js, installed in
// ./support.js) really refuses what the document does not describe.
const fs = require('fs');
const YAML = require('yaml');
const { useGateway, call, post, canonical, tenant } = require('./support');
const { checkResponse, findResponse, DOC_PATH } = require('../support/openapi');

const doc = YAML.parse(fs.readFileSync(DOC_PATH, 'utf8'));
const JSON_HEADERS = { 'content-type': 'application/json' };
const IDS = { 'x-trace-id': '4bf92f3577b34da6a3ce929d0e0e4736', 'x-request-id': 'req-1' };

describe('GET /openapi.json', () => {
  const t = useGateway();

  test('is docs/openapi.yaml as JSON, an OpenAPI 3.1 document', async () => {
    const r = await call(t, { path: '/openapi.json' });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(r.json).toEqual(doc);
    expect(r.json.openapi).toMatch(/^3\.1\./);
  });

  test('HEAD: 200 without a body; POST: 405 with Allow', async () => {
    const h = await call(t, { method: 'HEAD', path: '/openapi.json' });
    expect(h.status).toBe(200);
    expect(h.body).toBe('');
    const p = await call(t, { method: 'POST', path: '/openapi.json', body: {} });
    expect(p.status).toBe(405);
    expect(p.headers.allow).toBe('GET, HEAD');
  });

  test('the request body examples of the document (canonical and legacy) are accepted with 200', async () => {
    // The request bodies' examples are what the document promises to accept.
    const ex = doc.components.requestBodies.Decide.content['application/json'].examples;
    for (const [name, e] of Object.entries(ex)) {
      const body = JSON.parse(JSON.stringify(e.value));
      const tn = name === 'legacy' ? body.message.tenant_id : tenant();
      const r = await post(t, body, { tenantId: tn });
      expect({ name, status: r.status }).toEqual({ name, status: 200 });
    }
    const r = await post(t, canonical());
    expect(r.status).toBe(200);
  });
});

describe('the response validator refuses what the document does not describe', () => {
  const ok = { status: 200, headers: { ...JSON_HEADERS, ...IDS }, body: '{"ok":true,"decision":{"provider_id":"p"}}' };
  const decide = { method: 'POST', path: '/api/v1/routes/decide' };

  test('a documented answer passes', () => {
    expect(checkResponse(decide, ok)).toEqual([]);
  });

  test('an undocumented status', () => {
    expect(checkResponse(decide, { ...ok, status: 418 })).toEqual([expect.stringMatching(/status 418 is not documented/)]);
  });

  test('a required header missing, a header of the wrong form', () => {
    expect(checkResponse(decide, { ...ok, headers: { ...JSON_HEADERS, 'x-request-id': 'r' } })).toEqual([
      expect.stringMatching(/required header X-Trace-Id missing/),
    ]);
    expect(checkResponse(decide, { ...ok, headers: { ...ok.headers, 'x-trace-id': 'NOT-HEX' } })).toEqual([
      expect.stringMatching(/header X-Trace-Id/),
    ]);
    expect(checkResponse(decide, { ...ok, headers: { ...ok.headers, 'x-ratelimit-remaining': 'many' } })).toEqual([
      expect.stringMatching(/header X-RateLimit-Remaining/),
    ]);
  });

  test('a body that does not match its schema, another media type', () => {
    expect(checkResponse(decide, { ...ok, body: '{"ok":"yes"}' })).toEqual([expect.stringMatching(/body/)]);
    const err = {
      status: 400,
      headers: { ...JSON_HEADERS, ...IDS },
      body: JSON.stringify({ ok: false, error: { code: 'invalid_request', message: 'x', details: {} }, context: {} }),
    };
    expect(checkResponse(decide, err)).toEqual([expect.stringMatching(/body/)]);
    expect(checkResponse(decide, { ...ok, headers: { ...ok.headers, 'content-type': 'text/html' } })).toEqual([
      expect.stringMatching(/Content-Type/),
    ]);
  });

  test('paths and methods the document does not list get only its x-beamline-unlisted answers', () => {
    const notFound = JSON.stringify({
      ok: false,
      error: { code: 'not_found', message: 'no route for this path', intake_error_code: null, details: {} },
      context: { request_id: '', trace_id: '', tenant_id: '' },
    });
    expect(checkResponse({ method: 'GET', path: '/nope?x=1' }, { status: 404, headers: JSON_HEADERS, body: notFound })).toEqual([]);
    expect(checkResponse({ method: 'GET', path: '/nope' }, { status: 200, headers: JSON_HEADERS, body: '{}' })).toEqual([
      expect.stringMatching(/unlisted path \/nope: status 200/),
    ]);
    expect(checkResponse({ method: 'DELETE', path: '/healthz' }, { status: 405, headers: JSON_HEADERS, body: notFound })).toEqual([
      expect.stringMatching(/required header Allow missing/),
    ]);
  });

  test('templated paths match one segment; literal paths win; HEAD is GET without a body', () => {
    expect(findResponse('GET', '/api/v1/routes/decide/abc', 200).where).toBe('GET /api/v1/routes/decide/{id} → 200');
    expect(findResponse('GET', '/api/v1/routes/decide/a/b', 404).where).toMatch(/^unlisted path/);
    expect(findResponse('GET', '/api/v1/messages/stream', 200).where).toBe('GET /api/v1/messages/stream → 200');
    expect(checkResponse({ method: 'HEAD', path: '/healthz' }, { status: 200, headers: JSON_HEADERS, body: '' })).toEqual([]);
  });
});
