'use strict';
// Realtime streams (CONTRACT §11) on the real stack: nginx with the compiled Lua, nats-server,
// the reference Router publishing ExecResults, a second gateway instance on the same NATS, a
// real EventSource client (spec/support/sse-client.mjs) and raw sockets for the exact bytes.
const fs = require('fs');
const path = require('path');
const { connect, headers: natsHeaders } = require('nats');
const { startNats, startRouter, stopAll } = require('../support/processes');
const { startGateway, request, waitDecideOk } = require('../support/gateway');
const { post, decideBody, sha256, scrape, value } = require('../support/api');
const { sseClients, rawStream, dechunk, until, sleep } = require('../support/sse');

const MSG = '/api/v1/messages/stream';
const RES = '/api/v1/results/stream';
const KEY_A = 'stream-key-tenant-a-0123456789';
const KEY_B = 'stream-key-tenant-b-0123456789';

let nats;
let gw;
let gw2;
let es;
let nc;

const streamsConfig = (raw) => {
  raw.routes = { streams: { rate_limit: { limit: 100000, window_seconds: 60 } } };
  raw.streams = { max_buffered_bytes: 262144 };
};

beforeAll(async () => {
  nats = await startNats({ httpPort: true });
  await startRouter({ natsUrl: nats.url, args: ['--results-ms', '50'] });
  gw = await startGateway({ natsUrl: nats.url, workers: 2, configure: streamsConfig });
  gw2 = await startGateway({ natsUrl: nats.url, workers: 1, configure: streamsConfig });
  await waitDecideOk(gw);
  await waitDecideOk(gw2);
  es = await sseClients();
  nc = await connect({ servers: nats.url });
}, 60000);

afterAll(async () => {
  if (nc) await nc.close();
  if (es) await es.stop();
  await stopAll();
});

const decide = (url, tenant, extra = {}) => post(url, { tenant, body: decideBody(extra) });

/** Publishes an ExecResult straight on the results subject. */
function publishResult(result, tenant) {
  const h = natsHeaders();
  if (tenant !== undefined) h.set('tenant_id', tenant);
  nc.publish('caf.exec.result.v1', typeof result === 'string' ? result : JSON.stringify(result), { headers: h });
  return nc.flush();
}

describe('framing (raw socket)', () => {
  test('200 with the SSE headers; the first bytes at once; message_created and comment heartbeats', async () => {
    const s = rawStream(gw.port, `${MSG}?tenant_id=raw-t&heartbeat_ms=1000`, { 'X-Trace-ID': 'ab'.repeat(16) });
    try {
      await until(() => dechunk(s.text()).length > 0, 'the first bytes', 3000);
      const text = s.text();
      const head = text.slice(0, text.indexOf('\r\n\r\n') + 2).toLowerCase();
      expect(head).toMatch(/^http\/1\.1 200 ok\r\n/);
      expect(head).toContain('content-type: text/event-stream\r\n');
      expect(head).toContain('cache-control: no-cache\r\n');
      expect(head).toContain('x-accel-buffering: no\r\n');
      expect(head).toContain(`x-trace-id: ${'ab'.repeat(16)}\r\n`);
      expect(head).toMatch(/x-request-id: [0-9a-f-]{36}\r\n/);
      expect(head).not.toContain('content-length');
      expect(dechunk(text)).toBe('retry: 3000\n: connected\n\n');

      await sleep(150);
      const r = await decide(gw2.url, 'raw-t', { request_id: 'raw-req-1', message_id: 'm-1' });
      expect(r.status).toBe(200);
      await until(() => dechunk(s.text()).includes('event: message_created'), 'the event', 3000);
      const body = dechunk(s.text());
      const m = body.match(/id: raw-req-1\nevent: message_created\ndata: (\{[^\n]*\})\n\n/);
      expect(m).not.toBeNull();
      const data = JSON.parse(m[1]);
      expect(data).toEqual({
        tenant_id: 'raw-t',
        request_id: 'raw-req-1',
        message_id: 'm-1',
        trace_id: r.headers['x-trace-id'],
        route: 'decide',
        ts: expect.any(Number),
        response: JSON.parse(r.body),
      });
      expect(Math.abs(data.ts - Date.now())).toBeLessThan(5000);
      await until(() => dechunk(s.text()).endsWith(': heartbeat\n\n'), 'a heartbeat', 3000);
    } finally {
      s.close();
    }
  });

  test('results stream: id: <sequence>, data heartbeats', async () => {
    const s = rawStream(gw.port, `${RES}?tenant_id=raw-r&request_id=rr-1&heartbeat_ms=200`);
    try {
      await until(() => dechunk(s.text()).includes('"heartbeat":true'), 'a data heartbeat', 3000);
      expect(dechunk(s.text())).toMatch(/^retry: 3000\n: connected\n\ndata: \{"heartbeat":true,"ts":\d{13}\}\n\n/);
      await sleep(120);
      await publishResult({ request_id: 'rr-1', tenant_id: 'raw-r', provider_id: 'p1', status: 'success' });
      await publishResult({ request_id: 'rr-1', tenant_id: 'raw-r', provider_id: 'p2', status: 'success' });
      await until(() => (dechunk(s.text()).match(/\nid: \d+\n/g) || []).length >= 2, 'two results', 3000);
      const body = dechunk(s.text());
      expect(body).toContain('id: 1\ndata: {');
      expect(body).toContain('id: 2\ndata: {');
      const d = JSON.parse(body.match(/id: 1\ndata: (\{[^\n]*\})\n\n/)[1]);
      expect(d).toEqual({ request_id: 'rr-1', tenant_id: 'raw-r', provider_id: 'p1', status: 'success' });
    } finally {
      s.close();
    }
  });
});

