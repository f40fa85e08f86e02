'use strict';
// Many gateway instances behave as one (CONTRACT §13): three instances from this checkout, each
// its own prefix and port, on one nats-server and one redis-server with `state.backend: redis`.
// Idempotency-Key replay and in-flight 409 across instances, decision lookup across instances
// right after the answer, one rate-limit count, 10,000 requests over random instances without a
// duplicate Router call, Redis killed under load (fail_open / fail_closed) and restarted with
// its keys lost.
const fs = require('fs');
const Redis = require('ioredis');
const { startNats, stopAll } = require('../support/processes');
const { PEER_RESET, startRedis, startInstances, startCountingRouter, redisClient, idemKey, spread } = require('../support/cluster');
const { DECIDE, decideBody, post, freshWindow, sleep, settle, scrape, value } = require('../support/api');
const { request, startGateway } = require('../support/gateway');

let nats;
let redis;
let router;
let rc;
beforeAll(async () => {
  nats = await startNats();
  redis = await startRedis();
  router = await startCountingRouter({ servers: nats.url });
  rc = redisClient(redis).client;
});
afterAll(() => stopAll());

let seq = 0;
const unique = (what) => `${what}-${process.pid}-${++seq}`;
/** A decide body the counting Router files under `countKey`. */
const counted = (countKey, extra = {}) => decideBody({ ...extra, metadata: { ...(extra.metadata || {}), count_key: countKey } });
const highLimits = (raw) => {
  raw.routes = {
    decide: { rate_limit: { limit: 1000000, window_seconds: 60 } },
    messages: { rate_limit: { limit: 1000000, window_seconds: 60 } },
  };
};
// nginx itself logs a cosocket's reset by a peer that died mid-request at [error] (Redis killed
// under load): the gateways of those tests declare it; every other severe line fails the test
// (the error-log rule of spec/support/gateway.js, and the checks below).
const PEER_RESET_LINES = new RegExp(`^.*${PEER_RESET.source}.*$`, 'gm');
const unexpectedErrors = (log) => log.replace(PEER_RESET_LINES, '').match(/\[(error|crit|alert|emerg)\].*/g) || [];

/** Waits until the Idempotency-Key entry of (tenant t1, decide, key) is in Redis. */
const claimed = (keyPrefix, key) =>
  until(async () => (await rc.exists(idemKey(keyPrefix, 't1', 'decide', key)).catch(() => 0)) === 1, 5000, `the marker of ${key}`);

/** Two instances on the shared NATS and Redis. */
const pair = (configure, redisOptions) =>
  startInstances({ count: 2, natsUrl: nats.url, redis, configure, redisOptions, expectErrorLog: PEER_RESET });

