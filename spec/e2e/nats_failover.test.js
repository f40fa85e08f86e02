'use strict';
// End-to-end, issue 4: the NATS connection under trouble, through real HTTP
// `POST /api/v1/routes/decide` against real nginx + real nats-server(s) + the reference Router:
// nats-server SIGKILLed and restarted under load, one server of a cluster stopped under load,
// and `nginx -s reload` under load. Every load loop is bounded by count and time.
const { startGateway, request, waitReady, waitDecideOk, alive } = require('../support/gateway');
const { startNats, startNatsCluster, startRouter, stopAll } = require('../support/processes');
const { startLoad, send, decideBody, failures, sleep } = require('../support/load');
const { workerPids } = require('../../scripts/lib/nginx');

const DECIDE = '/api/v1/routes/decide';
// A NATS server killed under the gateway: nginx itself logs the reset of the timer's socket.
const NATS_LOST = /(recv|send|connect)\(\) failed .*context: ngx\.timer/;
const TENANT = 't-nats';
const HEADERS = { 'content-type': 'application/json', 'x-tenant-id': TENANT };

function configure(extra) {
  return (raw) => {
    raw.routes = { ...(raw.routes || {}) };
    raw.routes.decide = { ...(raw.routes.decide || {}), rate_limit: { limit: 1000000000, window_seconds: 60 } };
    if (extra) extra(raw);
  };
}

const decideReq = (id, mode) => ({ method: 'POST', path: DECIDE, headers: HEADERS, body: decideBody(id, mode) });

const fmt = (n) => n.toFixed(0);

describe('nats-server SIGKILLed and restarted under load', () => {
  let nats;
  let gw;
  beforeAll(async () => {
    nats = await startNats();
    await startRouter({ natsUrl: nats.url });
    gw = await startGateway({ natsUrl: nats.url, configure: configure(), expectErrorLog: NATS_LOST });
    await waitReady(gw);
    await waitDecideOk(gw);
  });
  afterAll(() => stopAll());

  test("in-flight requests fail fast with 503; new requests succeed within 2 s of the server's return", async () => {
    const load = startLoad({
      url: gw.url,
      concurrency: 8,
      count: 200000,
      durationMs: 6000,
      record: true,
      pauseOnFailureMs: 5,
      request: (i) => decideReq(`kill-${i}`),
    });
    await sleep(800);
    // Requests parked at the Router (3 s, timeout 5 s): certainly in flight at the kill.
    const inflight = Array.from({ length: 20 }, (_, k) =>
      send(false, gw.url, decideReq(`parked-${k}`, 'delay:3000'), 10000).then((r) => ({ ...r, end: performance.now() })),
    );
    await sleep(300);
    const tKill = performance.now();
    expect(nats.kill('SIGKILL')).toBe(true);
    await nats.waitExit(5000);
    const parked = await Promise.all(inflight);
    const parkedAfterKill = parked.map((r) => r.end - tKill);
    const downHealth = await request(gw.url, { path: '/health' });
    const downReady = await request(gw.url, { path: '/readyz' });

    await sleep(300); // the server stays down a moment: new requests get 503 (after a short hold, see below)
    await nats.restart();
    const tUp = performance.now();
    const stats = await load.done;
    const health = await request(gw.url, { path: '/health' });

    // --- the parked requests
    for (const r of parked) {
      expect(r.status).toBe(503);
      expect(r.json.error.code).toBe('unavailable');
      expect(r.headers['retry-after']).toBe('1');
    }
    // parked at the Router for 3 s with a 5 s timeout: answered right after the kill instead
    console.log(
      `kill: 20 requests in flight (Router delay 3000 ms, timeout 5000 ms) answered 503 ` +
        `${fmt(Math.min(...parkedAfterKill))}–${fmt(Math.max(...parkedAfterKill))} ms after the SIGKILL`,
    );
    expect(Math.max(...parkedAfterKill)).toBeLessThan(1500);

    // --- the load loop
    const recs = stats.records;
    const before = recs.filter((x) => x.end < tKill);
    const hitByKill = recs.filter((x) => x.start < tKill && x.end >= tKill);
    const down = recs.filter((x) => x.start >= tKill && x.start < tUp);
    const firstOk = recs.filter((x) => x.start >= tKill && x.status === 200).sort((a, b) => a.end - b.end)[0];
    const recoveryMs = firstOk ? firstOk.end - tUp : Infinity;
    const after2s = recs.filter((x) => x.start >= tUp + 2000);
    const killLatency = hitByKill.map((x) => x.end - tKill);
    const downMs = down.filter((x) => x.status === 503).map((x) => x.end - x.start);
    const nonOk = (xs) => xs.filter((x) => x.status !== 200).length;
    console.log(
      `kill under load: ${stats.completed} requests ${JSON.stringify(stats.statuses)} errors ${stats.errors}; ` +
        `before kill ${before.length} (non-200 ${nonOk(before)}); in flight at the kill ${hitByKill.length} ` +
        `(answered ${fmt(Math.max(0, ...killLatency))} ms after it at worst); during the outage ${down.length} (non-200 ${nonOk(down)}, each 503 within ${fmt(Math.max(0, ...downMs))} ms); ` +
        `first 200 ${fmt(recoveryMs)} ms after the server was back; ${after2s.length} requests started ≥2 s later, non-200 ${nonOk(after2s)}`,
    );
    expect(stats.errors).toBe(0);
    expect(nonOk(before)).toBe(0);
    // every failure is a 503, never a 504 or a 5xx of another kind
    for (const s of Object.keys(stats.statuses)) expect(['200', '503']).toContain(s);
    // in flight at the kill: answered at once, not at their timeout
    for (const x of hitByKill) expect(x.end - tKill).toBeLessThan(1500);
    // while NATS is down a new request is held at most for one reconnect pass, then refused
    expect(Math.max(0, ...downMs)).toBeLessThan(1500);
    expect(recoveryMs).toBeLessThan(2000);
    expect(after2s.length).toBeGreaterThan(50);
    expect(nonOk(after2s)).toBe(0);
    // §6/§10 while down, and reconnected to the same server afterwards
    expect(downHealth.json).toMatchObject({ status: 'degraded', nats: { connected: false, server: null } });
    expect(downReady.status).toBe(503);
    expect(downReady.json).toEqual({ status: 'unready', reason: 'nats_disconnected' });
    expect(health.json).toMatchObject({ status: 'healthy', nats: { connected: true, server: `127.0.0.1:${nats.port}` } });
  }, 30000);
});

