'use strict';
// Runs the container entrypoint (deploy/docker-entrypoint.sh) and the health check scripts for
// real, against the repository instead of the image: same script, same render → nginx -t →
// exec nginx, same prefix layout; only BEAMLINE_HOME, the prefix, the runtime (Debian's nginx
// with the Lua module instead of OpenResty) and the binaries differ. When the tests run as root,
// the whole thing runs as `nobody`, as the image runs as an unprivileged user, so anything that
// needs root or writes outside the prefix fails here (as the current user instead when nobody
// cannot read the checkout).
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const { startNats, startRouter, track, stopAll, freePort, waitForPortClosed, REPO_ROOT } = require('../support/processes');
const { portOpen } = require('../../scripts/lib/net');
const { request } = require('../support/gateway');
const { compileLua } = require('../../scripts/lib/build');
const { nginxBin, workerPids } = require('../../scripts/lib/nginx');
const { detectRuntime } = require('../../scripts/lib/render');

const ENTRYPOINT = path.join(REPO_ROOT, 'deploy', 'docker-entrypoint.sh');
const HEALTHCHECK = path.join(REPO_ROOT, 'deploy', 'healthcheck.js');
const NOBODY = 65534;
const SETPRIV = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'];
// As root, run the gateway as nobody (setpriv is util-linux, on every Debian) — provided nobody
// can read the checkout (a clone under a 0700 home directory cannot be); otherwise as we are.
const AS_NOBODY =
  process.getuid &&
  process.getuid() === 0 &&
  spawnSync(SETPRIV[0], [
    ...SETPRIV.slice(1),
    '/bin/sh',
    '-c',
    'test -r "$1/package.json" && test -r "$1/scripts/render.js" && test -x "$1/templates" && test -x "$2"',
    'sh',
    REPO_ROOT,
    process.execPath,
  ]).status === 0;
const asUser = (cmd, args) => (AS_NOBODY ? { command: SETPRIV[0], args: [...SETPRIV.slice(1), cmd, ...args] } : { command: cmd, args });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const prefixes = [];

/**
 * Starts the entrypoint like a container runtime does: stdout/stderr owned by the user the
 * process runs as (runc chowns PID 1's stdio to the container user), here one log file.
 * Tracked, so stopAll() stops it (by PID) if a test does not.
 */
async function startEntrypoint(env, port) {
  const dir = makePrefix();
  const logFile = path.join(dir, 'stdio.log');
  fs.writeFileSync(logFile, '');
  if (AS_NOBODY) fs.chownSync(logFile, NOBODY, NOBODY);
  const fd = fs.openSync(logFile, 'a');
  const { command, args } = asUser('/bin/sh', [ENTRYPOINT]);
  let child;
  try {
    child = spawn(command, args, { cwd: REPO_ROOT, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', fd, fd] });
  } finally {
    fs.closeSync(fd);
  }
  let exitInfo = null;
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    }),
  );
  const handle = track({
    pid: child.pid,
    tail: (n = 40) =>
      fs
        .readFileSync(logFile, 'utf8')
        .split('\n')
        .slice(-n - 1)
        .join('\n'),
    kill: (sig) => exitInfo === null && child.kill(sig),
    async waitExit(ms) {
      let t;
      try {
        return await Promise.race([
          exited,
          new Promise((_, rej) => {
            t = setTimeout(() => rej(new Error(`entrypoint still running after ${ms} ms`)), ms);
          }),
        ]);
      } finally {
        clearTimeout(t);
      }
    },
    async stop() {
      if (exitInfo !== null) return;
      child.kill('SIGTERM');
      await handle.waitExit(5000).catch(() => {
        child.kill('SIGKILL');
        return exited;
      });
    },
  });
  const deadline = Date.now() + 30000;
  // Ready when the shell has exec'd nginx and the port accepts connections (the port alone could
  // be another process's on a busy machine).
  const isNginx = () => {
    try {
      return /^Name:\s+nginx$/m.test(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
    } catch (e) {
      return false;
    }
  };
  while (!(isNginx() && (await portOpen(port)))) {
    if (exitInfo !== null || Date.now() > deadline) {
      await handle.stop();
      throw new Error(`entrypoint did not start (${JSON.stringify(exitInfo)}):\n${handle.tail()}`);
    }
    await sleep(25);
  }
  return handle;
}