describe('EventSource', () => {
  test('a decide on a second gateway instance reaches the stream on the first; tenants are isolated', async () => {
    const a = es.open(`${gw.url}${MSG}?tenant_id=iso.a`);
    const b = es.open(`${gw.url}${MSG}`, { headers: { 'X-Tenant-ID': 'iso-b' } });
    await a.waitOpen();
    await b.waitOpen();
    await sleep(150);
    expect((await decide(gw2.url, 'iso.a', { request_id: 'iso-a-1' })).status).toBe(200);
    expect((await decide(gw2.url, 'iso-b', { request_id: 'iso-b-1' })).status).toBe(200);
    expect((await post(gw.url, { path: '/api/v1/messages', tenant: 'iso.a', body: decideBody({ request_id: 'iso-a-2' }) })).status).toBe(
      200,
    );
    const ea2 = await a.waitFor('message_created', (m) => m.lastEventId === 'iso-a-2');
    const eb1 = await b.waitFor('message_created', (m) => m.lastEventId === 'iso-b-1');
    expect(JSON.parse(ea2.data)).toMatchObject({ tenant_id: 'iso.a', request_id: 'iso-a-2', route: 'messages', message_id: null });
    expect(JSON.parse(eb1.data).tenant_id).toBe('iso-b');
    // every event of a stream is its own tenant's, each exactly once
    expect(a.of('message_created').map((m) => m.lastEventId)).toEqual(['iso-a-1', 'iso-a-2']);
    expect(b.of('message_created').map((m) => m.lastEventId)).toEqual(['iso-b-1']);
    a.close();
    b.close();
  });

  test('an idempotent replay publishes no second event', async () => {
    const a = es.open(`${gw.url}${MSG}?tenant_id=idem-t`);
    await a.waitOpen();
    await sleep(150);
    const h = { 'Idempotency-Key': 'k-stream-1' };
    expect((await post(gw.url, { tenant: 'idem-t', headers: h, body: decideBody({ request_id: 'idem-1' }) })).status).toBe(200);
    const replay = await post(gw.url, { tenant: 'idem-t', headers: h, body: decideBody({ request_id: 'idem-1' }) });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect((await decide(gw.url, 'idem-t', { request_id: 'idem-2' })).status).toBe(200);
    await a.waitFor('message_created', (m) => m.lastEventId === 'idem-2');
    expect(a.of('message_created').map((m) => m.lastEventId)).toEqual(['idem-1', 'idem-2']);
    a.close();
  });

  test('decide, then the reference Router result on the results stream (replayed: it came first)', async () => {
    const r = await decide(gw.url, 'res-t', { request_id: 'res-flow-1' });
    expect(r.status).toBe(200);
    // the Router publishes 50 ms after its reply: open the stream once it is surely kept
    await sleep(400);
    const s = es.open(`${gw.url}${RES}?tenant_id=res-t&request_id=res-flow-1&once=true`);
    const m = await s.waitFor('message');
    expect(m.lastEventId).toBe('1');
    const result = JSON.parse(m.data);
    expect(result).toMatchObject({
      request_id: 'res-flow-1',
      assignment_id: 'asg-res-flow-1',
      tenant_id: 'res-t',
      provider_id: JSON.parse(r.body).decision.provider_id,
      status: 'success',
    });
    // once=true: the server ended the stream after that result; EventSource reconnects
    // (retry: 3000) and gets the replay again: exactly one result per connection
    await s.waitFor('error');
    s.close();
  });

  test('results filters: tenant, assignment_id, provider_id, provider_exclude; invalid results counted', async () => {
    const before = await scrape(gw.url);
    const byReq = es.open(`${gw.url}${RES}?tenant_id=flt&request_id=f-1&provider_exclude=bad,worse`);
    const byAsg = es.open(`${gw.url}${RES}?tenant_id=flt&assignment_id=a-1&provider_id=good`);
    await byReq.waitOpen();
    await byAsg.waitOpen();
    await sleep(150);
    await publishResult({ request_id: 'f-1', assignment_id: 'a-1', provider_id: 'good', n: 1 }, 'other-tenant'); // header wins
    await publishResult({ request_id: 'f-1', assignment_id: 'a-1', provider_id: 'bad', n: 2, tenant_id: 'flt' });
    await publishResult({ request_id: 'f-1', provider_id: 'worse', n: 3, tenant_id: 'flt' });
    await publishResult({ request_id: 'f-1', assignment_id: 'a-1', n: 4 }); // no tenant: never delivered
    await publishResult('not json', 'flt');
    await publishResult({ provider_id: 'good', tenant_id: 'flt' }); // neither id
    await publishResult({ request_id: 'f-1', assignment_id: 'a-1', provider_id: 'good', n: 5, tenant_id: 'flt' });
    await byReq.waitFor('message', (m) => JSON.parse(m.data).n === 5);
    await byAsg.waitFor('message', (m) => JSON.parse(m.data).n === 5);
    expect(byReq.of('message').map((m) => JSON.parse(m.data).n)).toEqual([5]);
    expect(byAsg.of('message').map((m) => JSON.parse(m.data).n)).toEqual([5]);
    // both workers received both invalid messages (each worker subscribes)
    await until(
      async () => {
        const after = await scrape(gw.url);
        const k = { stream: 'results', reason: 'invalid_result' };
        return value(after, 'gateway_sse_dropped_total', k) - (value(before, 'gateway_sse_dropped_total', k) || 0) === 4;
      },
      'gateway_sse_dropped_total{reason="invalid_result"} +4',
      5000,
      200,
    );
    byReq.close();
    byAsg.close();
  });

  test('close_after_ms ends the stream', async () => {
    const s = rawStream(gw.port, `${RES}?tenant_id=ca&request_id=x&close_after_ms=300`);
    await until(() => s.text().endsWith('0\r\n\r\n'), 'the final chunk', 3000);
    expect(dechunk(s.text())).toBe('retry: 3000\n: connected\n\n');
    s.close();
  });
});

