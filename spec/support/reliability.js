'use strict';
/**
 * Reliability scenarios of issue 8 on the real stack (nginx + nats-server + the reference Router),
 * shared by `scripts/reliability.js` (full profile) and `spec/reliability/*.test.js` (CI profile).
 * Each scenario starts its own processes (spec/support/processes.js registry), runs a load the
 * whole time, counts and classifies every response, and stops what it started.
 *
 * A scenario returns a row:
 *   { scenario, sent, answered: {status: n}, errors (transport), beyond (failures the contract
 *     does not allow), beyondSamples, recovery_ms, details: {…}, note }
 *
 * What the contract allows, per scenario, is documented next to each function and in
 * docs/RELIABILITY.md.
 */
const net = require('net');
const { startGateway, request, waitReady, waitDecideOk, alive, memKb } = require('./gateway');

// The scenarios kill NATS servers under the gateway on purpose: nginx logs the lost timer socket.
const NATS_LOST = /(recv|send|connect)\(\) failed .*context: ngx\.timer/;
const { startNats, startNatsCluster, startRouter, startRouterClient, stopAll } = require('./processes');
const { startLoad, startOpenLoad, send, decideBody, sleep } = require('./load');
const { scrape, value } = require('./api');
const { workerPids } = require('../../scripts/lib/nginx');

const DECIDE = '/api/v1/routes/decide';
const HEADERS = { 'content-type': 'application/json', 'x-tenant-id': 't-rel' };
const decideReq = (id, mode) => ({ method: 'POST', path: DECIDE, headers: HEADERS, body: decideBody(id, mode) });

/** Profiles: `ci` fits the jest suite (~60 s for the chaos scenarios on 2 cores), `full` the script. */
const PROFILES = {
  ci: {
    loadMs: 5000,
    concurrency: 8,
    downMs: 800,
    graceMs: 2000,
    silence: { phaseMs: 4000, rps: 400, timeoutMs: 1000 },
    reloads: 10,
    quit: { parked: 20, delayMs: 1500 },
    slow: { timeoutS: 4, slowloris: 200, slowBody: 50, phaseMs: 3000, concurrency: 8, cap: 96 },
    memory: { requests: 50000, warmup: 5000, concurrency: 16 },
    fuzz: 10000,
  },
  full: {
    loadMs: 20000,
    concurrency: 16,
    downMs: 2000,
    graceMs: 2000,
    silence: { phaseMs: 15000, rps: 1000, timeoutMs: 1000 },
    reloads: 10,
    quit: { parked: 100, delayMs: 3000 },
    slow: { timeoutS: 10, slowloris: 1000, slowBody: 200, phaseMs: 8000, concurrency: 16, cap: 300 },
    memory: { requests: 1000000, warmup: 50000, concurrency: 32 },
    fuzz: 100000,
  },
};

function unlimited(extra) {
  return (raw) => {
    raw.routes = { ...(raw.routes || {}) };
    raw.routes.decide = { ...(raw.routes.decide || {}), rate_limit: { limit: 1000000000, window_seconds: 60 } };
    raw.routes.messages = { ...(raw.routes.messages || {}), rate_limit: { limit: 1000000000, window_seconds: 60 } };
    if (extra) extra(raw);
  };
}

/** nats-server + reference Router + a gateway without rate limits (plus `extra`), ready to serve. */
async function readyStack(extra) {
  const nats = await startNats();
  await startRouter({ natsUrl: nats.url });
  const gw = await startGateway({ natsUrl: nats.url, configure: unlimited(extra), expectErrorLog: NATS_LOST });
  await waitReady(gw);
  await waitDecideOk(gw);
  return { nats, gw };
}

function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

const r1 = (x) => (Number.isFinite(x) ? Math.round(x * 10) / 10 : x);

function merge(into, statuses) {
  for (const [k, v] of Object.entries(statuses)) into[k] = (into[k] || 0) + v;
  return into;
}

/** Keeps a handful of examples of what went beyond the contract. */
function sample(list, fmt, n = 5) {
  return list.slice(0, n).map(fmt);
}