function makePrefix() {
  // Not under the test's private temp dir (0700 root): the unprivileged user must reach it.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'beamline-entrypoint-'));
  fs.chmodSync(dir, 0o700);
  if (AS_NOBODY) fs.chownSync(dir, NOBODY, NOBODY);
  prefixes.push(dir);
  return dir;
}

function entrypointEnv(prefix, port, natsUrl, extra = {}) {
  return {
    BEAMLINE_HOME: REPO_ROOT,
    GATEWAY_PREFIX: prefix,
    GATEWAY_RUNTIME: detectRuntime(),
    NGINX_BIN: nginxBin(),
    NODE_BIN: process.execPath,
    GATEWAY_CONFIG: path.join(REPO_ROOT, 'gateway.yaml'),
    // the image's ENV
    GATEWAY_LISTEN: '127.0.0.1',
    GATEWAY_ACCESS_LOG: 'stdout',
    GATEWAY_ERROR_LOG: 'stderr',
    GATEWAY_PORT: String(port),
    NATS_URL: natsUrl,
    GATEWAY_WORKERS: '2',
    ...extra,
  };
}

function procStatus(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return { uid: Number(/^Uid:\s+(\d+)/m.exec(status)[1]), name: /^Name:\s+(\S+)/m.exec(status)[1] };
}

