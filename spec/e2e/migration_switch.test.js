'use strict';
// End-to-end, issue 9 (traffic switch): `make switch PERCENT=N` (scripts/switch.js) on a running
// gateway. Under load it drops no request (checked reload: staging render + nginx -t, then the
// live prefix + nginx -s reload); the config file keeps its comments (only the value changes);
// a bad switch (PERCENT=150, a config nginx -t rejects, unrelated pending edits) changes nothing.
const fs = require('fs');
const path = require('path');
const { execFile } = require('child_process');
const { loadConfig } = require('../../scripts/lib/config');
const { render } = require('../../scripts/lib/render');
const { nginxBin, prefixArgs, testConfig } = require('../../scripts/lib/nginx');
const { request } = require('../support/gateway');
const { startProcess, startNats, startRouter, stopAll, tmpRoot, freePort, REPO_ROOT } = require('../support/processes');
const { startLegacy } = require('../support/legacy');
const { startLoad, failures, sleep } = require('../support/load');

const SWITCH = path.join(REPO_ROOT, 'scripts', 'switch.js');
const DECIDE = '/api/v1/routes/decide';
// switch.js loads the config as `make run` does, environment included: give it a clean one.
const ENV = { PATH: process.env.PATH, HOME: process.env.HOME || '/tmp' };

function configText({ port, nats, legacy, share }) {
  return `# Beamline gateway, traffic-switch test config.
# The comments and the layout of this file must survive \`make switch\`.
server:
  listen: 127.0.0.1   # loopback only
  port: ${port}
  workers: 2
nats:
  servers: ["${nats}"]
routes:
  decide:
    rate_limit: { limit: 1000000000, window_seconds: 60 }

# The traffic switch (docs/RUNBOOK.md).
migration:
  enabled: true
  legacy_url: ${legacy}     # the old gateway
  share_percent: ${share}              # moved by make switch
  shadow:
    enabled: false
`;
}

/** Runs a command; resolves {code, stdout, stderr} (never rejects). */
function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: REPO_ROOT, env: ENV, timeout: 60000, ...opts }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const switchTo = (g, percent, extra = []) =>
  run(process.execPath, [SWITCH, '--percent', String(percent), '--config', g.file, '--prefix', g.prefix, ...extra]);

/** Contents of the rendered files of a prefix (to prove a refused switch touched nothing). */
function rendered(prefix) {
  const out = {};
  for (const f of ['nginx.conf', 'gateway.json', ...fs.readdirSync(path.join(prefix, 'conf.d')).map((x) => `conf.d/${x}`)]) {
    out[f] = fs.readFileSync(path.join(prefix, f), 'utf8');
  }
  return out;
}

/** The master's serving workers (not the old ones still finishing requests after a reload). */
function workers(master) {
  return fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        const s = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
        return (
          Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]) === master &&
          !fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').includes('shutting down')
        );
      } catch (err) {
        return false;
      }
    })
    .map(Number)
    .sort();
}

async function sideOf(g, tenant) {
  const r = await request(g.url, {
    method: 'POST',
    path: DECIDE,
    headers: { 'content-type': 'application/json', 'x-tenant-id': tenant },
    body: '{"version":"1","task":{"type":"chat","payload":{}}}',
  });
  return r.headers['x-beamline-gateway'];
}

