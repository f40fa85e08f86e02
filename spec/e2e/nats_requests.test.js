'use strict';
// End-to-end, issue 4: the per-worker persistent multiplexed NATS connection, seen through real
// HTTP `POST /api/v1/routes/decide` against real nginx (1 worker) + real nats-server + the
// reference Router. This file: what goes over NATS (payload and headers), no responders,
// timeouts and late replies, 500 requests in flight on one connection, /health and /readyz.
const http = require('http');
const { startGateway, request } = require('../support/gateway');
const { startNats, startRouter, stopAll } = require('../support/processes');
const { send, decideBody, sleep } = require('../support/load');

const DECIDE = '/api/v1/routes/decide';
const TENANT = 't-nats';

/** Raises the rate limit out of the way (other engineers may enable it) — these tests are about NATS. */
function configure(extra) {
  return (raw) => {
    raw.routes = { ...(raw.routes || {}) };
    raw.routes.decide = { ...(raw.routes.decide || {}), rate_limit: { limit: 1000000000, window_seconds: 60 } };
    if (extra) extra(raw);
  };
}

function decide(gw, body, headers = {}) {
  return request(gw.url, {
    method: 'POST',
    path: DECIDE,
    headers: { 'content-type': 'application/json', 'x-tenant-id': TENANT, ...headers },
    body,
  });
}