// ------------------------------------------------------------------------------------------
// 1. nats-server SIGKILLed and restarted under load
//    Allowed: 200; 503 `unavailable` for requests in flight at the kill or started while the
//    server is down, up to graceMs after it is back (the Router reconnects too). Nothing else.
// ------------------------------------------------------------------------------------------
async function natsKillRestart(p) {
  try {
    const { nats, gw } = await readyStack();
    const load = startLoad({
      url: gw.url,
      concurrency: p.concurrency,
      count: 1e9,
      durationMs: p.loadMs,
      record: true,
      pauseOnFailureMs: 5,
      request: (i) => decideReq(`kill-${i}`),
    });
    await sleep(p.loadMs * 0.3);
    const tKill = performance.now();
    nats.kill('SIGKILL');
    await nats.waitExit(5000);
    await sleep(p.downMs);
    await nats.restart();
    const tUp = performance.now();
    const stats = await load.done;
    const recs = stats.records;
    const beyond = recs.filter((x) => x.error || (x.status !== 200 && !(x.status === 503 && x.end >= tKill && x.start < tUp + p.graceMs)));
    const firstOk = recs.filter((x) => x.start >= tKill && x.status === 200).sort((a, b) => a.end - b.end)[0];
    const outage = recs.filter((x) => x.end >= tKill && x.start < tUp);
    return {
      scenario: 'nats-server killed (SIGKILL) and restarted',
      sent: stats.completed,
      answered: stats.statuses,
      errors: stats.errors,
      beyond: beyond.length,
      beyondSamples: sample(beyond, (x) => `${x.status || x.error} at +${(x.start - tKill).toFixed(0)} ms from the kill`),
      recovery_ms: firstOk ? r1(firstOk.end - tUp) : null,
      details: {
        down_ms: r1(tUp - tKill),
        during_outage: outage.length,
        outage_503_max_ms: r1(Math.max(0, ...outage.filter((x) => x.status === 503).map((x) => x.end - Math.max(x.start, tKill)))),
      },
      note: 'recovery = first 200 after the server was back',
    };
  } finally {
    await stopAll();
  }
}

// ------------------------------------------------------------------------------------------
// 2. One node of a three-node NATS cluster SIGKILLed under load (the node the gateway is on;
//    the Router sits on another node, so what is measured is the gateway's failover).
//    Allowed: 200; 503 only for requests in flight on the dropped connection.
// ------------------------------------------------------------------------------------------
async function clusterNodeKill(p) {
  try {
    const cluster = await startNatsCluster({ size: 3 });
    const gw = await startGateway({ natsUrl: cluster.urls, configure: unlimited(), expectErrorLog: NATS_LOST });
    await waitReady(gw);
    const h0 = await request(gw.url, { path: '/health' });
    const victim = cluster.servers.find((s) => `127.0.0.1:${s.port}` === h0.json.nats.server);
    const survivors = cluster.servers.filter((s) => s !== victim);
    await startRouter({ natsUrl: survivors[0].url });
    await waitDecideOk(gw, 10000);
    const load = startLoad({
      url: gw.url,
      concurrency: p.concurrency,
      count: 1e9,
      durationMs: p.loadMs,
      record: true,
      pauseOnFailureMs: 5,
      request: (i) => decideReq(`cl-${i}`),
    });
    await sleep(p.loadMs * 0.4);
    const tKill = performance.now();
    victim.kill('SIGKILL');
    await victim.waitExit(5000);
    const tDead = performance.now();
    const stats = await load.done;
    const h1 = await request(gw.url, { path: '/health' });
    const recs = stats.records;
    const inFlight = (x) => x.start < tDead && x.end >= tKill;
    const beyond = recs.filter((x) => x.error || (x.status !== 200 && !(x.status === 503 && inFlight(x))));
    const firstOk = recs.filter((x) => x.start >= tDead && x.status === 200).sort((a, b) => a.end - b.end)[0];
    return {
      scenario: 'one node of a 3-node NATS cluster killed (SIGKILL)',
      sent: stats.completed,
      answered: stats.statuses,
      errors: stats.errors,
      beyond: beyond.length,
      beyondSamples: sample(beyond, (x) => `${x.status || x.error} at +${(x.start - tKill).toFixed(0)} ms from the kill`),
      recovery_ms: firstOk ? r1(firstOk.end - tKill) : null,
      details: {
        failed_in_flight: recs.filter((x) => x.status === 503 && inFlight(x)).length,
        concurrency: p.concurrency,
        moved_to: h1.json && h1.json.nats.server,
        from: h0.json.nats.server,
      },
      note: 'recovery = first 200 after the kill (reconnect to another node)',
    };
  } finally {
    await stopAll();
  }
}

