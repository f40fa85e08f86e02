'use strict';
// OpenTelemetry trace export (beamline.tracing) on the real stack: nginx with the compiled Lua,
// nats-server, the reference Router, and an OTLP/HTTP receiver (spec/support/otlp.js) that checks
// every span against the official OpenTelemetry encoder. Covered: the server and client spans
// of a decide with the right parents, the traceparent the Router receives, attributes, errors,
// parent-based and ratio sampling (0 and 1), batching, and the dropped-span counter with the
// collector down, failing, or the queue full.
const crypto = require('crypto');
const { startGateway, request, waitDecideOk } = require('../support/gateway');
const { startNats, startRouter, stopAll, freePort } = require('../support/processes');
const { startOtlpReceiver } = require('../support/otlp');
const { decideBody, post, scrape, value, sleep } = require('../support/api');

const hex = (n) => crypto.randomBytes(n).toString('hex');
const ECHO = (extra = {}) => decideBody({ context: { router_mode: 'echo' }, ...extra });

let nats;
beforeAll(async () => {
  nats = await startNats();
  await startRouter({ natsUrl: nats.url });
});
afterAll(() => stopAll());

/** A gateway exporting to `rx`; the OTEL_* environment turns export on (as operators do). */
async function tracedGateway(rx, { env = {}, tracing = {} } = {}) {
  const gw = await startGateway({
    natsUrl: nats.url,
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: rx ? rx.url : `http://127.0.0.1:${await freePort()}`, ...env },
    configure: (raw) => {
      raw.tracing = { ...raw.tracing, flush_interval_ms: 100, ...tracing };
    },
  });
  await waitDecideOk(gw);
  return gw;
}

/** The spans of one trace, by kind: {server, client}. */
function spansOf(rx, traceId) {
  const list = rx.spans.filter((s) => s.traceId === traceId);
  return { server: list.find((s) => s.kind === 2), client: list.find((s) => s.kind === 3), list };
}

