'use strict';
// End-to-end, issue 9 (traffic switch): shadow mode. Each API request is also sent to the side
// that did not answer it, after the response went out; the answers are compared (ids and
// timestamps ignored) and counted in gateway_shadow_comparisons_total{result}; each mismatch is
// one log line with the trace id. The client's response is never delayed, and the mirrors are
// bounded (gateway_shadow_dropped_total{reason}). Real nginx + nats-server + reference Router
// (--fast); the fake old gateway (spec/support/legacy.js) runs in this process.
const http = require('http');
const crypto = require('crypto');
const zlib = require('zlib');
const { startGateway, request } = require('../support/gateway');

// nginx's own line for an old gateway that is down (the tests that stop it on purpose).
const UPSTREAM_DOWN = /connect\(\) failed \(111: Connection refused\) while connecting to upstream/;
const { startNats, startRouter, stopAll } = require('../support/processes');
const { startLegacy } = require('../support/legacy');
const { send, sleep } = require('../support/load');

const DECIDE = '/api/v1/routes/decide';
const bucket = (tenant) => zlib.crc32(tenant) % 100;
const body = () => JSON.stringify({ version: '1', task: { type: 'chat', payload: { text: 'hi' } } });

/** Sum of the samples of `name` whose labels include `labels`. */
async function metric(gw, name, labels = {}) {
  const r = await request(gw.url, { path: '/metrics' });
  let sum = 0;
  for (const line of r.body.split('\n')) {
    const m = /^(\w+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries(
      (m[2] || '')
        .split(',')
        .filter(Boolean)
        .map((kv) => kv.split('='))
        .map(([k, v]) => [k, v.replace(/"/g, '')]),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

async function shadowCounts(gw) {
  const [match, mismatch, error, dropped] = await Promise.all([
    metric(gw, 'gateway_shadow_comparisons_total', { result: 'match' }),
    metric(gw, 'gateway_shadow_comparisons_total', { result: 'mismatch' }),
    metric(gw, 'gateway_shadow_comparisons_total', { result: 'error' }),
    metric(gw, 'gateway_shadow_dropped_total'),
  ]);
  return { match, mismatch, error, dropped };
}

const delta = (a, b) => ({
  match: b.match - a.match,
  mismatch: b.mismatch - a.mismatch,
  error: b.error - a.error,
  dropped: b.dropped - a.dropped,
});

/** Polls until `total` mirrors (compared or dropped) were counted since `base`; then waits a bit for strays. */
async function settle(gw, base, total, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const d = delta(base, await shadowCounts(gw));
    if (d.match + d.mismatch + d.error + d.dropped >= total || Date.now() > deadline) {
      await sleep(200);
      return delta(base, await shadowCounts(gw));
    }
    await sleep(50);
  }
}

async function waitReady(gw) {
  const deadline = Date.now() + 10000;
  while ((await request(gw.url, { path: '/readyz' })).status !== 200) {
    if (Date.now() > deadline) throw new Error(`gateway never became ready:\n${gw.errorLog()}`);
    await sleep(20);
  }
}

function configure(legacyUrl, share, shadow = {}) {
  return (raw) => {
    raw.routes = {
      decide: { rate_limit: { limit: 1000000000, window_seconds: 60 } },
      messages: { rate_limit: { limit: 1000000000, window_seconds: 60 } },
    };
    raw.migration = {
      enabled: true,
      legacy_url: legacyUrl,
      share_percent: share,
      allow_override: true,
      shadow: { enabled: true, ...shadow },
    };
  };
}

const traceId = () => crypto.randomBytes(16).toString('hex');

function decide(gw, tenant, headers = {}, agent = false) {
  return send(
    agent,
    gw.url,
    {
      method: 'POST',
      path: DECIDE,
      body: body(),
      headers: { 'content-type': 'application/json', 'x-tenant-id': tenant, ...headers },
    },
    10000,
  );
}

describe('shadow mode', () => {
  let nats;
  let legacy;

  beforeAll(async () => {
    legacy = await startLegacy({ mode: 'same', record: false });
    nats = await startNats();
    await startRouter({ natsUrl: nats.url, args: ['--fast'] });
  });
  afterAll(async () => {
    await stopAll();
    await legacy.stop();
  });

  test('N identical and M different answers are counted exactly, both directions; one log line per mismatch', async () => {
    const gw = await startGateway({ natsUrl: nats.url, workers: 2, configure: configure(legacy.url, 50) });
    try {
      await waitReady(gw);
      const tenants = Array.from({ length: 60 }, (_, i) => `shadow-${i}`);
      const answeredBy = { new: 0, legacy: 0 };

      // N = 60 answers that match (legacy answers like this gateway)
      legacy.mode = 'same';
      let base = await shadowCounts(gw);
      for (const t of tenants) {
        const r = await decide(gw, t);
        expect(r.status).toBe(200);
        answeredBy[r.headers['x-beamline-gateway']]++;
        expect(r.headers['x-beamline-gateway']).toBe(bucket(t) < 50 ? 'new' : 'legacy');
      }
      expect(answeredBy.new).toBeGreaterThan(10); // both directions are exercised
      expect(answeredBy.legacy).toBeGreaterThan(10);
      const same = await settle(gw, base, tenants.length);
      expect(same).toEqual({ match: tenants.length, mismatch: 0, error: 0, dropped: 0 });

      // M = 25 answers that differ (the old gateway is Nest: flat decision, other error shape)
      legacy.mode = 'nest';
      const logBefore = gw.errorLog().length;
      base = await shadowCounts(gw);
      const sent = [];
      for (const t of tenants.slice(0, 25)) {
        const trace = traceId();
        const r = await decide(gw, t, { 'x-trace-id': trace, authorization: 'Bearer very-secret-key' });
        expect(r.status).toBe(200);
        sent.push({ t, trace, side: r.headers['x-beamline-gateway'] });
      }
      const diff = await settle(gw, base, 25);
      expect(diff).toEqual({ match: 0, mismatch: 25, error: 0, dropped: 0 });
      const lines = gw
        .errorLog()
        .slice(logBefore)
        .split('\n')
        .filter((l) => l.includes('shadow mismatch'));
      expect(lines).toHaveLength(25);
      for (const s of sent) {
        const line = lines.find((l) => l.includes(`trace_id=${s.trace}`));
        expect(line).toBeDefined();
        expect(line).toContain(`route=decide answered_by=${s.side} status=200`);
        expect(line).toContain(`tenant_id=${s.t}`);
      }
      expect(gw.errorLog()).not.toContain('very-secret-key');
      console.log(
        `shadow: ${tenants.length} identical → match +${same.match}; 25 different → mismatch +${diff.mismatch}; sample line:\n${lines[0].replace(/^.*\[lua\][^:]*:\d+: /, '')}`,
      );

      // the old gateway down: errors, counted, the clients unaffected
      legacy.mode = 'same';
      const l2 = await startLegacy();
      await l2.stop(); // a port nothing listens on
      // (the running gateway keeps its legacy; errors come from a gateway whose legacy is gone)
      const g2 = await startGateway({ natsUrl: nats.url, configure: configure(l2.url, 100), expectErrorLog: UPSTREAM_DOWN });
      try {
        await waitReady(g2);
        const b2 = await shadowCounts(g2);
        for (let i = 0; i < 5; i++) expect((await decide(g2, `down-${i}`)).status).toBe(200);
        expect(await settle(g2, b2, 5)).toEqual({ match: 0, mismatch: 0, error: 5, dropped: 0 });
      } finally {
        await g2.stop();
      }
    } finally {
      await gw.stop();
    }
  }, 60000);

  test('a shadow request to the new path stores nothing: no Idempotency-Key claim, no decision to look up', async () => {
    const gw = await startGateway({ natsUrl: nats.url, configure: configure(legacy.url, 0) });
    try {
      await waitReady(gw);
      legacy.mode = 'same';
      const base = await shadowCounts(gw);
      const key = `idem-${crypto.randomUUID()}`;
      const withKey = (b) =>
        send(
          false,
          gw.url,
          {
            method: 'POST',
            path: DECIDE,
            body: JSON.stringify({ version: '1', message_id: 'shadow-msg-1', task: { type: 'chat', payload: b } }),
            headers: { 'content-type': 'application/json', 'x-tenant-id': 'idem-tenant', 'idempotency-key': key },
          },
          10000,
        );
      const r1 = await withKey({ n: 1 }); // answered by legacy (share 0), mirrored to the new path
      expect(r1.headers['x-beamline-gateway']).toBe('legacy');
      expect(await settle(gw, base, 1)).toMatchObject({ match: 1 });
      // the same key with another body on the new path: a fresh request, not 409 (nothing was claimed)
      const r2 = await send(
        false,
        gw.url,
        {
          method: 'POST',
          path: DECIDE,
          body: JSON.stringify({ version: '1', task: { type: 'chat', payload: { n: 2 } } }),
          headers: {
            'content-type': 'application/json',
            'x-tenant-id': 'idem-tenant',
            'idempotency-key': key,
            'x-beamline-gateway': 'new',
          },
        },
        10000,
      );
      expect(r2.status).toBe(200);
      const lookup = await request(gw.url, {
        path: '/api/v1/routes/decide/shadow-msg-1',
        headers: { 'x-tenant-id': 'idem-tenant', 'x-beamline-gateway': 'new' },
      });
      expect(lookup.status).toBe(404);
    } finally {
      await gw.stop();
    }
  });

  test('a slow old gateway never delays the client: latency with a 800 ms legacy = latency without shadow work', async () => {
    const gw = await startGateway({ natsUrl: nats.url, configure: configure(legacy.url, 100) });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 }); // one connection: the next request must not wait for the mirror
    try {
      await waitReady(gw);
      legacy.mode = 'same';
      const timed = async (n, prefix) => {
        const ms = [];
        for (let i = 0; i < n; i++) {
          const r = await decide(gw, `${prefix}-${i}`, {}, agent);
          expect(r.status).toBe(200);
          expect(r.headers['x-beamline-gateway']).toBe('new');
          ms.push(r.ms);
        }
        ms.sort((a, b) => a - b);
        return { p50: ms[Math.floor(n / 2)], max: ms[n - 1] };
      };
      legacy.delayMs = 0;
      let base = await shadowCounts(gw);
      const fast = await timed(20, 'fast');
      await settle(gw, base, 20);
      legacy.delayMs = 800;
      base = await shadowCounts(gw);
      const t0 = performance.now();
      const slow = await timed(20, 'slow');
      const clientMs = performance.now() - t0;
      const d = await settle(gw, base, 20);
      legacy.delayMs = 0;
      console.log(
        `client latency, legacy answering in 0 ms: p50 ${fast.p50.toFixed(1)} ms max ${fast.max.toFixed(1)} ms; ` +
          `in 800 ms: p50 ${slow.p50.toFixed(1)} ms max ${slow.max.toFixed(1)} ms (20 requests on one keep-alive connection in ${clientMs.toFixed(0)} ms; mirrors compared ${d.match})`,
      );
      expect(d).toEqual({ match: 20, mismatch: 0, error: 0, dropped: 0 }); // the mirrors did wait for the slow side
      expect(clientMs).toBeLessThan(800); // 20 requests in less time than one mirror takes
      expect(slow.max).toBeLessThan(250);
      expect(slow.p50).toBeLessThan(fast.p50 + 20); // the machine is shared: a generous margin, far below 800 ms
    } finally {
      agent.destroy();
      await gw.stop();
    }
  }, 60000);

  test('mirrors in flight are bounded per worker: over max_concurrency they are dropped and counted', async () => {
    const gw = await startGateway({ natsUrl: nats.url, configure: configure(legacy.url, 100, { max_concurrency: 4 }) });
    try {
      await waitReady(gw);
      legacy.mode = 'same';
      legacy.delayMs = 1500;
      const base = await shadowCounts(gw);
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) expect((await decide(gw, `bound-${i}`)).status).toBe(200);
      const sentMs = performance.now() - t0;
      const d = await settle(gw, base, 20);
      const dropped = await metric(gw, 'gateway_shadow_dropped_total', { reason: 'concurrency' });
      console.log(
        `bounded shadow: 20 requests in ${sentMs.toFixed(0)} ms, legacy 1500 ms, max_concurrency 4 → compared ${d.match}, dropped ${d.dropped}`,
      );
      expect(sentMs).toBeLessThan(1500);
      expect(d.match + d.dropped).toBe(20);
      expect(d.match).toBe(4);
      expect(dropped).toBe(16);
    } finally {
      legacy.delayMs = 0;
      await gw.stop();
    }
  }, 60000);
});
