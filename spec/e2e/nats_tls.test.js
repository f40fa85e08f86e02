'use strict';
// End-to-end, issue 8: NATS over TLS. A real nats-server with a TLS listener and certificates
// this test makes with `openssl` (spec/support/tls.js): a CA, a server certificate for
// 127.0.0.1/localhost, a client certificate, and an unrelated CA. The gateway reads INFO in clear
// text, upgrades the cosocket (sslhandshake) and only then sends CONNECT.
//   - tls:// with the right CA: connected, decide round trip 200 (Router on TLS too)
//   - a tls:// server given by IP without nats.tls.server_name: refused by the config (nginx
//     checks names with X509_check_host, which never matches an IP SAN)
//   - nats:// to a server whose INFO says tls_required: upgraded as well
//   - the wrong CA: stays disconnected, an [error] line naming the TLS failure, /readyz 503
//   - a server name the certificate does not carry: rejected the same way
//   - a server requiring client certificates: works with nats.tls.cert_file/key_file, fails without
//   - a client certificate file that cannot be read: nginx refuses to start, naming the file
const path = require('path');
const { startGateway: startGatewayPlain, request, waitReady, waitDecideOk } = require('../support/gateway');

// Every test here refuses a certificate on purpose somewhere: the failed handshakes are logged at
// [error] (that line is what an operator needs), so they are expected in this file.
const HANDSHAKE_FAILED = [/tls handshake failed/, /SSL_do_handshake\(\) failed/, /(recv|send)\(\) failed .*context: ngx\.timer/];
const startGateway = (opts) => startGatewayPlain({ ...opts, expectErrorLog: HANDSHAKE_FAILED });
const { startNats, startRouterClient, stopAll, tmpRoot } = require('../support/processes');
const { makeCerts, natsTlsConfig } = require('../support/tls');
const { loadConfig } = require('../../scripts/lib/config');
const { render } = require('../../scripts/lib/render');
const { spawnSync } = require('child_process');
const { nginxBin, prefixArgs } = require('../../scripts/lib/nginx');
const { sleep } = require('../support/load');

let certs;

function configure(servers, tls) {
  return (raw) => {
    raw.routes = { ...(raw.routes || {}) };
    raw.routes.decide = { ...(raw.routes.decide || {}), rate_limit: { limit: 1000000000, window_seconds: 60 } };
    raw.nats = { ...(raw.nats || {}), servers, reconnect_wait_ms: 100, reconnect_wait_max_ms: 500, tls };
  };
}

/** Waits `ms` and checks the gateway never became ready meanwhile; returns the last /readyz. */
async function staysUnready(gw, ms) {
  const deadline = Date.now() + ms;
  let r;
  do {
    r = await request(gw.url, { path: '/readyz' });
    expect(r.status).toBe(503);
    await sleep(100);
  } while (Date.now() < deadline);
  return r;
}

beforeAll(() => {
  certs = makeCerts(path.join(tmpRoot(), 'tls-certs'));
});
afterAll(() => stopAll());

