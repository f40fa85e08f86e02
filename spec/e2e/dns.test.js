'use strict';
// Host names for NATS (issue 18): nginx's resolver reads neither /etc/hosts nor resolv.conf's
// search list, so the renderer resolves hosts-file names and renders `resolver` from dns.* or
// resolv.conf. A name server here is a tiny responder on a loopback port (spec/support/dns.js).
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');
const { startGateway, request, waitReady, waitDecideOk } = require('../support/gateway');
const { startNats, startRouter, stopAll, tmpRoot } = require('../support/processes');
const { startDns } = require('../support/dns');
const { loadConfig, ConfigError } = require('../../scripts/lib/config');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

afterEach(() => stopAll());

async function readyWithin(gw, ms) {
  const t0 = Date.now();
  await waitReady(gw, ms);
  return Date.now() - t0;
}

test('nats://localhost:PORT connects (localhost comes from the hosts file, not DNS)', async () => {
  const nats = await startNats();
  await startRouter({ natsUrl: nats.url });
  const gw = await startGateway({ natsUrl: `nats://localhost:${nats.port}`, configure: (raw) => (raw.dns = { resolvers: [] }) });
  expect(await readyWithin(gw, 5000)).toBeLessThan(5000);
  await waitDecideOk(gw);
  expect(gw.errorLog()).not.toMatch(/no resolver defined/);
});

test('a name of a configured hosts file is connected by its address', async () => {
  const nats = await startNats();
  const hosts = path.join(tmpRoot(), 'hosts-test');
  fs.writeFileSync(hosts, '# test hosts\n127.0.0.1   nats.hosts-file.test  other-alias\n');
  const gw = await startGateway({
    natsUrl: `nats://NATS.hosts-file.test:${nats.port}`,
    configure: (raw) => (raw.dns = { hosts_file: hosts, resolv_conf: '/nonexistent' }),
  });
  await waitReady(gw, 5000);
});

test('a name no hosts file or name server can answer is a config error naming the server', () => {
  expect(() =>
    loadConfig({
      env: {},
      overrides: (raw) => {
        raw.nats = { servers: ['nats://127.0.0.1:4222', 'nats://nowhere.invalid:4222'] };
        raw.dns = { hosts_file: '/nonexistent', resolv_conf: '/nonexistent' };
      },
    }),
  ).toThrow(/nats\.servers\[1\]: the host name nowhere\.invalid cannot be resolved/);
  expect(() => loadConfig({ env: {}, overrides: (raw) => (raw.dns = { resolvers: ['8.8.8.8;'] }) })).toThrow(ConfigError);
  // the same rule for the OTLP collector of tracing (and state.redis.host, spec/e2e/multi_instance)
  expect(() =>
    loadConfig({
      env: {},
      overrides: (raw) => {
        raw.dns = { hosts_file: '/nonexistent', resolv_conf: '/nonexistent' };
        raw.tracing = { enabled: true, endpoint: 'http://otel.invalid:4318/v1/traces' };
      },
    }),
  ).toThrow(/tracing\.endpoint: the host name otel\.invalid cannot be resolved/);
});

test('a DNS name is resolved by the rendered resolver, and a reconnect follows a changed answer', async () => {
  // Two servers on one port at two loopback addresses: the name moves from one to the other.
  const a = await startNats({ host: '127.0.0.2' });
  const b = await startNats({ host: '127.0.0.3', port: a.port });
  const dns = await startDns({ 'nats.moving.test': '127.0.0.2' });
  const gw = await startGateway({
    natsUrl: `nats://nats.moving.test:${a.port}`,
    configure: (raw) => {
      raw.dns = { resolvers: [`127.0.0.1:${dns.port}`], valid_seconds: 1, hosts_file: '/nonexistent' };
      raw.nats = { ...raw.nats, reconnect_wait_ms: 100, reconnect_wait_max_ms: 300 };
    },
  });
  expect(fs.readFileSync(path.join(gw.prefix, 'conf.d', '10-lua.conf'), 'utf8')).toMatch(
    new RegExp(`resolver 127\\.0\\.0\\.1:${dns.port} valid=1s ipv6=off;`),
  );
  await waitReady(gw, 5000);
  expect(dns.queries['nats.moving.test']).toBeGreaterThanOrEqual(1);
  await startRouter({ natsUrl: b.url });
  // The server "moves": the name now points at b, and a goes away.
  dns.records['nats.moving.test'] = '127.0.0.3';
  await sleep(1100); // the cached answer (valid=1s) expires
  await a.stop();
  await waitDecideOk(gw, 10000); // only b has the Router: decide works once the gateway is on b
  const health = await request(gw.url, { path: '/health' });
  expect(health.status).toBe(200);
  await dns.stop();
});

describe('the shipped deployment files resolve their NATS names', () => {
  const repo = path.resolve(__dirname, '..', '..');
  // The NATS URL each deployment gives the gateway.
  function composeNatsUrl() {
    const doc = YAML.parse(fs.readFileSync(path.join(repo, 'docker-compose.yml'), 'utf8'));
    return doc.services.gateway.environment.NATS_URL;
  }
  function k8sNatsUrl() {
    // The ConfigMap carries gateway.yaml: its nats.servers (NATS_URL in the Deployment wins).
    const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(repo, 'deploy', 'k8s', 'configmap.yaml'), 'utf8')).map((d) => d.toJS());
    for (const d of docs) {
      for (const v of Object.values((d && d.data) || {})) {
        const inner = YAML.parse(String(v));
        if (inner && inner.nats && inner.nats.servers) return [].concat(inner.nats.servers)[0];
      }
    }
    throw new Error('no nats.servers in deploy/k8s/configmap.yaml');
  }

  test.each([
    ['docker-compose.yml', composeNatsUrl],
    ['deploy/k8s/configmap.yaml', k8sNatsUrl],
  ])('%s', async (_file, natsUrlOf) => {
    const url = natsUrlOf();
    const m = /^nats:\/\/([^:/]+):(\d+)$/.exec(url);
    expect(m).not.toBeNull();
    const [, host, port] = m;
    expect(host).not.toMatch(/^\d/); // a DNS name, the case this test is about
    // The name answers with a loopback address of its own, where a nats-server listens on the
    // file's port (one that only this test uses).
    const addr = `127.0.${10 + Math.floor(Math.random() * 200)}.${10 + Math.floor(Math.random() * 200)}`;
    const nats = await startNats({ host: addr, port: Number(port) });
    const dns = await startDns({ [host.toLowerCase()]: addr });
    const gw = await startGateway({
      natsUrl: url,
      configure: (raw) => (raw.dns = { resolvers: [`127.0.0.1:${dns.port}`], hosts_file: '/nonexistent' }),
    });
    await waitReady(gw, 5000);
    expect(dns.queries[host.toLowerCase()]).toBeGreaterThanOrEqual(1);
    await dns.stop();
    await nats.stop();
  });
});