// ------------------------------------------------------------------------------------------
// 3. 30% of the requests go to the Router's `silence` mode (no reply: 504 after the route's
//    timeout) while the rest keep their latency. Open-loop load at a fixed rate (a silent request
//    does not hold back the next one, so rps × 30% × timeout requests wait at once): a baseline
//    phase (0% silent) and a mixed phase at the same rate; the normal requests' p50/p99 compared.
//    Allowed: normal → 200, silent → 504 `timeout`.
// ------------------------------------------------------------------------------------------
async function silenceShare(p) {
  const s = p.silence;
  try {
    const { gw } = await readyStack((raw) => {
      raw.routes.decide.timeout_ms = s.timeoutMs;
    });
    const silent = (i) => i % 10 < 3;
    const phase = async (share) => {
      const st = await startOpenLoad({
        url: gw.url,
        rps: s.rps,
        durationMs: s.phaseMs,
        request: (i) => decideReq(`sil-${share}-${i}`, share && silent(i) ? 'silence' : undefined),
      }).done;
      const normal = st.records.filter((x) => !(share && silent(x.i)));
      const quiet = st.records.filter((x) => share && silent(x.i));
      const lat = normal.filter((x) => x.status === 200).map((x) => x.end - x.start);
      return { st, normal, quiet, p50: pct(lat, 50), p99: pct(lat, 99), rps: normal.length / (st.elapsedMs / 1000) };
    };
    // warm-up at the same rate (connections of the keep-alive pool, JIT), not counted
    await startOpenLoad({ url: gw.url, rps: s.rps, durationMs: 1000, request: (i) => decideReq(`sil-warm-${i}`) }).done;
    const base = await phase(0);
    const mixed = await phase(30);
    // in-flight waiters return to 0 once the silent requests have timed out
    await sleep(s.timeoutMs + 300);
    const m = await scrape(gw.url);
    const beyondList = [
      ...base.normal.filter((x) => x.status !== 200),
      ...mixed.normal.filter((x) => x.status !== 200),
      ...mixed.quiet.filter((x) => x.status !== 504),
    ];
    const silentMs = mixed.quiet.filter((x) => x.status === 504).map((x) => x.end - x.start);
    return {
      scenario: `30% of requests to a silent Router (timeout ${s.timeoutMs} ms)`,
      sent: base.st.completed + mixed.st.completed,
      answered: merge(merge({}, base.st.statuses), mixed.st.statuses),
      errors: base.st.errors + mixed.st.errors,
      beyond: beyondList.length,
      beyondSamples: sample(beyondList, (x) => `${x.status || x.error} (i ${x.i})`),
      recovery_ms: null,
      details: {
        rps: s.rps,
        silent_waiting_at_once: Math.round(s.rps * 0.3 * (s.timeoutMs / 1000)),
        baseline_normal: { n: base.normal.length, p50_ms: r1(base.p50), p99_ms: r1(base.p99) },
        mixed_normal: { n: mixed.normal.length, p50_ms: r1(mixed.p50), p99_ms: r1(mixed.p99) },
        mixed_silent: { n: mixed.quiet.length, p50_ms: r1(pct(silentMs, 50)), max_ms: r1(Math.max(0, ...silentMs)) },
        in_flight_after: value(m, 'gateway_nats_requests_in_flight'),
      },
      note: 'normal p50/p99 with vs. without the silent share',
    };
  } finally {
    await stopAll();
  }
}