function healthcheck(args, env = {}) {
  const { command, args: a } = asUser(process.execPath, [HEALTHCHECK, ...args]);
  const r = spawnSync(command, a, { encoding: 'utf8', env: { PATH: process.env.PATH, ...env }, timeout: 10000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

let nats;
beforeAll(async () => {
  compileLua();
  nats = await startNats();
  await startRouter({ natsUrl: nats.url });
});

afterAll(async () => {
  await stopAll();
  for (const p of prefixes) fs.rmSync(p, { recursive: true, force: true });
});

describe('deploy/docker-entrypoint.sh', () => {
  let gw;
  let port;
  let prefix;

  beforeAll(async () => {
    port = await freePort();
    prefix = makePrefix();
    gw = await startEntrypoint(entrypointEnv(prefix, port, nats.url), port);
  });

  test('renders, checks, then nginx replaces the shell as the process the runtime signals', async () => {
    expect(gw.tail()).toMatch(/config: .*gateway\.yaml -> /);
    expect(gw.tail()).toMatch(/test is successful/); // nginx -t ran before the start
    // setpriv and sh both exec: the PID we started is the nginx master now
    const master = procStatus(gw.pid);
    expect(master.name).toBe('nginx');
    expect(fs.readFileSync(`/proc/${gw.pid}/cmdline`, 'utf8')).toMatch(/^nginx: master process/);
    const workers = workerPids(gw.pid);
    expect(workers.length).toBe(2);
    if (AS_NOBODY) {
      // master and workers unprivileged; no `user` directive needed
      expect(master.uid).toBe(NOBODY);
      for (const w of workers) expect(procStatus(w).uid).toBe(NOBODY);
    }
    expect(fs.readFileSync(path.join(prefix, 'nginx.conf'), 'utf8')).not.toMatch(/^\s*user\s/m);
  });

  test('writes only inside the prefix: config, gateway.json (0600), pid, temp dirs', () => {
    const entries = fs.readdirSync(prefix).sort();
    expect(entries).toEqual(['conf.d', 'gateway.json', 'logs', 'nginx.conf', 'tmp']);
    const gj = fs.statSync(path.join(prefix, 'gateway.json'));
    expect(gj.mode & 0o777).toBe(0o600);
    if (AS_NOBODY) expect(gj.uid).toBe(NOBODY);
    expect(Number(fs.readFileSync(path.join(prefix, 'logs', 'nginx.pid'), 'utf8'))).toBe(gw.pid);
    // logs go to stdout/stderr, not files
    expect(fs.readdirSync(path.join(prefix, 'logs'))).toEqual(['nginx.pid']);
  });

  test('serves /healthz, /readyz (NATS up) and a decide through the Router', async () => {
    const url = `http://127.0.0.1:${port}`;
    expect((await request(url, { path: '/healthz' })).json).toEqual({ status: 'ok' });
    let ready;
    for (let i = 0; i < 100; i++) {
      ready = await request(url, { path: '/readyz' });
      if (ready.status === 200) break;
      await sleep(50);
    }
    expect(ready.status).toBe(200);
    const r = await request(url, {
      method: 'POST',
      path: '/api/v1/routes/decide',
      headers: { 'Content-Type': 'application/json', 'X-Tenant-ID': 't1' },
      body: JSON.stringify({ version: '1', task: { type: 'chat', payload: { text: 'hi' } } }),
    });
    expect(r.status).toBe(200);
    expect(r.json.ok).toBe(true);
    // JSON access log on stdout (captured in the process log)
    await sleep(100);
    expect(gw.tail(200)).toMatch(/"route":"decide","path":"\/api\/v1\/routes\/decide","status":200/);
  });

  test('the health check script finds the port in the rendered gateway.json (as the same user)', () => {
    const ok = healthcheck(['--prefix', prefix, '--path', '/healthz']);
    expect(ok).toEqual({ code: 0, out: expect.stringContaining(`http://127.0.0.1:${port}/healthz -> 200 {"status":"ok"}`) });
    expect(healthcheck(['--prefix', prefix, '--path', '/readyz']).code).toBe(0);
    expect(healthcheck(['--prefix', prefix, '--path', '/nope'])).toEqual({ code: 1, out: expect.stringContaining('-> 404') });
  });

  test('SIGQUIT (the image STOPSIGNAL) lets in-flight requests finish, then nginx exits 0', async () => {
    const url = `http://127.0.0.1:${port}`;
    const slow = request(url, {
      method: 'POST',
      path: '/api/v1/routes/decide',
      headers: { 'Content-Type': 'application/json', 'X-Tenant-ID': 't1' },
      body: JSON.stringify({ version: '1', task: { type: 'chat', payload: {} }, metadata: { router_mode: 'delay:1500' } }),
    });
    await sleep(300); // the request is waiting for the Router
    const t0 = Date.now();
    expect(gw.kill('SIGQUIT')).toBe(true);
    const r = await slow;
    expect(r.status).toBe(200);
    expect(r.json.ok).toBe(true);
    const exit = await gw.waitExit(15000);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    await waitForPortClosed(port);
    // and the health check now fails
    expect(healthcheck(['--prefix', prefix]).code).toBe(1);
  });
});

describe('deploy/docker-entrypoint.sh with a bad config', () => {
  test('exits non-zero naming the field, and nginx never starts', async () => {
    const port = await freePort();
    const prefix = makePrefix();
    const { command, args } = asUser('/bin/sh', [ENTRYPOINT]);
    const r = spawnSync(command, args, {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, ...entrypointEnv(prefix, port, nats.url, { GATEWAY_PORT: 'eighty' }) },
      timeout: 20000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('server.port (from GATEWAY_PORT): must be integer');
    expect(fs.existsSync(path.join(prefix, 'nginx.conf'))).toBe(false);
  });

  test('a config nginx rejects stops at the `nginx -t` check, before exec', async () => {
    const port = await freePort();
    const prefix = makePrefix();
    const { command, args } = asUser('/bin/sh', [ENTRYPOINT]);
    // a Lua dir that does not exist: render succeeds, init_by_lua fails under `nginx -t`
    const env = { PATH: process.env.PATH, ...entrypointEnv(prefix, port, nats.url), BEAMLINE_HOME: REPO_ROOT };
    const r = spawnSync(command, args, {
      encoding: 'utf8',
      env: { ...env, GATEWAY_CONFIG: path.join(REPO_ROOT, 'gateway.example.yaml'), GATEWAY_ERROR_LOG: '/nonexistent-dir/error.log' },
      timeout: 20000,
    });
    expect(r.status).toBe(1);
    expect(`${r.stdout}${r.stderr}`).toMatch(/nonexistent-dir\/error\.log/);
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/test is successful/);
  });
});

describe('deploy/router-healthcheck.js (compose Router health check)', () => {
  const SCRIPT = path.join(REPO_ROOT, 'deploy', 'router-healthcheck.js');
  const run = (args, env = {}) =>
    spawnSync(process.execPath, [SCRIPT, ...args], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, ...env },
      timeout: 15000,
      cwd: REPO_ROOT,
    });

  test('exit 0 when the Router answers on NATS_URL', () => {
    const r = run([], { NATS_URL: nats.url });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('beamline.router.v1.decide: router answered ok=true');
  });

  test('exit 1 with no responder on the subject, and with NATS down', async () => {
    const none = run(['--nats', nats.url, '--subject', 'beamline.nobody.here', '--timeout-ms', '1000']);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/503|no responders/i);
    const down = run(['--nats', `nats://127.0.0.1:${await freePort()}`, '--timeout-ms', '500']);
    expect(down.status).toBe(1);
  });
});