describe('make switch', () => {
  let legacy;
  let nats;
  let g; // {file, prefix, url, master}

  beforeAll(async () => {
    legacy = await startLegacy({ mode: 'same', record: false });
    nats = await startNats();
    await startRouter({ natsUrl: nats.url, args: ['--fast'] });
    const dir = fs.mkdtempSync(path.join(tmpRoot(), 'switch-'));
    fs.chmodSync(dir, 0o755);
    const port = await freePort();
    const file = path.join(dir, 'gateway.yaml');
    fs.writeFileSync(file, configText({ port, nats: nats.url, legacy: legacy.url, share: 30 }));
    const prefix = path.join(dir, 'nginx');
    const { config } = loadConfig({ file, env: {} });
    render(config, { prefix });
    const t = testConfig(prefix);
    if (!t.ok) throw new Error(t.output);
    const proc = await startProcess({ name: 'nginx-switch', command: nginxBin(), args: prefixArgs(prefix), readyPort: port });
    g = { file, prefix, url: `http://127.0.0.1:${port}`, master: proc.pid };
    const deadline = Date.now() + 10000;
    while ((await request(g.url, { path: '/readyz' })).status !== 200) {
      if (Date.now() > deadline) throw new Error('gateway not ready');
      await sleep(20);
    }
  });
  afterAll(async () => {
    await stopAll();
    await legacy.stop();
  });

  test('30 → 50 → 10 under load: zero failed requests, old → new printed, comments kept', async () => {
    const original = fs.readFileSync(g.file, 'utf8');
    const load = startLoad({
      url: g.url,
      concurrency: 8,
      count: 1000000,
      durationMs: 30000,
      request: (i) => ({
        method: 'POST',
        path: DECIDE,
        headers: { 'content-type': 'application/json', 'x-tenant-id': `load-${i % 5000}` },
        body: '{"version":"1","task":{"type":"chat","payload":{}}}',
      }),
    });
    await sleep(800);
    const up = await switchTo(g, 50);
    expect(up).toMatchObject({ code: 0, stderr: '' });
    expect(up.stdout).toMatch(/migration\.share_percent: 30 → 50 .*nginx reloaded/);
    await sleep(800);
    const down = await switchTo(g, 10);
    expect(down.code).toBe(0);
    expect(down.stdout).toMatch(/migration\.share_percent: 50 → 10 /);
    await sleep(800);
    load.stop();
    const res = await load.done;
    console.log(
      `make switch under load (8 keep-alive loops): ${res.completed} requests ${JSON.stringify(res.statuses)} errors ${res.errors} ` +
        `(reused-socket retries ${res.retries}) in ${(res.elapsedMs / 1000).toFixed(1)} s; switch 30→50: ${up.stdout.trim()}`,
    );
    expect(res.completed).toBeGreaterThan(200);
    expect(failures(res)).toBe(0);
    // only the value changed in the file
    const now = fs.readFileSync(g.file, 'utf8');
    expect(now).toBe(original.replace('share_percent: 30 ', 'share_percent: 10 '));
    // and it is live: a tenant of bucket 20 went to the new side at 50 and back to legacy at 10
    expect(JSON.parse(fs.readFileSync(path.join(g.prefix, 'gateway.json'), 'utf8')).migration.share_percent).toBe(10);
    const zlib = require('zlib');
    const t20 = Array.from({ length: 1000 }, (_, i) => `b-${i}`).find((t) => zlib.crc32(t) % 100 === 20);
    expect(await sideOf(g, t20)).toBe('legacy');
    // the same value again: nothing to do, no reload
    const same = await switchTo(g, 10);
    expect(same.code).toBe(0);
    expect(same.stdout).toMatch(/already live, nothing to do/);
  }, 90000);

  test('a bad switch changes nothing: PERCENT=150, abc, -1 (also through make)', async () => {
    const file = fs.readFileSync(g.file, 'utf8');
    const live = rendered(g.prefix);
    const before = workers(g.master);
    for (const bad of ['150', 'abc', '-1', '']) {
      const r = await switchTo(g, bad);
      expect([bad, r.code]).toEqual([bad, 1]);
      expect(r.stderr).toMatch(/switch refused, nothing changed: (PERCENT must be an integer from 0 to 100|give PERCENT)/);
    }
    const viaMake = await run('make', ['-s', 'switch', 'PERCENT=150', `PREFIX=${g.prefix}`], { env: { ...ENV, GATEWAY_CONFIG: g.file } });
    expect(viaMake.code).not.toBe(0);
    expect(viaMake.stderr).toMatch(/PERCENT must be an integer from 0 to 100, not "150"/);
    expect(fs.readFileSync(g.file, 'utf8')).toBe(file);
    expect(rendered(g.prefix)).toEqual(live);
    expect(workers(g.master)).toEqual(before); // no reload happened
  }, 60000);

  test('a config nginx -t rejects, or unrelated pending edits, are refused and change nothing', async () => {
    const file = fs.readFileSync(g.file, 'utf8');
    const live = rendered(g.prefix);
    const before = workers(g.master);
    // an unrelated edit that is not live: refused (the switch only switches)
    const edited = file.replace('limit: 1000000000', 'limit: 5');
    fs.writeFileSync(g.file, edited);
    const drift = await switchTo(g, 40);
    expect(drift.code).toBe(1);
    expect(drift.stderr).toMatch(/holds other changes that are not live: routes\.decide\.rate_limit\.limit/);
    expect(fs.readFileSync(g.file, 'utf8')).toBe(edited);
    // a legacy host nginx cannot resolve passes the schema but fails nginx -t on the staging render
    const badHost = file.replace(legacy.url, 'http://no-such-host.invalid:9');
    fs.writeFileSync(g.file, badHost);
    const rejected = await switchTo(g, 40, ['--force']);
    expect(rejected.code).toBe(1);
    expect(rejected.stderr).toMatch(/nginx -t failed on the new config:[\s\S]*host not found in upstream/);
    expect(fs.readFileSync(g.file, 'utf8')).toBe(badHost);
    fs.writeFileSync(g.file, file);
    expect(rendered(g.prefix)).toEqual(live);
    expect(workers(g.master)).toEqual(before);
  }, 60000);

  test('SHADOW=on|off toggles the shadow with the same checked reload', async () => {
    const on = await run(process.execPath, [SWITCH, '--shadow', 'on', '--config', g.file, '--prefix', g.prefix]);
    expect(on.code).toBe(0);
    expect(on.stdout).toMatch(/migration\.shadow\.enabled: false → true/);
    expect(fs.readFileSync(path.join(g.prefix, 'conf.d', '20-gateway.conf'), 'utf8')).toMatch(/listen unix:.*shadow-new\.sock/);
    // mirrors happen: the comparison is counted
    const deadline = Date.now() + 10000;
    let compared = 0;
    while (compared === 0 && Date.now() < deadline) {
      await sideOf(g, `sh-${Date.now()}`);
      await sleep(100);
      compared =
        ((await request(g.url, { path: '/metrics' })).body.match(/^gateway_shadow_comparisons_total\{result="match"\} (\d+)$/m) || [
          0, 0,
        ])[1] | 0;
    }
    expect(compared).toBeGreaterThan(0);
    const off = await run(process.execPath, [SWITCH, '--shadow', 'off', '--config', g.file, '--prefix', g.prefix]);
    expect(off.code).toBe(0);
    expect(off.stdout).toMatch(/migration\.shadow\.enabled: true → false/);
    expect(fs.existsSync(path.join(g.prefix, 'shadow-new.sock'))).toBe(false);
  }, 60000);
});