describe('two-server cluster, one server stopped under load', () => {
  let cluster;
  let gw;
  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 2 });
    gw = await startGateway({ natsUrl: cluster.urls, configure: configure(), expectErrorLog: NATS_LOST });
    await waitReady(gw);
  });
  afterAll(() => stopAll());

  test('traffic continues on the other server; failures limited to requests in flight on the dropped connection', async () => {
    const h0 = await request(gw.url, { path: '/health' });
    const victim = cluster.servers.find((s) => `127.0.0.1:${s.port}` === h0.json.nats.server);
    const survivor = cluster.servers.find((s) => s !== victim);
    expect(victim).toBeDefined();
    // The Router sits on the surviving server: what is measured is the gateway's failover.
    await startRouter({ natsUrl: survivor.url });
    await waitDecideOk(gw);

    const concurrency = 8;
    const load = startLoad({
      url: gw.url,
      concurrency,
      count: 200000,
      durationMs: 4000,
      record: true,
      request: (i) => decideReq(`cl-${i}`),
    });
    await sleep(1500);
    const tStop = performance.now();
    await victim.stop();
    const tStopped = performance.now();
    const stats = await load.done;
    const h1 = await request(gw.url, { path: '/health' });

    const recs = stats.records;
    const bad = recs.filter((x) => x.status !== 200);
    const after = recs.filter((x) => x.start > tStopped);
    const inFlightAtStop = recs.filter((x) => x.start < tStopped && x.end >= tStop);
    const badNotInFlight = bad.filter((x) => !inFlightAtStop.includes(x));
    const lastBadEnd = bad.length ? Math.max(...bad.map((x) => x.end)) - tStop : 0;
    console.log(
      `cluster failover: ${stats.completed} requests ${JSON.stringify(stats.statuses)} errors ${stats.errors}; ` +
        `failed ${bad.length} (bound: ${concurrency} in flight; in flight during the stop ${inFlightAtStop.length}, failures among the others ${badNotInFlight.length}), last failure ${fmt(lastBadEnd)} ms after the stop began ` +
        `(stop took ${fmt(tStopped - tStop)} ms); ${after.length} requests after the stop; now on ${h1.json.nats.server}`,
    );
    expect(stats.errors).toBe(0);
    for (const s of Object.keys(stats.statuses)) expect(['200', '503']).toContain(s);
    expect(bad.length).toBeLessThanOrEqual(concurrency);
    expect(badNotInFlight).toHaveLength(0);
    expect(after.length).toBeGreaterThan(100);
    expect(h1.json.nats).toEqual({ connected: true, server: `127.0.0.1:${survivor.port}` });
  }, 30000);
});