describe('export at 100% sampling', () => {
  let rx;
  let gw;
  beforeAll(async () => {
    rx = await startOtlpReceiver();
    gw = await tracedGateway(rx, { env: { OTEL_SERVICE_NAME: 'gw-under-test' } });
  });
  afterAll(async () => {
    await gw.stop();
    await rx.stop();
  });

  test('a decide with a traceparent: server span under the client parent, client span under it, its context sent to the Router', async () => {
    const trace = hex(16);
    const parent = hex(8);
    const tenant = `tr-${hex(4)}`;
    const r = await post(gw.url, {
      tenant,
      body: ECHO(),
      headers: { traceparent: `00-${trace}-${parent}-01`, tracestate: 'vendor=1' },
    });
    expect(r.status).toBe(200);
    const sent = r.json.decision.metadata.headers;
    // The Router gets the client span's context (same trace, a new span id, sampled) and the tracestate.
    expect(sent.traceparent).toMatch(new RegExp(`^00-${trace}-[0-9a-f]{16}-01$`));
    expect(sent.tracestate).toBe('vendor=1');
    const routerParent = sent.traceparent.split('-')[2];
    expect(routerParent).not.toBe(parent);

    await rx.waitFor(() => spansOf(rx, trace).list.length >= 2);
    const { server, client, list } = spansOf(rx, trace);
    expect(list).toHaveLength(2);
    expect(server.parentSpanId).toBe(parent);
    expect(client.parentSpanId).toBe(server.spanId);
    expect(client.spanId).toBe(routerParent);
    expect(server.name).toBe('POST /api/v1/routes/decide');
    expect(server.attrs).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/api/v1/routes/decide',
      'url.path': '/api/v1/routes/decide',
      'http.response.status_code': 200,
      'beamline.tenant_id': tenant,
      'beamline.request_id': r.headers['x-request-id'],
    });
    expect(server.status).toBeUndefined();
    expect(client.name).toBe('send beamline.router.v1.decide');
    expect(client.attrs).toMatchObject({
      'messaging.system': 'nats',
      'messaging.destination.name': 'beamline.router.v1.decide',
      'messaging.operation.type': 'send',
      'beamline.router.outcome': 'ok',
      'beamline.tenant_id': tenant,
    });
    // The client span lies within the server span.
    expect(BigInt(client.startTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(server.startTimeUnixNano));
    expect(BigInt(client.endTimeUnixNano)).toBeLessThanOrEqual(BigInt(server.endTimeUnixNano));
    expect(server.resource['service.name']).toBe('gw-under-test');
    expect(server.scope.name).toBe('beamline.gateway');
    expect(rx.errors).toEqual([]);
  });

  test('without a traceparent the trace id is the request trace id (X-Trace-ID, 32 hex or a UUID) and the server span is a root', async () => {
    const trace = hex(16);
    const r = await post(gw.url, { body: ECHO(), headers: { 'X-Trace-ID': trace.toUpperCase() } });
    expect(r.status).toBe(200);
    expect(r.json.decision.metadata.headers.traceparent).toMatch(new RegExp(`^00-${trace}-[0-9a-f]{16}-01$`));
    const uuid = crypto.randomUUID();
    const r2 = await post(gw.url, { body: ECHO(), headers: { 'X-Trace-ID': uuid } });
    expect(r2.status).toBe(200);
    const uuidTrace = uuid.replace(/-/g, '');
    await rx.waitFor(() => spansOf(rx, trace).list.length >= 2 && spansOf(rx, uuidTrace).list.length >= 2);
    for (const t of [trace, uuidTrace]) {
      const { server, client } = spansOf(rx, t);
      expect(server.parentSpanId).toBeUndefined();
      expect(client.parentSpanId).toBe(server.spanId);
    }
    expect(rx.errors).toEqual([]);
  });

  test('errors: a Router error is ERROR on both spans; a 400 has only a server span, not an error', async () => {
    const trace = hex(16);
    const r = await post(gw.url, {
      body: decideBody({ context: { router_mode: 'error:internal' } }),
      headers: { 'X-Trace-ID': trace },
    });
    expect(r.status).toBe(500);
    const bad = hex(16);
    const r2 = await post(gw.url, { body: '{"version":"2"}', headers: { 'X-Trace-ID': bad } });
    expect(r2.status).toBe(400);
    await rx.waitFor(() => spansOf(rx, trace).list.length >= 2 && spansOf(rx, bad).list.length >= 1);
    const { server, client } = spansOf(rx, trace);
    expect(server.status).toEqual({ code: 2, message: 'HTTP 500' });
    expect(server.attrs['http.response.status_code']).toBe(500);
    expect(client.status).toEqual({ code: 2, message: 'internal' });
    expect(client.attrs['error.type']).toBe('internal');
    const b = spansOf(rx, bad);
    expect(b.list).toHaveLength(1);
    expect(b.server.status).toBeUndefined();
    expect(b.server.attrs['http.response.status_code']).toBe(400);
    expect(rx.errors).toEqual([]);
  });

  test('a parent that is not sampled (flags 00) is followed: nothing exported, the Router still gets a context', async () => {
    const trace = hex(16);
    const r = await post(gw.url, { body: ECHO(), headers: { traceparent: `00-${trace}-${hex(8)}-00` } });
    expect(r.status).toBe(200);
    expect(r.json.decision.metadata.headers.traceparent).toMatch(new RegExp(`^00-${trace}-[0-9a-f]{16}-00$`));
    // A later sampled request's spans arrive; the unsampled one's never do.
    const later = hex(16);
    await post(gw.url, { body: ECHO(), headers: { 'X-Trace-ID': later } });
    await rx.waitFor(() => spansOf(rx, later).list.length >= 2);
    expect(spansOf(rx, trace).list).toHaveLength(0);
  });

  test('batching: many spans per POST, exported count in /metrics', async () => {
    const before = rx.posts.length;
    const traces = [];
    await Promise.all(
      Array.from({ length: 30 }, () => {
        const t = hex(16);
        traces.push(t);
        return post(gw.url, { headers: { 'X-Trace-ID': t } });
      }),
    );
    await rx.waitFor(() => traces.every((t) => spansOf(rx, t).list.length === 2));
    const posts = rx.posts.slice(before);
    const spans = posts.reduce((n, p) => n + p.spans.length, 0);
    expect(spans).toBeGreaterThanOrEqual(60);
    expect(posts.length).toBeLessThan(spans / 2);
    expect(Math.max(...posts.map((p) => p.spans.length))).toBeGreaterThan(2);
    const s = await scrape(gw.url);
    expect(value(s, 'gateway_tracing_spans_exported_total')).toBeGreaterThanOrEqual(rx.spans.length);
    expect(rx.errors).toEqual([]);
  });
});