describe('TLS listener (server certificate only)', () => {
  let nats;
  beforeAll(async () => {
    nats = await startNats({ config: natsTlsConfig(certs, { verify: false }) });
    // The Router verifies the server with the same test CA.
    await startRouterClient({ servers: nats.url.replace('nats://', 'tls://'), connect: { tls: { caFile: certs.ca } } });
  });

  test('tls:// with the right CA: connected over TLS, decide round trip 200', async () => {
    const gw = await startGateway({
      configure: configure([`tls://127.0.0.1:${nats.port}`], { ca_file: certs.ca, server_name: 'localhost' }),
    });
    await waitReady(gw);
    await waitDecideOk(gw);
    const h = await request(gw.url, { path: '/health' });
    expect(h.json.nats).toEqual({ connected: true, server: `127.0.0.1:${nats.port}` });
    expect(gw.errorLog()).toMatch(/nats: connected to 127\.0\.0\.1:\d+/);
    expect(gw.errorLog()).not.toMatch(/\[error\]|\[alert\]|\[crit\]/);
    await gw.stop();
  });

  test('tls:// by IP address without nats.tls.server_name: refused when the config is loaded', () => {
    expect(() =>
      loadConfig({
        env: {},
        overrides: (raw) => {
          raw.nats = { servers: [`tls://127.0.0.1:${nats.port}`], tls: { ca_file: certs.ca } };
        },
      }),
    ).toThrow(/nats\.tls\.server_name: required when a tls:\/\/ server is given by IP address/);
  });

  test('cert_file without key_file: refused when the config is loaded', () => {
    expect(() =>
      loadConfig({
        env: {},
        overrides: (raw) => {
          raw.nats = { servers: ['tls://localhost:4222'], tls: { cert_file: certs.clientCert } };
        },
      }),
    ).toThrow(/nats\.tls\.cert_file and nats\.tls\.key_file must be given together/);
  });

  test('nats:// to a server whose INFO says tls_required: upgraded before CONNECT', async () => {
    const gw = await startGateway({ configure: configure([nats.url], { ca_file: certs.ca, server_name: 'localhost' }) });
    await waitReady(gw);
    await waitDecideOk(gw);
    await gw.stop();
  });

  test('wrong CA: stays disconnected, a clear [error] line, /readyz 503, decide 503', async () => {
    const gw = await startGateway({
      configure: configure([`tls://127.0.0.1:${nats.port}`], { ca_file: certs.otherCa, server_name: 'localhost' }),
    });
    const r = await staysUnready(gw, 1500);
    expect(r.json).toEqual({ status: 'unready', reason: 'nats_disconnected' });
    const d = await request(gw.url, {
      method: 'POST',
      path: '/api/v1/routes/decide',
      headers: { 'content-type': 'application/json', 'x-tenant-id': 't1' },
      body: JSON.stringify({ version: '1', task: { type: 'chat', payload: {} } }),
    });
    expect(d.status).toBe(503);
    expect(d.json.error.code).toBe('unavailable');
    const log = gw.errorLog();
    const line = log.split('\n').find((l) => /tls handshake failed/.test(l));
    console.log(`wrong CA, log line: ${line && line.replace(/^.*?nats: /, 'nats: ')}`);
    expect(line).toMatch(
      /\[error\].*nats: connect to 127\.0\.0\.1:\d+ failed: tls handshake failed \(server name localhost, verified\): \d+: unable to verify the first certificate/,
    );
    await gw.stop();
  });

  test('server name the certificate does not carry: rejected', async () => {
    const gw = await startGateway({
      configure: configure([`tls://127.0.0.1:${nats.port}`], { ca_file: certs.ca, server_name: 'nats.example.org' }),
    });
    await staysUnready(gw, 1500);
    const line = gw
      .errorLog()
      .split('\n')
      .find((l) => /tls handshake failed/.test(l));
    console.log(`wrong server name, log line: ${line && line.replace(/^.*?nats: /, 'nats: ')}`);
    expect(line).toMatch(
      /\[error\].*tls handshake failed \(server name nats\.example\.org, verified\): certificate host mismatch, context/,
    );
    await gw.stop();
  });

  test('verify: false connects whatever the CA (explicit opt-out)', async () => {
    const gw = await startGateway({ configure: configure([`tls://127.0.0.1:${nats.port}`], { ca_file: certs.otherCa, verify: false }) });
    await waitReady(gw);
    await gw.stop();
  });
});

describe('TLS listener requiring client certificates (verify: true in the nats tls block)', () => {
  let nats;
  beforeAll(async () => {
    nats = await startNats({ config: natsTlsConfig(certs, { verify: true }) });
    await startRouterClient({
      servers: `tls://127.0.0.1:${nats.port}`,
      connect: { tls: { caFile: certs.ca, certFile: certs.clientCert, keyFile: certs.clientKey } },
    });
  });

  test('with nats.tls.cert_file/key_file: connected, decide 200', async () => {
    const gw = await startGateway({
      configure: configure([`tls://127.0.0.1:${nats.port}`], {
        ca_file: certs.ca,
        server_name: 'localhost',
        cert_file: certs.clientCert,
        key_file: certs.clientKey,
      }),
    });
    await waitReady(gw);
    await waitDecideOk(gw);
    // the key file is 0600 root: only the master read it; the workers got the parsed key
    expect(gw.errorLog()).not.toMatch(/\[error\]|\[alert\]|\[crit\]/);
    await gw.stop();
  });

  test('without a client certificate: refused, stays disconnected', async () => {
    const gw = await startGateway({
      configure: configure([`tls://127.0.0.1:${nats.port}`], { ca_file: certs.ca, server_name: 'localhost' }),
    });
    await staysUnready(gw, 1500);
    const lines = gw
      .errorLog()
      .split('\n')
      .filter((l) => /nats: connect to/.test(l));
    console.log(`no client certificate, log line: ${lines[0] && lines[0].replace(/^.*?nats: /, 'nats: ')}`);
    expect(lines.length).toBeGreaterThan(0);
    await gw.stop();
  });

  test('an unreadable client certificate file: nginx refuses to start, naming the file', () => {
    const prefix = path.join(tmpRoot(), 'tls-bad-cert');
    const missing = path.join(certs.dir, 'missing.pem');
    const { config } = loadConfig({
      env: {},
      overrides: (raw) => {
        raw.server = { ...(raw.server || {}), listen: '127.0.0.1', port: 1 };
        raw.nats = {
          ...(raw.nats || {}),
          servers: [`tls://localhost:${nats.port}`],
          tls: { ca_file: certs.ca, cert_file: missing, key_file: certs.clientKey },
        };
      },
    });
    render(config, { prefix });
    // init_by_lua (where the key is loaded) does not run under `nginx -t`: start it for real;
    // it exits at once (port 1 is never reached: init_by_lua fails first)
    const r = spawnSync(nginxBin(), prefixArgs(prefix), { encoding: 'utf8', timeout: 10000 });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`init_by_lua error: beamline: nats.tls.cert_file: cannot read ${missing}: No such file or directory`);
  });
});
