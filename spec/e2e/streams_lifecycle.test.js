'use strict';
// Streams across the gateway's and NATS's life (CONTRACT §11): subscriptions held per tenant and
// released with the last stream (nats-server's monitoring endpoint), NATS killed and back
// (streams stay open, new events arrive), and a reload with many streams open (old workers
// exit, EventSource clients reconnect, no error answers).
const http = require('http');
const { startNats, startRouter, stopAll } = require('../support/processes');
const { startGateway, request, waitDecideOk, alive } = require('../support/gateway');
const { post, decideBody } = require('../support/api');
const { sseClients, rawStream, dechunk, until, sleep } = require('../support/sse');
const { workerPids } = require('../../scripts/lib/nginx');

const MSG = '/api/v1/messages/stream';
// 200 as the issue asks; the EventSource process and nginx share 2 cores with other jobs.
const RELOAD_STREAMS = 200;

let es;
afterAll(async () => {
  if (es) await es.stop();
  await stopAll();
});
beforeAll(async () => {
  es = await sseClients();
});

function getJson(port, p) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p }, (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve(JSON.parse(b)));
      })
      .on('error', reject);
  });
}

/** Subjects the gateway's connections hold on the server (connz?subs=1), sorted. */
async function gatewaySubjects(nats) {
  const c = await getJson(nats.httpPort, '/connz?subs=1&limit=1000');
  const subs = [];
  for (const conn of c.connections || []) {
    if (conn.name !== 'beamline-gateway') continue;
    for (const s of conn.subscriptions_list || []) subs.push(s);
  }
  return subs.filter((s) => !s.startsWith('_INBOX.')).sort();
}

const streamsConfig = (raw) => {
  raw.routes = { streams: { rate_limit: { limit: 100000, window_seconds: 60 } } };
  raw.streams = { max_per_tenant: 1000 };
};

describe('subscriptions', () => {
  let nats;
  let gw;
  beforeAll(async () => {
    nats = await startNats({ httpPort: true });
    await startRouter({ natsUrl: nats.url });
    gw = await startGateway({ natsUrl: nats.url, workers: 1, configure: streamsConfig });
    await waitDecideOk(gw);
  });

  test('one subscription per tenant while it has streams; UNSUB after the last one ends', async () => {
    const EV = 'beamline.gateway.v1.events';
    expect(await gatewaySubjects(nats)).toEqual(['caf.exec.result.v1']);
    const a1 = rawStream(gw.port, `${MSG}?tenant_id=sub.a`);
    const a2 = rawStream(gw.port, `${MSG}?tenant_id=sub.a`);
    const b1 = rawStream(gw.port, `${MSG}?tenant_id=sub-b`);
    for (const s of [a1, a2, b1]) await until(() => dechunk(s.text()).includes(': connected'), 'connected');
    await until(async () => (await gatewaySubjects(nats)).length === 3, 'three subscriptions');
    expect(await gatewaySubjects(nats)).toEqual(['beamline.gateway.v1.events.sub%2Ea', `${EV}.sub-b`, 'caf.exec.result.v1']);
    const h = await request(gw.url, { path: '/health' });
    expect(h.json.nats.subscriptions).toBe(3);
    a1.close();
    await sleep(300);
    // one stream of sub.a is still open: its subscription stays
    expect(await gatewaySubjects(nats)).toContain(`${EV}.sub%2Ea`);
    a2.close();
    b1.close();
    await until(async () => (await gatewaySubjects(nats)).length === 1, 'the tenant subscriptions released', 5000, 100);
    expect(await gatewaySubjects(nats)).toEqual(['caf.exec.result.v1']);
    expect((await request(gw.url, { path: '/health' })).json.nats.subscriptions).toBe(1);
  });

  test('NATS killed and back: the stream stays open and new events arrive again', async () => {
    const s = es.open(`${gw.url}${MSG}?tenant_id=kill-t&heartbeat_ms=1000`);
    await s.waitOpen();
    await sleep(150);
    expect((await post(gw.url, { tenant: 'kill-t', body: decideBody({ request_id: 'before-kill' }) })).status).toBe(200);
    await s.waitFor('message_created', (m) => m.lastEventId === 'before-kill');
    const port = nats.port;
    const httpPort = nats.httpPort;
    await nats.stop();
    // the decide fails while NATS is down; the stream does not end
    const down = await post(gw.url, { tenant: 'kill-t', body: decideBody({ request_id: 'while-down' }) });
    expect(down.status).toBe(503);
    await sleep(1500);
    nats = await startNats({ port, httpPort });
    await until(
      async () => (await post(gw.url, { tenant: 'kill-t', body: decideBody({ request_id: `probe-${Date.now()}` }) })).status === 200,
      'decide after NATS came back',
      20000,
      200,
    );
    // the tenant subscription was sent again with the new session
    await until(async () => (await gatewaySubjects(nats)).includes('beamline.gateway.v1.events.kill-t'), 'the re-SUB', 5000, 100);
    expect((await post(gw.url, { tenant: 'kill-t', body: decideBody({ request_id: 'after-back' }) })).status).toBe(200);
    await s.waitFor('message_created', (m) => m.lastEventId === 'after-back', 5000);
    // one connection the whole time
    expect(s.opens()).toBe(1);
    expect(s.of('error')).toHaveLength(0);
    s.close();
  }, 60000);
});

describe('reload', () => {
  test(`a reload with ${RELOAD_STREAMS} streams open: old workers exit, clients reconnect, no error answers`, async () => {
    const nats = await startNats();
    await startRouter({ natsUrl: nats.url });
    const gw = await startGateway({
      natsUrl: nats.url,
      workers: 2,
      configure: (raw) => {
        streamsConfig(raw);
        raw.server = { ...raw.server, worker_shutdown_timeout_seconds: 30 };
      },
    });
    await waitDecideOk(gw);
    const clients = [];
    for (let i = 0; i < RELOAD_STREAMS; i++) clients.push(es.open(`${gw.url}${MSG}?tenant_id=rl-${i % 4}`));
    await until(() => clients.every((c) => c.opens() >= 1), `${RELOAD_STREAMS} streams open`, 30000, 100);
    const oldWorkers = workerPids(gw.pid);
    expect(oldWorkers.length).toBe(2);
    const t0 = Date.now();
    gw.reload();
    // old workers exit: their streams end within 1 s of the reload (plus this machine's load)
    await until(() => oldWorkers.every((p) => !alive(p)), 'the old workers to exit', 10000, 50);
    const exitMs = Date.now() - t0;
    // every client comes back (retry: 3000) to a new worker
    await until(() => clients.every((c) => c.opens() >= 2), 'every client reconnected', 30000, 100);
    for (const c of clients) {
      // errors are the stream ends (readyState CONNECTING again), never an HTTP error answer
      for (const e of c.of('error')) expect(e.status).toBeUndefined();
    }
    // and the reconnected streams work
    await sleep(150);
    expect((await post(gw.url, { tenant: 'rl-1', body: decideBody({ request_id: 'after-reload' }) })).status).toBe(200);
    await until(
      () => clients.filter((c, i) => i % 4 === 1).every((c) => c.of('message_created').some((m) => m.lastEventId === 'after-reload')),
      'the event on every rl-1 stream',
      10000,
    );
    for (const c of clients) c.close();
    expect(gw.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
    process.stdout.write(`reload with ${RELOAD_STREAMS} streams: old workers gone after ${exitMs} ms\n`);
  }, 120000);
});