async function timed(fn) {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

describe('decide over the persistent NATS connection', () => {
  let nats;
  let router;
  let gw; // request timeout 5000 ms (the default)
  let gwShort; // request timeout 400 ms, same NATS and Router

  beforeAll(async () => {
    nats = await startNats();
    router = await startRouter({ natsUrl: nats.url });
    gw = await startGateway({ natsUrl: nats.url, configure: configure() });
    gwShort = await startGateway({
      natsUrl: nats.url,
      configure: configure((raw) => {
        raw.router = { ...(raw.router || {}), request_timeout_ms: 400 };
      }),
    });
    // both workers connect in the background right after start
    for (const g of [gw, gwShort]) {
      const deadline = Date.now() + 5000;
      while ((await request(g.url, { path: '/readyz' })).status !== 200) {
        if (Date.now() > deadline) throw new Error(`gateway never became ready:\n${g.errorLog()}`);
        await sleep(20);
      }
    }
  });
  afterAll(() => stopAll());

  test('round trip: the Router receives the payload and exactly the contract NATS headers', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const tracestate = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';
    const body = JSON.stringify({
      version: '1',
      request_id: 'rt-1',
      task: { type: 'chat', payload: { text: 'héllo', n: 3, nested: { ok: true } } },
      policy_id: 'default',
      context: { router_mode: 'echo', user_id: 'u1' },
    });
    const r = await decide(gw, body, {
      'x-trace-id': 'ABCDEF0123456789ABCDEF0123456789',
      traceparent,
      tracestate,
    });
    expect(r.status).toBe(200);
    expect(r.headers['x-request-id']).toBe('rt-1');
    expect(r.headers['x-trace-id']).toBe('abcdef0123456789abcdef0123456789');
    const seen = r.json.decision.metadata;
    expect(seen.subject).toBe('beamline.router.v1.decide');
    // one wildcard inbox per worker, one token per request
    expect(seen.reply).toMatch(/^_INBOX\.[0-9a-f]+\.\d+$/);
    expect(seen.request).toEqual({
      version: '1',
      tenant_id: TENANT,
      request_id: 'rt-1',
      trace_id: 'abcdef0123456789abcdef0123456789',
      task: { type: 'chat', payload: { text: 'héllo', n: 3, nested: { ok: true } } },
      policy_id: 'default',
      context: { router_mode: 'echo', user_id: 'u1' },
    });
    expect(seen.headers).toEqual({
      trace_id: 'abcdef0123456789abcdef0123456789',
      tenant_id: TENANT,
      request_id: 'rt-1',
      version: '1',
      traceparent,
      tracestate,
    });
    expect(r.json.context).toEqual({ request_id: 'rt-1', trace_id: 'abcdef0123456789abcdef0123456789' });
  });

  test('round trip: without trace context (or with an invalid traceparent) exactly the four headers go out', async () => {
    const plain = await decide(gw, decideBody('rt-2', 'echo'), { 'x-request-id': 'ignored-by-body' });
    expect(plain.status).toBe(200);
    const h1 = plain.json.decision.metadata.headers;
    expect(Object.keys(h1).sort()).toEqual(['request_id', 'tenant_id', 'trace_id', 'version']);
    expect(h1).toMatchObject({ tenant_id: TENANT, request_id: 'rt-2', version: '1' });
    expect(h1.trace_id).toMatch(/^[0-9a-f]{32}$/);
    expect(h1.trace_id).toBe(plain.headers['x-trace-id']);
    // the metadata object is forwarded and mirrored into message{} (§4)
    expect(plain.json.decision.metadata.request.metadata).toEqual({ router_mode: 'echo' });

    const bad = await decide(gw, decideBody('rt-3', 'echo'), {
      traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // zero trace id: invalid
      tracestate: 'a=b',
    });
    expect(bad.status).toBe(200);
    expect(Object.keys(bad.json.decision.metadata.headers).sort()).toEqual(['request_id', 'tenant_id', 'trace_id', 'version']);
  });

  test('timeout: a silent Router gives 504 after the configured 400 ms, not before', async () => {
    const [r, ms] = await timed(() => decide(gwShort, decideBody('to-1', 'silence')));
    console.log(`timeout: 504 after ${ms.toFixed(0)} ms (configured 400 ms)`);
    expect(r.status).toBe(504);
    expect(r.json.error.code).toBe('timeout');
    expect(r.json.context.request_id).toBe('to-1');
    expect(ms).toBeGreaterThanOrEqual(380);
    expect(ms).toBeLessThan(3000);
  });

  test('timeout: a late reply is dropped and the following requests get their own replies', async () => {
    // Three requests whose replies come 700 ms late (timeout 400 ms) …
    const late = await Promise.all([0, 1, 2].map((k) => decide(gwShort, decideBody(`late-${k}`, 'delay:700'))));
    for (const r of late) expect(r.status).toBe(504);
    // … then, while those replies arrive (~300 ms from now), a stream of fresh requests.
    const t0 = performance.now();
    const results = [];
    let k = 0;
    while (performance.now() - t0 < 900) {
      const id = `after-late-${k++}`;
      const batch = await Promise.all(
        [0, 1, 2, 3].map((j) =>
          decide(gwShort, decideBody(`${id}-${j}`, j % 2 ? 'echo' : undefined)).then((r) => ({ id: `${id}-${j}`, r })),
        ),
      );
      results.push(...batch);
    }
    console.log(`late replies: ${results.length} requests sent during the late-reply window, all checked`);
    expect(results.length).toBeGreaterThanOrEqual(8);
    for (const { id, r } of results) {
      expect(r.status).toBe(200);
      expect(r.json.context.request_id).toBe(id);
    }
    // and the connection is still healthy
    const h = await request(gwShort.url, { path: '/health' });
    expect(h.json.nats.connected).toBe(true);
  });

  test('500 concurrent requests on one worker: all 200, each reply matched to its own request', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 500 });
    const n = 500;
    const t0 = performance.now();
    // Replies come back 0–200 ms late in a scrambled order, so they overlap on the connection
    // and arrive out of order; half are echoed, so the Router's view is checked too.
    const all = await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const id = `c500-${i}-${Math.random().toString(36).slice(2, 8)}`;
        const mode = i % 2 ? 'echo' : `delay:${(i * 37) % 201}`;
        return send(
          agent,
          gw.url,
          {
            method: 'POST',
            path: DECIDE,
            headers: { 'content-type': 'application/json', 'x-tenant-id': TENANT },
            body: decideBody(id, mode),
          },
          20000,
        ).then((r) => ({ id, mode, r }));
      }),
    );
    const ms = performance.now() - t0;
    agent.destroy();
    const statuses = {};
    let matched = 0;
    for (const { id, mode, r } of all) {
      const s = r.error ? `error:${r.error.message}` : r.status;
      statuses[s] = (statuses[s] || 0) + 1;
      if (
        r.status === 200 &&
        r.json.context.request_id === id &&
        r.headers['x-request-id'] === id &&
        (mode !== 'echo' || r.json.decision.metadata.headers.request_id === id)
      )
        matched++;
    }
    console.log(`500 concurrent: ${JSON.stringify(statuses)}, matched ${matched}/${n}, in ${ms.toFixed(0)} ms`);
    expect(statuses).toEqual({ 200: n });
    expect(matched).toBe(n);
    expect(new Set(all.map((x) => x.r.json.context.request_id)).size).toBe(n);
    // 250 of them wait up to 200 ms at the Router: serial would take > 25 s
    expect(ms).toBeLessThan(15000);
  });

  test('/health shows the connected server; /readyz is ready', async () => {
    const h = await request(gw.url, { path: '/health' });
    expect(h.status).toBe(200);
    expect(h.json).toMatchObject({
      status: 'healthy',
      service: 'beamline-gateway',
      nats: { connected: true, server: `127.0.0.1:${nats.port}` },
    });
    const r = await request(gw.url, { path: '/readyz' });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ status: 'ready' });
  });

  test("requests that arrive before a new worker's first connect are held until it is up, not refused", async () => {
    // nats-server frozen: the new worker's TCP connect succeeds but the handshake (INFO) waits
    const tFreeze = performance.now();
    expect(nats.kill('SIGSTOP')).toBe(true);
    let fresh;
    let results;
    let tCont;
    try {
      fresh = await startGateway({
        natsUrl: nats.url,
        configure: configure((raw) => {
          raw.nats = { ...(raw.nats || {}), connect_timeout_ms: 8000 };
        }),
      });
      const pending = Array.from({ length: 10 }, (_, k) =>
        send(
          false,
          fresh.url,
          {
            method: 'POST',
            path: DECIDE,
            headers: { 'content-type': 'application/json', 'x-tenant-id': TENANT },
            body: decideBody(`held-${k}`),
          },
          10000,
        ),
      );
      await sleep(300);
      const ready = await request(fresh.url, { path: '/readyz' });
      expect(ready.json).toEqual({ status: 'unready', reason: 'nats_disconnected' });
      tCont = performance.now();
      nats.kill('SIGCONT');
      results = await Promise.all(pending);
    } finally {
      nats.kill('SIGCONT');
    }
    const after = results.map((r) => r.ms);
    console.log(
      `held at start: ${results.filter((r) => r.status === 200).length}/10 answered 200 after ${Math.min(...after).toFixed(0)}–${Math.max(...after).toFixed(0)} ms ` +
        `(nats-server frozen ${(tCont - tFreeze).toFixed(0)} ms, from before nginx started)`,
    );
    for (const [k, r] of results.entries()) {
      expect(r.status).toBe(200);
      expect(r.json.context.request_id).toBe(`held-${k}`);
      expect(r.ms).toBeGreaterThanOrEqual(250); // they really waited for the connection
    }
    await fresh.stop();
  });

  test('no responders (Router stopped): 503 unavailable with Retry-After: 1, well under the timeout', async () => {
    await router.stop();
    const times = [];
    for (let k = 0; k < 5; k++) {
      const [r, ms] = await timed(() => decide(gw, decideBody(`nr-${k}`)));
      times.push(ms);
      expect(r.status).toBe(503);
      expect(r.headers['retry-after']).toBe('1');
      expect(r.json.error).toEqual({
        code: 'unavailable',
        message: 'no Router is listening', // no internal subject name
        intake_error_code: null,
        details: {},
      });
      expect(r.json.context.request_id).toBe(`nr-${k}`);
    }
    console.log(`no responders: 503 in ${times.map((t) => t.toFixed(1)).join(', ')} ms (timeout 5000 ms)`);
    expect(Math.max(...times)).toBeLessThan(1000);
    // the connection itself stays up: still ready, and the Router's return is seen at once
    expect((await request(gw.url, { path: '/readyz' })).status).toBe(200);
    await router.restart();
    const deadline = Date.now() + 5000;
    let r;
    do {
      r = await decide(gw, decideBody('nr-back'));
    } while (r.status !== 200 && Date.now() < deadline && (await sleep(20)) === undefined);
    expect(r.status).toBe(200);
  });

  test('the Lua raised no errors', () => {
    for (const g of [gw, gwShort]) {
      expect(g.errorLog()).not.toMatch(/\[error\]|\[crit\]|\[alert\]|writing a global/);
    }
  });
});