describe('sampling ratio 0', () => {
  let rx;
  let gw;
  beforeAll(async () => {
    rx = await startOtlpReceiver();
    gw = await tracedGateway(rx, { env: { OTEL_TRACES_SAMPLER_ARG: '0' } });
  });
  afterAll(async () => {
    await gw.stop();
    await rx.stop();
  });

  test('root requests are not exported; a sampled parent still is (parent-based)', async () => {
    const roots = [];
    for (let i = 0; i < 10; i++) {
      const t = hex(16);
      roots.push(t);
      const r = await post(gw.url, { body: ECHO(), headers: { 'X-Trace-ID': t } });
      expect(r.json.decision.metadata.headers.traceparent).toMatch(new RegExp(`^00-${t}-[0-9a-f]{16}-00$`));
    }
    const parented = hex(16);
    await post(gw.url, { headers: { traceparent: `00-${parented}-${hex(8)}-01` } });
    await rx.waitFor(() => spansOf(rx, parented).list.length === 2);
    expect(rx.spans.filter((s) => roots.includes(s.traceId))).toHaveLength(0);
    expect(rx.errors).toEqual([]);
  });
});

describe('batch size and the queue bound', () => {
  let rx;
  let gw;
  beforeAll(async () => {
    // A collector that takes 6 s per POST keeps the worker's exporter busy while requests queue.
    rx = await startOtlpReceiver({ mode: 'slow', slowMs: 6000 });
    gw = await tracedGateway(rx, { tracing: { batch_size: 4, queue_size: 10, timeout_ms: 8000 } });
  });
  afterAll(async () => {
    await gw.stop();
    await rx.stop();
  });

  test('no POST carries more than batch_size spans; spans beyond the queue are dropped and counted', async () => {
    // Wait until a POST carries this request's spans: the exporter then waits for the slow answer
    // with an empty queue (a POST alone is not enough: the decide of waitDecideOk may have made
    // the first one, with this request's spans still queued behind it).
    const first = hex(16);
    await post(gw.url, { headers: { 'X-Trace-ID': first } });
    await rx.waitFor(() => rx.posts.some((p) => p.spans.some((sp) => sp.traceId === first)), 15000);
    const rs = await Promise.all(Array.from({ length: 20 }, () => post(gw.url)));
    expect(rs.every((r) => r.status === 200)).toBe(true);
    // 20 requests × 2 spans, a queue of 10 spans, no flush finished meanwhile: 30 dropped (counted
    // in the log phase, which may run a moment after the response).
    let dropped = 0;
    for (let i = 0; i < 40 && dropped < 30; i++) {
      dropped = value(await scrape(gw.url), 'gateway_tracing_spans_dropped_total', { reason: 'queue_full' }) || 0;
      if (dropped < 30) await sleep(50);
    }
    expect(dropped).toBe(30);
    // The queued ones still go out, at most batch_size per POST (the collector now answers at once).
    rx.mode = 'ok';
    await rx.waitFor(() => rx.posts.reduce((n, p) => n + p.spans.length, 0) >= 12, 15000);
    expect(Math.max(...rx.posts.map((p) => p.spans.length))).toBeLessThanOrEqual(4);
    expect(rx.errors).toEqual([]);
  });
});