/** Polls `fn` until it returns a truthy value or the deadline passes (machine is shared). */
async function until(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('three instances on one Redis', () => {
  let gws;
  beforeAll(async () => {
    gws = await startInstances({
      count: 3,
      natsUrl: nats.url,
      redis,
      // A Redis call slower than the timeout would run the request without idempotency
      // (fail_open): on this shared machine give Redis time, and fail closed if it still fails.
      redisOptions: { timeout_ms: 2000, on_error: 'fail_closed' },
      configure: (raw) => {
        highLimits(raw);
        raw.router = { request_timeout_ms: 2000 };
      },
    });
  });

  test('an Idempotency-Key used on A is replayed by B and C with the same status and bytes, no Router call', async () => {
    const [a, b, c] = gws;
    const key = unique('k');
    const body = counted(key);
    const first = await post(a.url, { headers: { 'idempotency-key': key }, body });
    expect(first.status).toBe(200);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    for (const gw of [b, c, a]) {
      const r = await post(gw.url, { headers: { 'idempotency-key': key, 'x-request-id': 'another' }, body });
      expect(r.status).toBe(200);
      expect(r.body).toBe(first.body);
      expect(r.headers['idempotent-replayed']).toBe('true');
      expect(r.headers['x-request-id']).toBe(first.headers['x-request-id']);
      expect(r.headers['x-trace-id']).toBe(first.headers['x-trace-id']);
    }
    expect(router.calls.get(key)).toBe(1);
    // The same key with another body is a conflict on every instance.
    const other = await post(c.url, { headers: { 'idempotency-key': key }, body: counted(key, { context: { x: 1 } }) });
    expect(other.status).toBe(409);
    expect(other.json.error.code).toBe('conflict');
    // A 4xx of the Router is stored and replayed across instances too.
    const k4 = unique('k4');
    const b4 = counted(k4, { metadata: { count_key: k4, router_mode: 'error:validator_blocked' } });
    const e1 = await post(b.url, { headers: { 'idempotency-key': k4 }, body: b4 });
    const e2 = await post(a.url, { headers: { 'idempotency-key': k4 }, body: b4 });
    expect([e1.status, e2.status]).toEqual([403, 403]);
    expect(e2.body).toBe(e1.body);
    expect(e2.headers['idempotent-replayed']).toBe('true');
    expect(router.calls.get(k4)).toBe(1);
  });

  test('a repeat on B while A is in flight is 409; after a 5xx on A the key is free on C', async () => {
    const [a, b, c] = gws;
    const key = unique('k');
    const body = counted(key, { metadata: { count_key: key, router_mode: 'delay:700' } });
    const slow = post(a.url, { headers: { 'idempotency-key': key }, body });
    await claimed(gws.keyPrefix, key);
    const conflict = await post(b.url, { headers: { 'idempotency-key': key }, body });
    expect(conflict.status).toBe(409);
    expect(conflict.json.error.code).toBe('conflict');
    expect(conflict.json.error.message).toMatch(/in progress/);
    const done = await slow;
    expect(done.status).toBe(200);
    const replay = await post(c.url, { headers: { 'idempotency-key': key }, body });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body).toBe(done.body);
    expect(router.calls.get(key)).toBe(1);

    // 5xx (Router error → 500): released, so the retry on C runs again.
    const k5 = unique('k5');
    const b5 = counted(k5, { metadata: { count_key: k5, router_mode: 'error:internal' } });
    expect((await post(a.url, { headers: { 'idempotency-key': k5 }, body: b5 })).status).toBe(500);
    const again = await post(c.url, { headers: { 'idempotency-key': k5 }, body: b5 });
    expect(again.status).toBe(500);
    expect(again.headers['idempotent-replayed']).toBeUndefined();
    expect(router.calls.get(k5)).toBe(2);
  });

  test('a decision answered by A is found on B and C right after the answer', async () => {
    const [a, b, c] = gws;
    for (let i = 0; i < 20; i++) {
      const rid = unique('req');
      const mid = unique('msg');
      const r = await post(gws[i % 3].url, { body: decideBody({ request_id: rid, message_id: mid }) });
      expect(r.status).toBe(200);
      // No wait at all: the decision was stored before the answer was sent.
      const other = gws[(i + 1) % 3];
      const byRequest = await request(other.url, { path: `${DECIDE}/${rid}`, headers: { 'x-tenant-id': 't1' } });
      expect(byRequest.status).toBe(200);
      expect(byRequest.body).toBe(r.body);
      const byMessage = await request(gws[(i + 2) % 3].url, { path: `${DECIDE}/${mid}`, headers: { 'x-tenant-id': 't1' } });
      expect(byMessage.body).toBe(r.body);
    }
    // Another tenant never sees it; an unknown id is 404.
    const rid = unique('req');
    expect((await post(a.url, { body: decideBody({ request_id: rid }) })).status).toBe(200);
    expect((await request(b.url, { path: `${DECIDE}/${rid}`, headers: { 'x-tenant-id': 't2' } })).status).toBe(404);
    expect((await request(c.url, { path: `${DECIDE}/${unique('none')}`, headers: { 'x-tenant-id': 't1' } })).status).toBe(404);
  });

  test('10,000 requests over random instances: zero duplicate Router calls for replayed keys', async () => {
    const KEYS = 1000;
    const N = 10000;
    const base = unique('bulk');
    const bodies = [];
    for (let k = 0; k < KEYS; k++) bodies.push(counted(`${base}-${k}`));
    // Each key N / KEYS times, in random order: repeats of a key land on random instances, some
    // while its first request is still in flight (409 there).
    const keyOf = Array.from({ length: N }, (_, i) => i % KEYS);
    for (let i = N - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [keyOf[i], keyOf[j]] = [keyOf[j], keyOf[i]];
    }
    const before = router.total;
    const t0 = Date.now();
    const results = await spread(
      gws.map((g) => g.url),
      {
        count: N,
        concurrency: 24,
        request: (i) => {
          const k = keyOf[i];
          return {
            method: 'POST',
            path: DECIDE,
            headers: { 'content-type': 'application/json', 'x-tenant-id': 'bulk', 'idempotency-key': `${base}-${k}` },
            body: bodies[k],
          };
        },
      },
    );
    const ms = Date.now() - t0;
    const statuses = {};
    for (const r of results) statuses[r.error ? 'error' : r.status] = (statuses[r.error ? 'error' : r.status] || 0) + 1;
    // Redis answered every call in time (else the numbers below would not test anything).
    let backendErrors = 0;
    for (const g of gws) backendErrors += value(await scrape(g.url), 'gateway_state_backend_errors_total');
    expect({ statuses, backendErrors }).toEqual({ statuses: expect.any(Object), backendErrors: 0 });
    // Only 200 (first or replayed) and 409 (a duplicate while the first was in flight).
    expect(Object.keys(statuses).sort()).toEqual(expect.arrayContaining(['200']));
    expect(Object.keys(statuses).filter((s) => s !== '200' && s !== '409')).toEqual([]);
    const dups = [];
    for (let k = 0; k < KEYS; k++) {
      const n = router.calls.get(`${base}-${k}`);
      if (n !== 1) dups.push([k, n]);
    }
    if (dups.length) {
      // For a failure: what each request of the first such key got.
      const k = dups[0][0];
      const seen = results
        .filter((r, i) => keyOf[i] === k)
        .map((r) => [r.instance, r.status, r.headers && r.headers['idempotent-replayed']]);
      console.log(`key ${k}: ${JSON.stringify(seen)}; Router calls in all: ${router.total - before}`);
    }
    expect(dups).toEqual([]);
    expect(router.total - before).toBe(KEYS);
    const replayed = results.filter((r) => r.headers && r.headers['idempotent-replayed'] === 'true').length;
    expect(replayed).toBe(N - KEYS - (statuses['409'] || 0));
    // Every instance served a share, and replayed answers carry the first answer's bytes.
    for (let g = 0; g < 3; g++) expect(results.filter((r) => r.instance === g).length).toBeGreaterThan(N / 5);
    const firstBody = new Map();
    for (const r of results) {
      if (r.status !== 200) continue;
      const k = r.headers['x-request-id'];
      if (!firstBody.has(k)) firstBody.set(k, r.body);
      else expect(r.body).toBe(firstBody.get(k));
    }
    console.log(`10,000 requests over 3 instances: ${ms} ms, ${JSON.stringify(statuses)}, ${replayed} replayed`);
  }, 60000);
});

