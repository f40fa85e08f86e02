'use strict';
// deploy/healthcheck.js (the image's HEALTHCHECK): where it connects, and its exit codes against
// a real HTTP server on 127.0.0.1.
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const { spawn } = require('child_process');
const { connectHost, target, parseArgs } = require('../../deploy/healthcheck');
const { freePort } = require('../../scripts/lib/net');

const SCRIPT = path.resolve(__dirname, '..', '..', 'deploy', 'healthcheck.js');

function run(args, env = {}) {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [SCRIPT, ...args], { env: { PATH: process.env.PATH, ...env } });
    let out = '';
    c.stdout.on('data', (d) => {
      out += d;
    });
    c.stderr.on('data', (d) => {
      out += d;
    });
    c.on('exit', (code) => resolve({ code, out }));
  });
}

describe('deploy/healthcheck.js', () => {
  let server;
  let port;
  let status = 200;
  let seen = [];
  let dir;

  beforeAll(async () => {
    port = await freePort();
    server = http.createServer((req, res) => {
      seen.push(req.url);
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(status === 200 ? '{"status":"ok"}' : '{"status":"unready","reason":"nats_disconnected"}');
    });
    await new Promise((r) => server.listen(port, '127.0.0.1', r));
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'beamline-hc-'));
  });

  afterAll(async () => {
    await new Promise((r) => server.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    status = 200;
    seen = [];
  });

  test('wildcard and named listen addresses map to a reachable host', () => {
    expect(connectHost('0.0.0.0')).toBe('127.0.0.1');
    expect(connectHost('localhost')).toBe('127.0.0.1');
    expect(connectHost(undefined)).toBe('127.0.0.1');
    expect(connectHost('[::]')).toBe('::1');
    expect(connectHost('[::1]')).toBe('::1');
    expect(connectHost('10.1.2.3')).toBe('10.1.2.3');
  });

  test('the address comes from <prefix>/gateway.json, else GATEWAY_LISTEN/GATEWAY_PORT, else 127.0.0.1:8080', () => {
    fs.writeFileSync(path.join(dir, 'gateway.json'), JSON.stringify({ server: { listen: '0.0.0.0', port: 9123 } }));
    expect(target(dir, { GATEWAY_PORT: '1' })).toEqual({ host: '127.0.0.1', port: 9123 });
    expect(target('/nonexistent', { GATEWAY_PORT: '9000', GATEWAY_LISTEN: '127.0.0.2' })).toEqual({ host: '127.0.0.2', port: 9000 });
    expect(target('/nonexistent', {})).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(() => parseArgs(['--path', 'healthz'])).toThrow(/start with \//);
    expect(() => parseArgs(['--bogus'])).toThrow(/unknown argument/);
    expect(parseArgs(['--prefix=/x', '--timeout-ms', '500'])).toMatchObject({ prefix: '/x', timeoutMs: 500, path: '/healthz' });
  });

  test('exit 0 on 200, via the rendered config', async () => {
    fs.writeFileSync(path.join(dir, 'gateway.json'), JSON.stringify({ server: { listen: '0.0.0.0', port } }));
    const r = await run(['--prefix', dir, '--path', '/healthz']);
    expect(r).toEqual({ code: 0, out: `http://127.0.0.1:${port}/healthz -> 200 {"status":"ok"}\n` });
    expect(seen).toEqual(['/healthz']);
  });

  test('exit 1 on any other status, on a refused connection and on a timeout', async () => {
    status = 503;
    expect((await run(['--url', `http://127.0.0.1:${port}/readyz`])).code).toBe(1);
    const closed = await freePort();
    const refused = await run(['--url', `http://127.0.0.1:${closed}/healthz`]);
    expect(refused.code).toBe(1);
    expect(refused.out).toMatch(/ECONNREFUSED/);
    // a listener that never answers
    const net = require('net');
    const silent = net.createServer(() => {});
    const sp = await freePort();
    await new Promise((r) => silent.listen(sp, '127.0.0.1', r));
    try {
      const t = await run(['--url', `http://127.0.0.1:${sp}/healthz`, '--timeout-ms', '300']);
      expect(t).toEqual({ code: 1, out: expect.stringContaining('no answer within 300 ms') });
    } finally {
      silent.close();
    }
  });
});