describe('refusals before the stream starts', () => {
  const get = (url, p, headers = {}, method = 'GET') => request(url, { path: p, headers, method });

  test.each([
    ['no tenant anywhere', `${MSG}`, {}, { header: 'X-Tenant-ID' }, 'missing X-Tenant-ID header'],
    ['header and query differ', `${MSG}?tenant_id=a`, { 'X-Tenant-ID': 'b' }, { field: 'tenant_id' }, null],
    ['bad tenant in the query', `${MSG}?tenant_id=a%20b`, {}, { field: 'tenant_id' }, null],
    ['bad tenant header', `${MSG}`, { 'X-Tenant-ID': 'a/b' }, { header: 'X-Tenant-ID' }, null],
    ['repeated tenant_id', `${MSG}?tenant_id=a&tenant_id=a`, {}, { field: 'tenant_id' }, null],
    ['heartbeat_ms too small (messages)', `${MSG}?tenant_id=a&heartbeat_ms=999`, {}, { field: 'heartbeat_ms' }, null],
    ['heartbeat_ms not an integer', `${RES}?tenant_id=a&request_id=r&heartbeat_ms=1e3`, {}, { field: 'heartbeat_ms' }, null],
    ['results without ids', `${RES}?tenant_id=a`, {}, { field: 'request_id' }, null],
    ['results request_id too long', `${RES}?tenant_id=a&request_id=${'x'.repeat(129)}`, {}, { field: 'request_id' }, null],
    ['close_after_ms too small', `${RES}?tenant_id=a&request_id=r&close_after_ms=99`, {}, { field: 'close_after_ms' }, null],
    ['once not a boolean', `${RES}?tenant_id=a&request_id=r&once=yes`, {}, { field: 'once' }, null],
  ])('400: %s', async (_name, p, headers, details, message) => {
    const r = await get(gw.url, p, headers);
    expect(r.status).toBe(400);
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.json.error).toMatchObject({ code: 'invalid_request', details });
    if (message) expect(r.json.error.message).toBe(message);
    expect(r.headers['x-trace-id']).toMatch(/^[0-9a-f]{32}$/);
  });

  test.each(['POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS'])('405 for %s with Allow: GET', async (method) => {
    for (const p of [MSG, RES]) {
      const r = await get(gw.url, `${p}?tenant_id=a`, {}, method);
      expect(r.status).toBe(405);
      expect(r.headers.allow).toBe('GET');
      if (method !== 'HEAD') expect(r.json.error.code).toBe('method_not_allowed');
    }
  });

  describe('auth', () => {
    let gwl;
    beforeAll(async () => {
      gwl = await startGateway({
        natsUrl: nats.url,
        workers: 1,
        configure: (raw) => {
          raw.auth = {
            enabled: true,
            api_keys: [
              { tenant_id: 'cap-a', key_sha256: sha256(KEY_A) },
              { tenant_id: 'cap-b', key_sha256: sha256(KEY_B) },
            ],
          };
        },
      });
    });

    test("401 without a key, 403 with another tenant's key; the query api_key is never logged", async () => {
      const r1 = await get(gwl.url, `${MSG}?tenant_id=cap-a`);
      expect(r1.status).toBe(401);
      expect(r1.json.error.code).toBe('unauthorized');
      const r2 = await get(gwl.url, `${MSG}?tenant_id=cap-a&api_key=wrong-key`);
      expect(r2.status).toBe(401);
      const r3 = await get(gwl.url, `${MSG}?tenant_id=cap-a&api_key=${KEY_B}`);
      expect(r3.status).toBe(403);
      expect(r3.json.error.code).toBe('forbidden');
      const r4 = await get(gwl.url, `${RES}?tenant_id=cap-a&request_id=x&close_after_ms=100&api_key=${KEY_A}`);
      expect(r4.status).toBe(200);
      expect(r4.body).toBe('retry: 3000\n: connected\n\n');
      await sleep(300);
      const logs = fs.readdirSync(path.join(gwl.prefix, 'logs')).map((f) => fs.readFileSync(path.join(gwl.prefix, 'logs', f), 'utf8'));
      const all = logs.join('\n');
      expect(all).toContain('"route":"results_stream"');
      expect(all).not.toContain(KEY_A);
      expect(all).not.toContain(KEY_B);
      expect(all).not.toContain('wrong-key');
    });
  });

  describe('caps', () => {
    let gwc;
    beforeAll(async () => {
      gwc = await startGateway({
        natsUrl: nats.url,
        workers: 1,
        configure: (raw) => {
          raw.routes = { streams: { rate_limit: { limit: 100000, window_seconds: 60 } } };
          raw.streams = { max_per_tenant: 2, max_per_worker: 3 };
        },
      });
    });

    test('per-tenant cap → 429 rate_limit_exceeded, per-worker cap → 503 unavailable; both free again when streams end', async () => {
      const open = (tenant) => rawStream(gwc.port, `${MSG}?tenant_id=${tenant}`);
      const ok = async (s) => until(() => dechunk(s.text()).includes(': connected'), 'connected');
      const a1 = open('ca');
      const a2 = open('ca');
      await ok(a1);
      await ok(a2);
      const r1 = await get(gwc.url, `${MSG}?tenant_id=ca`);
      expect(r1.status).toBe(429);
      expect(r1.json.error).toMatchObject({ code: 'rate_limit_exceeded', details: { limit: 2 } });
      const b1 = open('cb');
      await ok(b1);
      const r2 = await get(gwc.url, `${MSG}?tenant_id=cc`);
      expect(r2.status).toBe(503);
      expect(r2.headers['retry-after']).toBe('1');
      expect(r2.json.error.code).toBe('unavailable');
      a1.close();
      const again = await until(async () => {
        const r = await get(gwc.url, `${RES}?tenant_id=ca&request_id=x&close_after_ms=100`);
        return r.status === 200 ? r : null;
      }, 'a free slot');
      expect(again.body).toBe('retry: 3000\n: connected\n\n');
      a2.close();
      b1.close();
    });
  });

  test('429 from the route limit of `streams` (no stream opened)', async () => {
    const gwr = await startGateway({
      natsUrl: nats.url,
      configure: (raw) => {
        raw.routes = { streams: { rate_limit: { limit: 2, window_seconds: 3600 } } };
      },
    });
    const p = `${RES}?tenant_id=rl&request_id=x&close_after_ms=100`;
    expect((await get(gwr.url, p)).status).toBe(200);
    expect((await get(gwr.url, p)).status).toBe(200);
    const r = await get(gwr.url, p);
    expect(r.status).toBe(429);
    expect(r.headers['retry-after']).toMatch(/^\d+$/);
    expect(r.json.error.details).toMatchObject({ endpoint: RES, limit: 2, window_seconds: 3600 });
  });
});