// ------------------------------------------------------------------------------------------
// 4. Ten `nginx -s reload`s in a row under load (keep-alive clients and a new connection per
//    request). Allowed: 200 only. A request that met an idle keep-alive connection being closed
//    by an old worker is retried once on a new connection (HTTP's rule; counted in `retries`).
// ------------------------------------------------------------------------------------------
async function reloadsInARow(p) {
  try {
    const { gw } = await readyStack((raw) => {
      raw.server = { ...raw.server, worker_shutdown_timeout_seconds: 30 };
    });
    // the load runs until a second after the last reload
    const common = { url: gw.url, count: 1e9, durationMs: 600000, request: (i) => decideReq(`rl-${i}`) };
    const ka = startLoad({ ...common, concurrency: Math.max(4, p.concurrency - 4) });
    const fresh = startLoad({
      ...common,
      concurrency: 4,
      keepAlive: false,
      retryReusedReset: false,
      request: (i) => decideReq(`rlf-${i}`),
    });
    await sleep(Math.min(1000, p.loadMs * 0.2));
    const exits = [];
    const t0 = performance.now();
    for (let k = 0; k < p.reloads; k++) {
      const old = workerPids(gw.pid);
      const t = performance.now();
      gw.reload();
      for (let w = 0; w < 500 && !workerPids(gw.pid).some((x) => !old.includes(x)); w++) await sleep(10);
      exits.push(
        (async () => {
          while (old.some(alive) && performance.now() - t < 30000) await sleep(20);
          return { ms: performance.now() - t, gone: !old.some(alive) };
        })(),
      );
    }
    const reloadsMs = performance.now() - t0;
    await sleep(1000);
    ka.stop();
    fresh.stop();
    const [a, b] = await Promise.all([ka.done, fresh.done]);
    const ex = await Promise.all(exits);
    const workersNow = workerPids(gw.pid);
    const statuses = merge(merge({}, a.statuses), b.statuses);
    const non200 = Object.entries(statuses)
      .filter(([s]) => s !== '200')
      .reduce((n, [, c]) => n + c, 0);
    return {
      scenario: `${p.reloads} × nginx -s reload in a row`,
      sent: a.completed + b.completed,
      answered: statuses,
      errors: a.errors + b.errors,
      beyond: non200 + a.errors + b.errors,
      beyondSamples: [...a.errorSamples, ...b.errorSamples].slice(0, 5),
      recovery_ms: null,
      details: {
        reloads_took_ms: r1(reloadsMs),
        old_workers_gone: ex.every((e) => e.gone),
        slowest_old_worker_exit_ms: r1(Math.max(...ex.map((e) => e.ms))),
        keepalive_retries: a.retries,
        workers_now: workersNow.length,
        error_log_alerts: (gw.errorLog().match(/\[alert\]|\[crit\]|exited on signal/g) || []).length,
      },
      note: 'no recovery: nothing may fail',
    };
  } finally {
    await stopAll();
  }
}

// ------------------------------------------------------------------------------------------
// 5. Graceful stop (`nginx -s quit`) with requests in flight: load plus requests parked at the
//    Router (delay). Allowed: every request in flight at the quit answered 200; after it, a new
//    connection is refused (the listener is closed): counted as `refused after quit`, not a
//    failure; a request that met an idle keep-alive connection the quitting worker closed was
//    never received (retried once, then refused): counted apart.
// ------------------------------------------------------------------------------------------
async function gracefulQuit(p) {
  try {
    const { gw } = await readyStack((raw) => {
      raw.server = { ...raw.server, worker_shutdown_timeout_seconds: 20 };
    });
    const load = startLoad({
      url: gw.url,
      concurrency: p.concurrency,
      count: 1e9,
      durationMs: p.loadMs,
      record: true,
      pauseOnFailureMs: 20,
      request: (i) => decideReq(`q-${i}`),
    });
    await sleep(Math.min(1500, p.loadMs * 0.3));
    const parked = Array.from({ length: p.quit.parked }, (_, k) =>
      send(false, gw.url, decideReq(`parked-${k}`, `delay:${p.quit.delayMs}`), 30000).then((r) => ({ ...r, end: performance.now() })),
    );
    await sleep(300);
    const tQuit = performance.now();
    gw.quit();
    const exit = await gw.waitExit(30000);
    const tExit = performance.now();
    load.stop();
    const stats = await load.done;
    const pk = await Promise.all(parked);
    const recs = stats.records;
    const before = recs.filter((x) => x.start < tQuit);
    const inFlightBad = before.filter((x) => x.status !== 200 && !x.retried);
    const neverReceived = before.filter((x) => x.status !== 200 && x.retried);
    const after = recs.filter((x) => x.start >= tQuit);
    const refused = after.filter((x) => x.error);
    const afterBad = after.filter((x) => !x.error && x.status !== 200);
    const parkedBad = pk.filter((r) => r.status !== 200);
    const answered = merge({}, stats.statuses);
    for (const r of pk) if (r.status) answered[r.status] = (answered[r.status] || 0) + 1;
    return {
      scenario: 'graceful stop (nginx -s quit) with requests in flight',
      sent: stats.completed + pk.length,
      answered,
      errors: stats.errors + pk.filter((r) => r.error).length,
      beyond: inFlightBad.length + afterBad.length + parkedBad.length,
      beyondSamples: [
        ...sample(inFlightBad, (x) => `${x.status || x.error} (started ${(tQuit - x.start).toFixed(0)} ms before the quit)`),
        ...sample(parkedBad, (r) => `parked: ${r.status || (r.error && r.error.message)}`),
      ],
      recovery_ms: null,
      details: {
        parked_in_flight: pk.length,
        parked_answered_200: pk.filter((r) => r.status === 200).length,
        parked_answered_after_quit_ms: r1(Math.max(0, ...pk.map((r) => r.end - tQuit))),
        load_in_flight_answered_200: before.filter((x) => x.status === 200 && x.end >= tQuit).length,
        idle_keepalive_closed_never_received: neverReceived.length,
        refused_after_quit: refused.length,
        master_exit_ms: r1(tExit - tQuit),
        master_exit_code: exit.code,
      },
      note: 'shutdown time = quit → master exit',
    };
  } finally {
    await stopAll();
  }
}

