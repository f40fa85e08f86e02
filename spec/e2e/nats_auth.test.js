'use strict';
// End-to-end, issue 4: NATS authentication of the gateway's per-worker connection against a
// real nats-server configured for token, user/password and nkey auth, through real HTTP
// `POST /api/v1/routes/decide`. Wrong credentials: the gateway stays up, is not ready, and
// answers decide with 503.
//
// The reference Router CLI has no auth options, so the Router here is the reference Router's
// own request handler on a `nats` client connection with the same credentials (startRouterClient).
const http = require('http');
const nkeys = require('nkeys.js');
const { nkeyAuthenticator } = require('nats');
const { startGateway, request, waitReady } = require('../support/gateway');
const { startNats, startRouterClient, stopAll } = require('../support/processes');
const { decideBody, sleep } = require('../support/load');

const DECIDE = '/api/v1/routes/decide';
const TENANT = 't-auth';

function configure(nats) {
  return (raw) => {
    raw.routes = { ...(raw.routes || {}) };
    raw.routes.decide = { ...(raw.routes.decide || {}), rate_limit: { limit: 1000000000, window_seconds: 60 } };
    raw.nats = { ...(raw.nats || {}), ...nats, reconnect_wait_max_ms: 1000 };
  };
}

function decide(gw, id, mode) {
  return request(gw.url, {
    method: 'POST',
    path: DECIDE,
    headers: { 'content-type': 'application/json', 'x-tenant-id': TENANT },
    body: decideBody(id, mode),
  });
}

/** The server's view of its client connections (monitoring port). */
function connz(httpPort) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: httpPort, path: '/connz?auth=true' }, (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => {
          try {
            resolve(JSON.parse(body));
          } catch (e) {
            reject(e);
          }
        });
      })
      .on('error', reject);
  });
}

const userKp = nkeys.createUser();
const USER_SEED = new TextDecoder().decode(userKp.getSeed());
const USER_PUB = userKp.getPublicKey();
const OTHER_SEED = new TextDecoder().decode(nkeys.createUser().getSeed());

const METHODS = [
  {
    name: 'token',
    server: 'authorization { token: "tok-s3cret_1" }',
    router: { token: 'tok-s3cret_1' },
    good: { token: 'tok-s3cret_1' },
    bad: { token: 'tok-wrong' },
    user: () => undefined,
  },
  {
    name: 'user/password',
    server: 'authorization { users = [ { user: "gw", password: "pw s3cret!" }, { user: "router", password: "rp" } ] }',
    router: { user: 'router', pass: 'rp' },
    good: { user: 'gw', password: 'pw s3cret!' },
    bad: { user: 'gw', password: 'nope' },
    user: () => 'gw',
  },
  {
    name: 'nkey',
    server: `authorization { users = [ { nkey: ${USER_PUB} } ] }`,
    router: { authenticator: nkeyAuthenticator(new TextEncoder().encode(USER_SEED)) },
    good: { nkey_seed: USER_SEED },
    bad: { nkey_seed: OTHER_SEED },
    user: () => USER_PUB,
  },
];

describe.each(METHODS)('NATS auth: $name', (m) => {
  let nats;
  let good;
  let bad;
  beforeAll(async () => {
    nats = await startNats({ config: m.server, httpPort: true });
    await startRouterClient({ servers: nats.url, connect: m.router });
    [good, bad] = await Promise.all([
      startGateway({ natsUrl: nats.url, configure: configure(m.good) }),
      startGateway({ natsUrl: nats.url, configure: configure(m.bad) }),
    ]);
    await waitReady(good);
  });
  afterAll(() => stopAll());

  test('right credentials: connected, ready, decide round trip', async () => {
    const h = await request(good.url, { path: '/health' });
    expect(h.json).toMatchObject({ status: 'healthy', nats: { connected: true, server: `127.0.0.1:${nats.port}` } });
    const r = await decide(good, `auth-ok-${m.name}`, 'echo');
    expect(r.status).toBe(200);
    expect(r.json.context.request_id).toBe(`auth-ok-${m.name}`);
    expect(r.json.decision.metadata.headers).toMatchObject({ tenant_id: TENANT, request_id: `auth-ok-${m.name}`, version: '1' });
    // the server authenticated it as the configured identity
    const conns = (await connz(nats.httpPort)).connections || [];
    const gwConn = conns.find((c) => c.name === 'beamline-gateway');
    expect(gwConn).toBeDefined();
    if (m.user()) expect(gwConn.authorized_user).toBe(m.user());
  });

  test('wrong credentials: the gateway stays up, /readyz 503 nats_disconnected, decide 503', async () => {
    // let it try (and fail) a few times
    await sleep(600);
    const live = await request(bad.url, { path: '/healthz' });
    expect(live.status).toBe(200);
    const ready = await request(bad.url, { path: '/readyz' });
    expect(ready.status).toBe(503);
    expect(ready.json).toEqual({ status: 'unready', reason: 'nats_disconnected' });
    const h = await request(bad.url, { path: '/health' });
    expect(h.status).toBe(200);
    expect(h.json).toMatchObject({ status: 'degraded', nats: { connected: false, server: null } });
    const t0 = performance.now();
    const r = await decide(bad, `auth-bad-${m.name}`);
    const ms = performance.now() - t0;
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    expect(r.json.error.code).toBe('unavailable');
    expect(ms).toBeLessThan(1000);
    console.log(`auth ${m.name}: wrong credentials → /readyz 503 nats_disconnected, decide 503 in ${ms.toFixed(1)} ms`);
    // the worker is alive and keeps retrying: the server saw the violations, nothing crashed
    expect(nats.tail(200)).toMatch(/Authorization Violation|authentication error/i);
    expect(bad.errorLog()).toMatch(/nats: connect to 127\.0\.0\.1:\d+ failed: .*Authorization Violation/i);
    for (const g of [good, bad]) expect(g.errorLog()).not.toMatch(/\[error\]|\[crit\]|\[alert\]|writing a global/);
  });
});