describe('nginx -s reload under load', () => {
  let gw;
  beforeAll(async () => {
    const nats = await startNats();
    await startRouter({ natsUrl: nats.url });
    // a long shutdown backstop, so an old worker that lingers shows up as one
    gw = await startGateway({
      expectErrorLog: NATS_LOST,
      natsUrl: nats.url,
      configure: configure((raw) => {
        raw.server = { ...raw.server, worker_shutdown_timeout_seconds: 60 };
      }),
    });
    await waitReady(gw);
    await waitDecideOk(gw);
  });
  afterAll(() => stopAll());

  test('drops no request and the old workers exit', async () => {
    const gen0 = workerPids(gw.pid);
    expect(gen0).toHaveLength(1);
    // keep-alive clients (the usual case) and clients opening a connection per request
    const common = { url: gw.url, count: 100000, durationMs: 4500, request: (i) => decideReq(`rl-${i}`) };
    const kaLoad = startLoad({ ...common, concurrency: 12 });
    const freshLoad = startLoad({
      ...common,
      concurrency: 4,
      keepAlive: false,
      retryReusedReset: false,
      request: (i) => decideReq(`rlf-${i}`),
    });
    const exits = [];
    /** reload; resolve with the new generation; note when the old workers are gone */
    const reloadOnce = async () => {
      const old = workerPids(gw.pid);
      const t = performance.now();
      gw.reload();
      let fresh = [];
      for (let k = 0; k < 250 && !(fresh = workerPids(gw.pid).filter((p) => !old.includes(p))).length; k++) await sleep(20);
      exits.push(
        (async () => {
          while (old.some(alive) && performance.now() - t < 15000) await sleep(25);
          return { old, ms: performance.now() - t, gone: !old.some(alive) };
        })(),
      );
      return fresh;
    };
    await sleep(1000);
    const gen1 = await reloadOnce();
    expect(gen1).toHaveLength(1);
    await sleep(1500);
    const gen2 = await reloadOnce();
    expect(gen2).toHaveLength(1);
    const [ka, fresh] = await Promise.all([kaLoad.done, freshLoad.done]);
    const exited = await Promise.all(exits);
    const now = workerPids(gw.pid);
    console.log(
      `reload x2 under load: keep-alive ${ka.completed} requests ${JSON.stringify(ka.statuses)} errors ${ka.errors} ` +
        `(idle keep-alive connections closed by the old worker as a request went out, retried on a new connection: ${ka.retries}` +
        `${ka.errorSamples.length ? `; errors: ${JSON.stringify(ka.errorSamples)}` : ''}); ` +
        `new connection per request ${fresh.completed} requests ${JSON.stringify(fresh.statuses)} errors ${fresh.errors}` +
        `${fresh.errorSamples.length ? ` ${JSON.stringify(fresh.errorSamples)}` : ''}; ` +
        `old workers exited ${exited.map((e) => `${e.old.join(',')} after ${fmt(e.ms)} ms`).join(' and ')} ` +
        `(worker_shutdown_timeout 60 s); workers now ${now.join(',')}`,
    );
    expect(ka.completed + fresh.completed).toBeGreaterThan(2000);
    expect(fresh.completed).toBeGreaterThan(200);
    expect(failures(ka)).toBe(0);
    expect(failures(fresh)).toBe(0);
    expect(ka.statuses).toEqual({ 200: ka.completed });
    expect(fresh.statuses).toEqual({ 200: fresh.completed });
    for (const e of exited) {
      expect(e.gone).toBe(true);
      expect(e.ms).toBeLessThan(8000);
    }
    expect(now).toEqual(gen2);
    expect(gw.errorLog()).not.toMatch(/\[error\]|\[crit\]|\[alert\]|writing a global/);
  }, 40000);
});