// ------------------------------------------------------------------------------------------
// 6. Slow and abusive clients: slowloris (partial headers, a header line every 500 ms) and slow
//    bodies (headers complete, part of the body, then nothing) hold connections while normal
//    clients are served; the slow ones are cut off after client_header_timeout /
//    client_body_timeout; slow bodies beyond server.max_connections_per_client are refused at
//    once with the JSON 503.
// ------------------------------------------------------------------------------------------

/** Opens a raw connection and plays `script`; resolves {closedAfterMs, lastSendMs, response}. */
function slowConn(port, { head, body = '', trickleMs = 0, trickle = '' }) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let lastSend = 0;
    let timer = null;
    let out = '';
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('connect', () => {
      s.write(head + body);
      lastSend = performance.now() - t0;
      if (trickleMs) {
        timer = setInterval(() => {
          if (!s.destroyed) {
            s.write(trickle);
            lastSend = performance.now() - t0;
          }
        }, trickleMs);
      }
    });
    s.on('data', (d) => {
      out += d.toString('latin1');
    });
    const done = () => {
      if (timer) clearInterval(timer);
      s.destroy();
      resolve({ closedAfterMs: performance.now() - t0, lastSendMs: lastSend, response: out });
    };
    s.on('close', done);
    s.on('error', () => {});
  });
}

/** Opens `n` slow-body connections at once; after `waitMs` counts the JSON 503s and closes all. */
async function flood(port, head, n, waitMs) {
  const socks = [];
  const outs = [];
  for (let k = 0; k < n; k++) {
    const sock = net.connect({ port, host: '127.0.0.1' });
    const o = { text: '' };
    outs.push(o);
    sock.on('connect', () => sock.write(head + '{"version"'));
    sock.on('data', (d) => {
      o.text += d.toString('latin1');
    });
    sock.on('error', () => {});
    socks.push(sock);
  }
  await sleep(waitMs);
  for (const sock of socks) sock.destroy();
  return outs.filter((o) => /^HTTP\/1\.1 503/.test(o.text) && /"code":"unavailable"/.test(o.text) && /Retry-After: 1/i.test(o.text)).length;
}