test('one rate-limit count per (tenant, route) across three instances', async () => {
  const LIMIT = 7;
  const gws = await startInstances({
    count: 3,
    natsUrl: nats.url,
    redis,
    configure: (raw) => {
      raw.routes = { decide: { rate_limit: { limit: LIMIT, window_seconds: 3600 } } };
    },
  });
  await freshWindow(3600, 30);
  const rs = [];
  for (let i = 0; i < 3 * LIMIT; i++) rs.push(await post(gws[i % 3].url, { tenant: 'shared-count' }));
  expect(rs.map((r) => r.status)).toEqual([...Array(LIMIT).fill(200), ...Array(2 * LIMIT).fill(429)]);
  expect(rs.slice(0, LIMIT).map((r) => r.headers['x-ratelimit-remaining'])).toEqual(['6', '5', '4', '3', '2', '1', '0']);
  // Another tenant has its own count; the lookup counts against decide on every instance.
  expect((await post(gws[2].url, { tenant: 'other-count' })).status).toBe(200);
  const lookup = await request(gws[1].url, { path: `${DECIDE}/x`, headers: { 'x-tenant-id': 'shared-count' } });
  expect(lookup.status).toBe(429);
  for (const g of gws) {
    const s = await scrape(g.url);
    expect(value(s, 'gateway_state_backend_errors_total')).toBe(0);
    await g.stop();
  }
});