describe('slow clients and metrics', () => {
  test('a client that does not read is cut off; another stream of the tenant keeps receiving', async () => {
    const before = await scrape(gw.url);
    const slow = rawStream(gw.port, `${MSG}?tenant_id=slow-t`);
    await until(() => dechunk(slow.text()).includes(': connected'), 'slow connected');
    slow.sock.pause();
    const good = es.open(`${gw.url}${MSG}?tenant_id=slow-t`);
    await good.waitOpen();
    await sleep(150);
    // 300 events of 32 KiB straight on the tenant's subject (9.4 MiB), at a pace a reading
    // client follows: far more than the kernel buffers and max_buffered_bytes (256 KiB here)
    const filler = 'x'.repeat(32768);
    for (let i = 1; i <= 300; i++) {
      const h = natsHeaders();
      h.set('request_id', `big-${i}`);
      nc.publish('beamline.gateway.v1.events.slow-t', JSON.stringify({ i, filler }), { headers: h });
      await nc.flush();
      await sleep(2);
    }
    await good
      .waitFor('message_created', (m) => m.lastEventId === 'big-300', 20000)
      .catch(async (e) => {
        const m = await scrape(gw.url);
        throw new Error(
          `${e.message}; got ${good.of('message_created').length}, ${JSON.stringify(good.of('error'))}, slow_client drops ${value(m, 'gateway_sse_dropped_total', { stream: 'messages', reason: 'slow_client' })}`,
        );
      });
    expect(good.of('message_created')).toHaveLength(300);
    await until(
      async () => {
        const after = await scrape(gw.url);
        const k = { stream: 'messages', reason: 'slow_client' };
        return value(after, 'gateway_sse_dropped_total', k) - (value(before, 'gateway_sse_dropped_total', k) || 0) === 1;
      },
      'one slow_client drop',
      10000,
      200,
    );
    // the connection was closed: reading what is left ends without the final chunk
    slow.sock.resume();
    await until(() => slow.ended(), 'the slow connection closed', 10000);
    expect(slow.text().endsWith('0\r\n\r\n')).toBe(false);
    good.close();
  }, 60000);

  test('gateway_sse_connections and gateway_sse_events_total, gateway_nats_subscriptions', async () => {
    const s1 = es.open(`${gw.url}${MSG}?tenant_id=met-t`);
    const s2 = es.open(`${gw.url}${RES}?tenant_id=met-t&request_id=met-1`);
    await s1.waitOpen();
    await s2.waitOpen();
    await until(
      async () => {
        const m = await scrape(gw.url);
        return (
          value(m, 'gateway_sse_connections', { stream: 'messages' }) >= 1 &&
          value(m, 'gateway_sse_connections', { stream: 'results' }) >= 1
        );
      },
      'the connection gauges',
      5000,
      200,
    );
    const m = await scrape(gw.url);
    // 2 workers, each: the results subject; plus one tenant subscription on the stream's worker
    expect(value(m, 'gateway_nats_subscriptions')).toBeGreaterThanOrEqual(3);
    expect(value(m, 'gateway_sse_events_total', { stream: 'messages' })).toBeGreaterThan(0);
    s1.close();
    s2.close();
  });
});

test('no [error]/[crit]/[alert] line in either gateway error log after all of the above', () => {
  for (const g of [gw, gw2]) expect(g.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
});