async function slowClients(p) {
  const s = p.slow;
  try {
    const { gw } = await readyStack((raw) => {
      raw.server = {
        ...raw.server,
        client_header_timeout_seconds: s.timeoutS,
        client_body_timeout_seconds: s.timeoutS,
        max_connections_per_client: s.cap,
      };
    });
    const phase = async (tag) => {
      const st = await startLoad({
        url: gw.url,
        concurrency: s.concurrency,
        count: 1e9,
        durationMs: s.phaseMs,
        record: true,
        request: (i) => decideReq(`${tag}-${i}`),
      }).done;
      const lat = st.records.filter((x) => x.status === 200).map((x) => x.end - x.start);
      return { st, p50: pct(lat, 50), p99: pct(lat, 99) };
    };
    const base = await phase('base');
    const loris = [];
    const bodies = [];
    const partialHead = `POST ${DECIDE} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tenant-ID: t-slow\r\n`;
    const fullHead = `POST ${DECIDE} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tenant-ID: t-slow\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`;
    const tOpen = performance.now();
    for (let k = 0; k < s.slowloris; k++)
      loris.push(slowConn(gw.port, { head: partialHead, trickleMs: 500, trickle: `X-Slow-${k}: x\r\n` }));
    // slow bodies up to the per-address cap minus the normal clients' share; the rest is the flood
    const held = Math.min(s.slowBody, s.cap - s.concurrency - 4);
    for (let k = 0; k < s.slowBody; k++) bodies.push(slowConn(gw.port, { head: fullHead, body: '{"version":"1",' }));
    await sleep(300);
    const during = await phase('during');
    const lorisR = await Promise.all(loris);
    const bodyR = await Promise.all(bodies);
    const tAll = performance.now() - tOpen;
    // A flood of slow bodies over the per-address cap (alone: normal clients share the address
    // here): everything beyond the cap is refused at once with the JSON 503.
    const floodN = s.cap + 20;
    const floodRefused = await flood(gw.port, fullHead, floodN, 1000);
    const refusedAtOnce = bodyR.filter((r) => /^HTTP\/1\.1 503/.test(r.response) && /"code":"unavailable"/.test(r.response));
    const cutBodies = bodyR.filter((r) => r.response === '');
    const cutLoris = lorisR.filter((r) => r.response === '');
    const lorisMs = lorisR.map((r) => r.closedAfterMs);
    const bodyMs = cutBodies.map((r) => r.closedAfterMs - r.lastSendMs);
    const failures = [...base.st.records, ...during.st.records].filter((x) => x.status !== 200);
    const timeoutMs = s.timeoutS * 1000;
    const lateLoris = lorisR.filter((r) => r.closedAfterMs > timeoutMs + 1500 || r.closedAfterMs < timeoutMs - 300);
    const lateBodies = cutBodies.filter((r) => r.closedAfterMs - r.lastSendMs > timeoutMs + 1500);
    return {
      scenario: `slow clients: ${s.slowloris} slowloris + ${s.slowBody} slow bodies (timeouts ${s.timeoutS} s, cap ${s.cap}/address)`,
      sent: base.st.completed + during.st.completed,
      answered: merge(merge({}, base.st.statuses), during.st.statuses),
      errors: base.st.errors + during.st.errors,
      beyond:
        failures.length +
        lateLoris.length +
        lateBodies.length +
        (bodyR.length - cutBodies.length - refusedAtOnce.length) +
        (floodRefused < floodN - s.cap ? 1 : 0),
      beyondSamples: [
        ...sample(failures, (x) => `normal client: ${x.status || x.error}`),
        ...sample(lateLoris, (r) => `slowloris closed after ${r.closedAfterMs.toFixed(0)} ms`),
        ...sample(lateBodies, (r) => `slow body closed ${(r.closedAfterMs - r.lastSendMs).toFixed(0)} ms after its last byte`),
      ],
      recovery_ms: null,
      details: {
        normal_baseline: { n: base.st.completed, p50_ms: r1(base.p50), p99_ms: r1(base.p99) },
        normal_with_slow_clients: { n: during.st.completed, p50_ms: r1(during.p50), p99_ms: r1(during.p99) },
        slowloris_cut_ms: { min: r1(Math.min(...lorisMs)), max: r1(Math.max(...lorisMs)), without_response: cutLoris.length },
        slow_body_cut_after_last_byte_ms: { n: cutBodies.length, min: r1(Math.min(...bodyMs)), max: r1(Math.max(...bodyMs)) },
        slow_body_refused_503_at_once: refusedAtOnce.length,
        slow_body_expected_held: held,
        all_slow_closed_after_ms: r1(tAll),
        flood_over_cap: { opened: floodN, cap: s.cap, refused_503_at_once: floodRefused },
      },
      note: 'normal p50/p99 with vs. without the slow clients',
    };
  } finally {
    await stopAll();
  }
}