test("Idempotency-Key records are bounded per tenant: past max_keys_per_tenant its own oldest go, never another tenant's", async () => {
  const gws = await pair((raw) => {
    highLimits(raw);
    raw.idempotency = { max_keys_per_tenant: 3 };
  });
  const use = (gw, tenant, key) => post(gw.url, { tenant, headers: { 'idempotency-key': key }, body: counted(`${tenant}/${key}`) });
  const base = unique('bound');
  // Tenant "quiet" stores 2 records; tenant "busy" then stores 5 (bound 3).
  for (let i = 0; i < 2; i++) expect((await use(gws[i % 2], 'quiet', `${base}-q${i}`)).status).toBe(200);
  for (let i = 0; i < 5; i++) expect((await use(gws[i % 2], 'busy', `${base}-b${i}`)).status).toBe(200);
  expect(await rc.zcard(`${gws.keyPrefix}idemidx:{busy}`)).toBe(3);
  expect(await rc.exists(idemKey(gws.keyPrefix, 'busy', 'decide', `${base}-b0`))).toBe(0);
  // busy's newest 3 replay (a replay stores nothing); its oldest runs again (a new record).
  for (const i of [4, 3, 2, 0]) {
    const r = await use(gws[(i + 1) % 2], 'busy', `${base}-b${i}`);
    expect({ i, replayed: r.headers['idempotent-replayed'] === 'true' }).toEqual({ i, replayed: i >= 2 });
  }
  expect([0, 1, 2, 3, 4].map((i) => router.calls.get(`busy/${base}-b${i}`))).toEqual([2, 1, 1, 1, 1]);
  expect(await rc.zcard(`${gws.keyPrefix}idemidx:{busy}`)).toBe(3);
  // quiet's records were never touched.
  for (let i = 0; i < 2; i++) expect((await use(gws[i], 'quiet', `${base}-q${i}`)).headers['idempotent-replayed']).toBe('true');
  for (const g of gws) await g.stop();
});

test('REDIS_URL with a password and a database: AUTH and SELECT on each new pooled connection', async () => {
  const secured = await startRedis({ password: 's3cret pw' });
  const gw = await startGateway({
    natsUrl: nats.url,
    env: { GATEWAY_STATE_BACKEND: 'redis', REDIS_URL: `redis://:${encodeURIComponent('s3cret pw')}@127.0.0.1:${secured.port}/3` },
    configure: highLimits,
  });
  expect(gw.config.state.redis).toMatchObject({ port: secured.port, database: 3, password: 's3cret pw' });
  const rid = unique('auth');
  expect((await post(gw.url, { body: decideBody({ request_id: rid }) })).status).toBe(200);
  expect((await request(gw.url, { path: `${DECIDE}/${rid}`, headers: { 'x-tenant-id': 't1' } })).status).toBe(200);
  const c = new Redis({ host: '127.0.0.1', port: secured.port, password: 's3cret pw', db: 3 });
  try {
    expect(await c.exists(`beamline:dc:t1|${rid}`)).toBe(1);
  } finally {
    c.disconnect();
  }
  expect(value(await scrape(gw.url), 'gateway_state_backend_errors_total')).toBe(0);
  await gw.stop();
  await secured.stop();
});

