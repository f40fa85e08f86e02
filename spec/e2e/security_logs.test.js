'use strict';
// Issue 17, items 3, 4 and 7: API keys never reach a log at the default log level (and info or
// debug warns at start); client values in the shadow-mismatch line cannot inject terminal escapes
// or forge fields; /health shows the NATS server and version only to configured networks.
// Real nginx, nats-server, reference Router; the fake old gateway for the shadow.
const fs = require('fs');
const path = require('path');
const { startGateway, request } = require('../support/gateway');
const { startNats, startRouter, stopAll } = require('../support/processes');
const { startLegacy } = require('../support/legacy');
const { rawExchange } = require('../support/raw_http');
const { DECIDE, decideBody, sha256 } = require('../support/api');
const { sleep } = require('../support/load');

const KEY = 'ak-live-Dup1icat3dHeaderK3y';

const raw = (gw, bytes) => rawExchange(gw.port, bytes);

function post(headerLines, body = decideBody()) {
  return (
    `POST ${DECIDE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n` +
    `${headerLines.map((l) => `${l}\r\n`).join('')}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

const withAuth = (extra) => (raw) => {
  raw.auth = { enabled: true, api_keys: [{ tenant_id: 'acme', key_sha256: sha256(KEY) }] };
  Object.assign(raw, extra);
};

/** Every log file of the gateway's prefix, concatenated. */
function allLogs(gw) {
  const dir = path.join(gw.prefix, 'logs');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .map((f) => fs.readFileSync(path.join(dir, f), 'latin1'))
    .join('\n');
}

let nats;
beforeAll(async () => {
  nats = await startNats();
  await startRouter({ natsUrl: nats.url, args: ['--fast'] });
});
afterAll(() => stopAll());

describe('API keys in logs (item 3)', () => {
  const drive = async (gw) => {
    const statuses = [];
    const send = async (lines) => statuses.push((await raw(gw, post(lines))).status);
    await send(['X-Tenant-ID: acme', `Authorization: Bearer ${KEY}`, `Authorization: Bearer ${KEY}`]);
    await send(['X-Tenant-ID: acme', `X-API-Key: ${KEY}`, `X-API-Key: ${KEY}`]);
    await send(['X-Tenant-ID: acme', `X-API-Key: ${KEY}`, 'X-Tenant-ID: acme']);
    await send(['X-Tenant-ID: acme', `Authorization: Bearer ${KEY}`]);
    await sleep(200); // log phases
    return statuses;
  };

  test('the default level is notice: no key in any log, whatever the request', async () => {
    const gw = await startGateway({ natsUrl: nats.url, configure: withAuth({}) });
    try {
      expect(gw.config.log.level).toBe('notice');
      const statuses = await drive(gw);
      // nginx itself refuses a repeated Authorization (400); a repeated X-API-Key is no key (401)
      expect(statuses).toEqual([400, 401, 400, 200]);
      const logs = allLogs(gw);
      expect(logs).not.toContain(KEY);
      expect(logs).not.toContain('nginx writes request headers');
    } finally {
      await gw.stop();
    }
  });

  test('at info nginx itself logs the repeated header with the key: the gateway warns at start', async () => {
    const gw = await startGateway({ natsUrl: nats.url, configure: withAuth({ log: { level: 'info' } }) });
    try {
      await drive(gw);
      const log = gw.errorLog();
      expect(log).toMatch(/\[warn\].*beamline: log\.level is info: nginx writes request headers, API keys included/);
      // what the default level prevents (the reason for the default)
      expect(log).toContain(KEY);
    } finally {
      await gw.stop();
    }
  });
});

describe('log injection through the shadow-mismatch line (item 4)', () => {
  test('raw tenant, request and trace ids of a request the old side answered are escaped', async () => {
    const legacy = await startLegacy({ mode: 'cgw', record: false });
    const gw = await startGateway({
      natsUrl: nats.url,
      configure: (raw) => {
        raw.migration = { enabled: true, legacy_url: legacy.url, share_percent: 0, shadow: { enabled: true } };
      },
    });
    try {
      const evil = 'x\x1b[2J\x1b[31m tenant_id=forged "q"\xff';
      const res = await raw(
        gw,
        post([`X-Tenant-ID: ${evil}`, `X-Request-ID: r\x1b]0;t\x07 request_id=forged`, 'X-Trace-ID: t\x08\x08 trace_id=forged']),
      );
      // the old side answered (Node's parser refuses the control bytes: a 400 without a body)
      expect(res.headers['x-beamline-gateway']).toBe('legacy');
      const deadline = Date.now() + 10000;
      let line;
      while (
        !(line = gw
          .errorLog()
          .split('\n')
          .find((l) => l.includes('shadow mismatch')))
      ) {
        if (Date.now() > deadline) throw new Error(`no mismatch line:\n${gw.errorLog()}`);
        await sleep(50);
      }
      const text = fs.readFileSync(path.join(gw.prefix, 'logs', 'error.log'), 'latin1');
      // eslint-disable-next-line no-control-regex -- the point: no control byte reaches the log
      expect(text).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\xff]/);
      expect(line.match(/ tenant_id=/g)).toHaveLength(1);
      expect(line.match(/ request_id=/g)).toHaveLength(1);
      expect(line.match(/ trace_id=/g)).toHaveLength(1);
      expect(line).toContain('tenant_id=x\\x1b[2J\\x1b[31m\\x20tenant_id=forged\\x20\\x22q\\x22\\xff');
    } finally {
      await gw.stop();
      await legacy.stop();
    }
  });
});

describe('/health details (item 7)', () => {
  const health = async (gw) => (await request(gw.url, { path: '/health' })).json;

  test('by default: status only, no NATS server address and no version', async () => {
    const gw = await startGateway({ natsUrl: nats.url, configure: (raw) => (raw.health = {}) });
    try {
      const deadline = Date.now() + 10000;
      let h;
      while ((h = await health(gw)).status !== 'healthy' && Date.now() < deadline) await sleep(50);
      expect(h).toEqual({
        status: 'healthy',
        service: 'beamline-gateway',
        timestamp: expect.any(String),
        timestamp_ms: expect.any(Number),
        nats: { connected: true },
      });
      expect(JSON.stringify(h)).not.toContain(String(nats.port));
      for (const p of ['/healthz', '/readyz', '/health/live']) {
        const r = await request(gw.url, { path: p });
        expect(Object.keys(r.json)).toEqual(['status']);
      }
    } finally {
      await gw.stop();
    }
  });

  test.each([
    ['health.details_from with the client', { details_from: ['10.1.0.0/16', '127.0.0.0/8', '::1'] }],
    ['health.details: true', { details: true }],
  ])('%s: the server address and the version', async (_, healthCfg) => {
    const gw = await startGateway({ natsUrl: nats.url, configure: (raw) => (raw.health = healthCfg) });
    try {
      const deadline = Date.now() + 10000;
      let h;
      while ((h = await health(gw)).status !== 'healthy' && Date.now() < deadline) await sleep(50);
      expect(h.nats).toEqual({ connected: true, server: `127.0.0.1:${nats.port}` });
      expect(h.version).toBe(require('../../package.json').version);
    } finally {
      await gw.stop();
    }
  });

  test('health.details_from without the client: no details', async () => {
    const gw = await startGateway({ natsUrl: nats.url, configure: (raw) => (raw.health = { details_from: ['10.0.0.0/8'] }) });
    try {
      const h = await health(gw);
      expect(h.version).toBeUndefined();
      expect(h.nats.server).toBeUndefined();
    } finally {
      await gw.stop();
    }
  });
});