// ------------------------------------------------------------------------------------------
// 7. Memory: worker RSS across many requests that include Router timeouts, no-responders and
//    client aborts; the waiter state must not leak (gateway_nats_requests_in_flight back to 0).
// ------------------------------------------------------------------------------------------
async function memory(p, { onProgress } = {}) {
  const m = p.memory;
  try {
    const nats = await startNats();
    // in-process Router: pausing its subscription makes requests meet NATS no-responders
    const router = await startRouterClient({ servers: nats.url });
    const gw = await startGateway({
      natsUrl: nats.url,
      configure: unlimited((raw) => {
        raw.routes.decide.timeout_ms = 100;
        raw.log = { ...(raw.log || {}), access_log: 'off' };
      }),
    });
    await waitReady(gw);
    await waitDecideOk(gw);
    const worker = workerPids(gw.pid)[0];
    // per 20 requests: 2 silent (504 after 100 ms), 1 aborted by the client after 5 ms (Router
    // delay 50 ms), the rest normal; every ~2 s the Router pauses for 200 ms (503 no-responders)
    const kind = (i) => (i % 20 < 2 ? 'silence' : i % 20 === 2 ? 'abort' : 'normal');
    const run = async (n, tag) => {
      let paused = false;
      const toggler = setInterval(async () => {
        paused = true;
        await router.pause();
        setTimeout(async () => {
          await router.resume();
          paused = false;
        }, 200);
      }, 2000);
      const st = await startLoad({
        url: gw.url,
        concurrency: m.concurrency,
        count: n,
        durationMs: 1e9,
        timeoutMs: 10000,
        request: (i) => {
          const k = kind(i);
          return {
            ...decideReq(`${tag}-${i}`, k === 'silence' ? 'silence' : k === 'abort' ? 'delay:50' : undefined),
            abortMs: k === 'abort' ? 5 : undefined,
          };
        },
        onResponse: onProgress
          ? (res, i) => {
              if (i % 50000 === 0 && i) onProgress(tag, i, n, memKb(worker));
            }
          : undefined,
      }).done;
      clearInterval(toggler);
      if (paused) await sleep(250);
      await router.resume();
      return st;
    };
    await run(m.warmup, 'warm');
    await sleep(500);
    const memStart = memKb(worker);
    const st = await run(m.requests, 'mem');
    await sleep(500); // silent requests time out, aborted ones finish at the Router
    const metrics = await scrape(gw.url);
    const memEnd = memKb(worker);
    const inFlight = value(metrics, 'gateway_nats_requests_in_flight');
    const replies = {};
    for (const mm of (metrics.families.get('gateway_router_replies_total') || { metrics: [] }).metrics)
      replies[mm.labels.code] = Number(mm.value);
    const allowed = new Set(['200', '503', '504']);
    const beyond = Object.entries(st.statuses)
      .filter(([s]) => !allowed.has(s))
      .reduce((n, [, c]) => n + c, 0);
    return {
      scenario: `memory: ${m.requests} requests with timeouts, no-responders and client aborts`,
      sent: st.completed,
      answered: st.statuses,
      errors: st.errors,
      beyond,
      beyondSamples: Object.keys(st.statuses)
        .filter((k) => !allowed.has(k))
        .map((k) => `status ${k}`),
      recovery_ms: null,
      details: {
        worker_pid: worker,
        kb_after_warmup: memStart,
        kb_end: memEnd,
        rss_growth_kb: memEnd.rss - memStart.rss,
        // private memory (Lua heap, per-worker tables: where leaked waiters would show)
        anon_growth_kb: memEnd.anon - memStart.anon,
        // shared dicts filling up to their configured sizes (decision cache, metrics)
        shmem_growth_kb: memEnd.shmem - memStart.shmem,
        in_flight_end: inFlight,
        router_replies_total: replies,
        client_aborts: st.errors,
        rps: r1(st.completed / (st.elapsedMs / 1000)),
      },
      note: 'client aborts are counted as transport errors by design',
    };
  } finally {
    await stopAll();
  }
}

module.exports = {
  PROFILES,
  natsKillRestart,
  clusterNodeKill,
  silenceShare,
  reloadsInARow,
  gracefulQuit,
  slowClients,
  memory,
  pct,
};