describe('collector down, failing or slow', () => {
  test('down: requests are answered as usual, spans dropped and counted as export_failed', async () => {
    const gw = await tracedGateway(null);
    try {
      const t0 = Date.now();
      const rs = await Promise.all(Array.from({ length: 20 }, () => post(gw.url)));
      expect(rs.every((r) => r.status === 200)).toBe(true);
      expect(Date.now() - t0).toBeLessThan(5000);
      let dropped = 0;
      for (let i = 0; i < 50 && dropped < 40; i++) {
        await sleep(100);
        dropped = value(await scrape(gw.url), 'gateway_tracing_spans_dropped_total', { reason: 'export_failed' }) || 0;
      }
      expect(dropped).toBeGreaterThanOrEqual(40);
      expect(gw.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
    } finally {
      await gw.stop();
    }
  });

  test('a collector answering 503, then one slower than timeout_ms: batches dropped, decide latency unaffected', async () => {
    const rx = await startOtlpReceiver({ mode: 'fail', slowMs: 3000 });
    const gw = await tracedGateway(rx, { tracing: { timeout_ms: 300 } });
    try {
      await Promise.all(Array.from({ length: 5 }, () => post(gw.url)));
      await rx.waitFor(() => rx.posts.length > 0);
      rx.mode = 'slow';
      const times = [];
      for (let i = 0; i < 20; i++) {
        const t0 = Date.now();
        const r = await post(gw.url);
        times.push(Date.now() - t0);
        expect(r.status).toBe(200);
      }
      // The slow collector (3 s per POST) never shows in a request's time.
      expect(Math.max(...times)).toBeLessThan(1000);
      let dropped = 0;
      for (let i = 0; i < 50 && dropped < 50; i++) {
        await sleep(100);
        dropped = value(await scrape(gw.url), 'gateway_tracing_spans_dropped_total', { reason: 'export_failed' }) || 0;
      }
      expect(dropped).toBeGreaterThanOrEqual(50);
      expect(value(await scrape(gw.url), 'gateway_tracing_spans_exported_total')).toBe(0);
    } finally {
      await gw.stop();
      await rx.stop();
    }
  });
});

test('off by default, and OTEL_SDK_DISABLED=true wins over an endpoint: the client traceparent goes to the Router unchanged', async () => {
  const rx = await startOtlpReceiver();
  const gw = await tracedGateway(rx, { env: { OTEL_SDK_DISABLED: 'true' } });
  try {
    const tp = `00-${hex(16)}-${hex(8)}-01`;
    const r = await post(gw.url, { body: ECHO(), headers: { traceparent: tp } });
    expect(r.json.decision.metadata.headers.traceparent).toBe(tp);
    const none = await post(gw.url, { body: ECHO() });
    expect(none.json.decision.metadata.headers.traceparent).toBeUndefined();
    await sleep(400);
    expect(rx.posts).toHaveLength(0);
    const s = await request(gw.url, { path: '/metrics' });
    expect(s.body).toMatch(/^gateway_tracing_spans_exported_total 0$/m);
  } finally {
    await gw.stop();
    await rx.stop();
  }
});

test('a collector given by host name (localhost, from the hosts file) receives the spans (issue 18)', async () => {
  const rx = await startOtlpReceiver();
  const port = new URL(rx.url).port;
  const gw = await tracedGateway(null, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://localhost:${port}` } });
  try {
    const t = hex(16);
    expect((await post(gw.url, { headers: { 'X-Trace-ID': t } })).status).toBe(200);
    await rx.waitFor(() => spansOf(rx, t).list.length === 2);
    expect(spansOf(rx, t).server).toBeDefined();
  } finally {
    await gw.stop();
    await rx.stop();
  }
});