describe('Redis trouble', () => {
  /** Load over `gws` until `stop()`; returns {done, stop} with the responses. */
  function load(gws, concurrency, tenant) {
    let stopped = false;
    const out = [];
    const loops = Array.from({ length: concurrency }, async (_, l) => {
      let i = 0;
      while (!stopped) {
        const g = (l + i) % gws.length;
        const withKey = i % 2 === 0;
        const headers = withKey ? { 'idempotency-key': unique('load') } : {};
        const r = await post(gws[g].url, { tenant, headers }).catch((e) => ({ status: 'error', error: e }));
        out.push({ ...r, g });
        i++;
      }
    });
    return {
      stop: async () => {
        stopped = true;
        await Promise.all(loops);
        return out;
      },
      count: () => out.length,
      /** Index of the first 200 of instance `g` answered at or after index `from`, or -1. */
      firstOk: (from, g) => out.findIndex((r, i) => i >= from && r.g === g && r.status === 200),
    };
  }

  async function killRedis() {
    redis.kill('SIGKILL');
    await redis.waitExit();
  }

  /**
   * Load on `gws`; Redis killed after 100 answers, restarted after `downCount` more, stopped
   * 100 answers later. Returns the answers and the indexes of the kill and the restart.
   */
  async function outageUnderLoad(gws, tenant, downCount) {
    const run = load(gws, 6, tenant);
    await until(() => run.count() > 100, 10000, 'load before the kill');
    await killRedis();
    const atKill = run.count();
    await until(() => run.count() > atKill + downCount, 10000, 'load while Redis is down');
    await redis.restart();
    const atRestart = run.count();
    // A worker leaves Redis alone for retry_after_ms after a failure: wait for the first 200 of
    // every instance after the restart, then for 100 more answers.
    let back = 0;
    for (let g = 0; g < gws.length; g++) {
      back = Math.max(back, await until(() => run.firstOk(atRestart, g) + 1, 10000, `the first 200 of instance ${g} after the restart`));
    }
    await until(() => run.count() > back + 100, 10000, 'load after the restart');
    return { rs: await run.stop(), atKill, atRestart };
  }

  test('fail_open: Redis killed under load, no 5xx; after its restart the instances use it again', async () => {
    const gws = await pair(highLimits);
    const { rs } = await outageUnderLoad(gws, 'open-load', 100);
    const bad = rs.filter((r) => r.status !== 200);
    expect(bad.map((r) => r.status)).toEqual([]);
    // Counted as state backend errors by operation, and logged as warnings only.
    const ops = new Set();
    for (const g of gws) {
      const f = (await scrape(g.url)).families.get('gateway_state_backend_errors_total');
      for (const m of f.metrics) if (Number(m.value) > 0) ops.add(m.labels.op);
    }
    expect(ops.has('rate_limit')).toBe(true);
    expect([...ops].filter((o) => !['rate_limit', 'idempotency', 'decision_store', 'decision_lookup'].includes(o))).toEqual([]);
    // Back to shared state: an Idempotency-Key used on one instance replays on the other.
    const key = unique('back');
    const body = counted(key);
    await until(
      async () => {
        const first = await post(gws[0].url, { tenant: 'open-back', headers: { 'idempotency-key': key }, body });
        const second = await post(gws[1].url, { tenant: 'open-back', headers: { 'idempotency-key': key }, body });
        return second.headers['idempotent-replayed'] === 'true' && second.body === first.body;
      },
      5000,
      'replay across instances after the restart',
    );
    for (const g of gws) {
      expect(unexpectedErrors(g.errorLog())).toEqual([]);
      expect(g.errorLog()).toMatch(/\[warn\].*Redis state backend/);
      await g.stop();
    }
  }, 60000);

  test('fail_closed: while Redis is down every answer is 200 or exactly 503 unavailable; recovery after restart', async () => {
    const gws = await pair(highLimits, { on_error: 'fail_closed' });
    await settle();
    const { rs, atKill, atRestart } = await outageUnderLoad(gws, 'closed-load', 200);
    const down = rs.slice(atKill, atRestart);
    const unavailable = rs.filter((r) => r.status === 503);
    expect(unavailable.length).toBeGreaterThan(0);
    expect(down.filter((r) => r.status === 503).length).toBeGreaterThan(down.length / 2);
    for (const r of unavailable) {
      expect(r.json.error.code).toBe('unavailable');
      expect(r.headers['retry-after']).toBe('1');
    }
    expect(rs.filter((r) => r.status !== 200 && r.status !== 503).map((r) => r.status)).toEqual([]);
    // After the restart the answers are 200 again (the last ones of the run, and new ones).
    expect(rs.slice(-20).map((r) => r.status)).toEqual(Array(20).fill(200));
    for (const g of gws) {
      expect((await post(g.url, { tenant: 'closed-after' })).status).toBe(200);
      expect(unexpectedErrors(g.errorLog())).toEqual([]);
      await g.stop();
    }
  }, 60000);

  test('Redis restarted with its keys lost: no stuck in-flight markers', async () => {
    const gws = await pair((raw) => {
      highLimits(raw);
      raw.router = { request_timeout_ms: 1000 };
      raw.idempotency = { in_flight_grace_seconds: 1 };
    });
    const [a, b] = gws;
    // 1. A's request is in flight when Redis restarts: its marker is gone with the keys; A's
    // answer does not store the outcome into the new Redis, and the key runs again on B.
    const key = unique('lost');
    const body = counted(key, { metadata: { count_key: key, router_mode: 'delay:600' } });
    const slow = post(a.url, { headers: { 'idempotency-key': key }, body });
    await claimed(gws.keyPrefix, key);
    expect((await post(b.url, { headers: { 'idempotency-key': key }, body })).status).toBe(409);
    await killRedis();
    await redis.restart();
    expect((await slow).status).toBe(200);
    const retry = await until(
      async () => {
        const r = await post(b.url, { headers: { 'idempotency-key': key }, body: counted(key) });
        return r.status === 200 ? r : undefined;
      },
      5000,
      'the key to run again after the restart',
    );
    expect(retry.headers['idempotent-replayed']).toBeUndefined();

    // 2. A dies (SIGKILL) with a key in flight: its marker expires after the Router timeout
    // plus idempotency.in_flight_grace_seconds, then the key runs on B.
    const k2 = unique('dead');
    const b2 = counted(k2, { metadata: { count_key: k2, router_mode: 'delay:3000' } });
    post(a.url, { headers: { 'idempotency-key': k2 }, body: b2 }).catch(() => {});
    await claimed(gws.keyPrefix, k2);
    expect((await post(b.url, { headers: { 'idempotency-key': k2 }, body: b2 })).status).toBe(409);
    // Kill the master first (so no worker is respawned), then its workers: no log phase runs.
    const workers = fs.readFileSync(`/proc/${a.pid}/task/${a.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    expect(workers.length).toBeGreaterThan(0);
    a.kill('SIGKILL');
    for (const w of workers) process.kill(w, 'SIGKILL');
    const killedAt = Date.now();
    await a.stop();
    const ran = await until(
      async () => {
        const r = await post(b.url, { headers: { 'idempotency-key': k2 }, body: counted(k2) });
        return r.status !== 409 ? r : undefined;
      },
      10000,
      'the marker to expire',
    );
    // delay 3000 > timeout 1000: the Router's late reply is dropped; the 504 is not stored.
    expect([200, 504]).toContain(ran.status);
    expect(Date.now() - killedAt).toBeLessThan(2000 + 1000 + 1000);
    expect(unexpectedErrors(b.errorLog())).toEqual([]);
    await b.stop();
  }, 60000);
});
