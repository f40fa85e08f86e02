'use strict';
// End-to-end: the real nginx with the compiled Lua, a real nats-server and the reference
// Router. Liveness, the JSON 404/405 shapes, nginx's own errors in JSON, no global writes,
// and `make run`'s orchestrator starting and stopping everything it started.
const net = require('net');
const path = require('path');
const { spawn } = require('child_process');
const { startStack, request } = require('../support/gateway');
const { stopAll, freePort, tmpRoot } = require('../support/processes');
const { portOpen } = require('../../scripts/lib/net');
const { workerPids } = require('../../scripts/lib/nginx');

const ROOT = path.resolve(__dirname, '..', '..');
const ERROR_SHAPE = {
  ok: false,
  error: { code: expect.any(String), message: expect.any(String), intake_error_code: null, details: expect.any(Object) },
  context: { request_id: expect.any(String), trace_id: expect.any(String), tenant_id: expect.any(String) },
};

/** Sends raw bytes and resolves with the raw response text (connection closed by nginx). */
function raw(port, bytes) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    const chunks = [];
    sock.on('data', (c) => chunks.push(c));
    sock.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    sock.on('error', reject);
    sock.write(bytes);
    sock.setTimeout(5000, () => {
      sock.destroy();
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}
const bodyOf = (text) => JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));

describe('the real stack', () => {
  let gw;
  beforeAll(async () => {
    ({ gateway: gw } = await startStack());
  });
  afterAll(() => stopAll());

  test('GET /healthz answers {"status":"ok"} from Lua', async () => {
    const r = await request(gw.url, { path: '/healthz' });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.json).toEqual({ status: 'ok' });
    // No version disclosure.
    expect(r.headers.server).toBe('nginx');
  });

  test('HEAD /healthz is accepted without a body', async () => {
    const r = await request(gw.url, { method: 'HEAD', path: '/healthz' });
    expect(r.status).toBe(200);
    expect(r.body).toBe('');
  });

  test('POST /healthz is 405 with Allow', async () => {
    const r = await request(gw.url, { method: 'POST', path: '/healthz', body: '{}' });
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe('GET, HEAD');
    expect(r.json).toMatchObject(ERROR_SHAPE);
    expect(r.json.error.code).toBe('method_not_allowed');
  });

  test('an unknown path is 404 not_found in the contract error shape', async () => {
    const r = await request(gw.url, { path: '/no/such/path?x=1' });
    expect(r.status).toBe(404);
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.json).toMatchObject(ERROR_SHAPE);
    expect(r.json.error).toEqual({ code: 'not_found', message: expect.any(String), intake_error_code: null, details: {} });
  });

  test('a malformed request line gets the JSON 400, not HTML', async () => {
    const text = await raw(gw.port, 'GET /healthz HTTP/1.1 garbage\r\nHost: x\r\n\r\n');
    expect(text).toMatch(/^HTTP\/1\.1 400/);
    expect(text).not.toMatch(/<html/i);
    expect(bodyOf(text)).toMatchObject({ ...ERROR_SHAPE, error: { ...ERROR_SHAPE.error, code: 'invalid_request' } });
  });

  test('headers too large get the JSON 400', async () => {
    const text = await raw(gw.port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70000)}\r\nConnection: close\r\n\r\n`);
    expect(text).toMatch(/^HTTP\/1\.1 400/);
    expect(bodyOf(text).error.message).toBe('request headers too large');
  });

  test('a body over the limit gets the JSON 413 with limit_bytes', async () => {
    const r = await request(gw.url, {
      method: 'POST',
      path: '/healthz',
      headers: { 'content-length': String(2 * 1048576) },
      body: Buffer.alloc(2 * 1048576, 97),
    }).catch((e) => ({ error: e }));
    // nginx may answer before reading the whole body; either way the answer is the JSON 413.
    expect(r.status).toBe(413);
    expect(r.json.error).toEqual({
      code: 'payload_too_large',
      message: expect.any(String),
      intake_error_code: null,
      details: { limit_bytes: 1048576 },
    });
  });

  test('the Lua wrote no globals and raised no errors', () => {
    const log = gw.errorLog();
    expect(log).not.toMatch(/writing a global Lua variable/);
    expect(log).not.toMatch(/\[error\].*lua/i);
  });
});

/** `node scripts/run.js` on these ports (no NATS_URL: its own nats-server and Router). */
function spawnRun(prefixName, port, natsPort) {
  const env = { ...process.env, GATEWAY_PORT: String(port), NATS_PORT: String(natsPort) };
  delete env.NATS_URL;
  const child = spawn(process.execPath, [path.join(ROOT, 'scripts', 'run.js'), '--prefix', path.join(tmpRoot(), prefixName)], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const collect = (d) => {
    out += d;
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  return { child, exited, output: () => out };
}

describe('make run (scripts/run.js)', () => {
  test('starts nats-server, the Router and nginx, serves /healthz, and SIGTERM stops them all', async () => {
    const port = await freePort();
    const natsPort = await freePort();
    const run = spawnRun('run-prefix', port, natsPort);
    const { child, exited } = run;
    let out;
    try {
      const deadline = Date.now() + 30000;
      while (!/Beamline gateway listening on http:\/\/127\.0\.0\.1:\d+/.test((out = run.output()))) {
        if (Date.now() > deadline) throw new Error(`run did not come up:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const pids = [...out.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
      expect(pids).toHaveLength(3); // nats-server, Router, nginx master
      const workers = workerPids(pids[2]);
      expect(workers.length).toBeGreaterThanOrEqual(1);
      const r = await request(`http://127.0.0.1:${port}`, { path: '/healthz' });
      expect(r.json).toEqual({ status: 'ok' });
      // The Router admin routes (§12), answered by the reference Router.
      const h = await request(`http://127.0.0.1:${port}`, { path: '/api/v1/extensions/health', headers: { 'x-tenant-id': 'demo' } });
      expect(h.status).toBe(200);
      expect(h.json.extensions.map((e) => e.id)).toContain('pii-validator');
      const c = await request(`http://127.0.0.1:${port}`, {
        path: '/api/v1/policies/demo/default/complexity',
        headers: { 'x-tenant-id': 'demo' },
      });
      expect(c.json).toMatchObject({ tenant_id: 'demo', policy_id: 'default', complexity: { providers: 3 } });
      // The address was announced after nginx listened, and the hint after the address.
      const all = run.output();
      expect(all.indexOf('try: curl')).toBeGreaterThan(all.indexOf('Beamline gateway listening on'));

      child.kill('SIGTERM');
      const { code } = await exited;
      expect(code).toBe(0);
      for (const pid of [...pids, ...workers]) {
        expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
      }
      expect(await portOpen(port)).toBe(false);
      expect(await portOpen(natsPort)).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  test('a port another process holds: no "listening" announcement, the port named and how to choose another, exit 1', async () => {
    const holder = net.createServer();
    await new Promise((r) => holder.listen(0, '127.0.0.1', r));
    const port = holder.address().port;
    const run = spawnRun('run-taken', port, await freePort());
    try {
      const { code } = await run.exited;
      const out = run.output();
      expect(code).toBe(1);
      expect(out).toContain(`port ${port} on 127.0.0.1 is already in use by another process`);
      expect(out).toContain(`GATEWAY_PORT=${port + 1} make run`);
      expect(out).not.toMatch(/listening on http|try: curl/);
    } finally {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
      holder.close();
    }
  });
});
