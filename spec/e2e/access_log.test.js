'use strict';
// The JSON access log (CONTRACT §8): one JSON object per line with time, ids, tenant, method,
// route, status, bytes, request time, Router time and reply code; no secrets.
const fs = require('fs');
const net = require('net');
const path = require('path');
const { startStack, startGateway } = require('../support/gateway');
const { stopAll } = require('../support/processes');
const { DECIDE, decideBody, post, sha256, sleep } = require('../support/api');

const KEY = 'secret-key-4b1d9e7c2a';
let gw;
let nats;
let logFile;
beforeAll(async () => {
  ({ gateway: gw, nats } = await startStack({
    workers: 2,
    configure: (raw) => {
      raw.auth = { enabled: true, api_keys: [{ tenant_id: 'log-t', key_sha256: sha256(KEY) }] };
      raw.router = { request_timeout_ms: 300 };
    },
  }));
  logFile = path.join(gw.prefix, 'logs', 'access.log');
});
afterAll(() => stopAll());

/** The parsed lines written since `offset` (every line must be JSON). */
async function linesSince(offset, expected) {
  const deadline = Date.now() + 3000;
  for (;;) {
    const text = fs.readFileSync(logFile, 'utf8').slice(offset);
    const lines = text.split('\n').filter(Boolean);
    if (lines.length >= expected || Date.now() > deadline) return lines.map((l) => JSON.parse(l));
    await sleep(50);
  }
}
const size = () => fs.statSync(logFile).size;

/** Writes raw bytes on a fresh connection (requests no HTTP client would send); resolves on close. */
function sendRaw(bytes) {
  return new Promise((resolve) => {
    const sock = net.connect({ port: gw.port, host: '127.0.0.1' }, () => sock.end(bytes));
    sock.on('data', () => {});
    sock.on('close', resolve);
    sock.on('error', resolve);
  });
}
const auth = { authorization: `Bearer ${KEY}` };

test('a decide request logs its ids, tenant, route, status, bytes and Router time/code', async () => {
  const off = size();
  const r = await post(gw.url, { tenant: 'log-t', headers: auth, body: decideBody({ request_id: 'req-log-1' }) });
  expect(r.status).toBe(200);
  const [line] = await linesSince(off, 1);
  expect(line).toEqual({
    time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/),
    request_id: 'req-log-1',
    trace_id: r.headers['x-trace-id'],
    tenant_id: 'log-t',
    method: 'POST',
    route: 'decide',
    path: DECIDE,
    status: 200,
    bytes: expect.any(Number),
    request_time: expect.any(Number),
    router_time: expect.any(Number),
    router_code: 'ok',
  });
  expect(line.router_time).toBeLessThanOrEqual(line.request_time + 0.001);
  // Body bytes as sent (chunked framing included).
  expect(line.bytes).toBeGreaterThanOrEqual(Buffer.byteLength(r.body));
});

test('errors log their outcome: Router error code, timeout, and no Router time before the Router', async () => {
  const off = size();
  await post(gw.url, { tenant: 'log-t', headers: auth, body: decideBody({ metadata: { router_mode: 'error:policy_not_found' } }) });
  await post(gw.url, { tenant: 'log-t', headers: auth, body: decideBody({ metadata: { router_mode: 'silence' } }) });
  await post(gw.url, { tenant: 'log-t', headers: { ...auth, 'content-type': 'text/plain' } });
  // Two workers write the log: a line may land after the next request's, so sort by status.
  const lines = (await linesSince(off, 3)).sort((a, b) => a.status - b.status);
  expect(lines.map((l) => [l.status, l.router_code])).toEqual([
    [404, 'policy_not_found'],
    [415, ''],
    [504, 'timeout'],
  ]);
  expect(lines[2].router_time).toBeGreaterThanOrEqual(0.29);
  expect(lines[1].router_time).toBeNull();
  expect(lines[1].tenant_id).toBe('log-t');
});

test('secrets never appear: API keys (valid or not), Authorization, query strings', async () => {
  const off = size();
  await post(gw.url, { tenant: 'log-t', headers: auth });
  await post(gw.url, { tenant: 'log-t', headers: { 'x-api-key': 'wrong-secret-xyz' } });
  await post(gw.url, { tenant: 'log-t', headers: auth, path: `${DECIDE}?api_key=query-secret-abc` });
  const lines = await linesSince(off, 3);
  expect(lines.map((l) => l.status).sort()).toEqual([200, 200, 401]);
  const text = fs.readFileSync(logFile, 'utf8') + gw.errorLog();
  for (const s of [KEY, 'wrong-secret-xyz', 'query-secret-abc', 'Bearer']) expect(text).not.toContain(s);
});

test('client-controlled values are escaped, and lines from nginx itself are JSON too', async () => {
  const off = size();
  const r = await post(gw.url, { tenant: 'log-t', headers: { ...auth, 'x-request-id': 'quote"back\\slash' } });
  expect(r.status).toBe(200);
  await sendRaw('GET /healthz HTTP/1.1 garbage\r\nHost: x\r\n\r\n');
  await fetchHealthz();
  const lines = await linesSince(off, 3);
  // Two workers write the lines, so find them by content rather than by position.
  expect(lines.find((l) => l.method === 'POST').request_id).toBe('quote"back\\slash');
  expect(lines.find((l) => l.status === 400 && l.method !== 'POST')).toBeDefined();
  const hz = lines.find((l) => l.route === 'healthz');
  expect(hz).toMatchObject({ status: 200, request_id: '', tenant_id: '', router_time: null });
});

test("nginx's own errors are logged with the request's method, path and route, not the error page's", async () => {
  const { request } = require('../support/gateway');
  const off = size();
  const big = await request(gw.url, {
    method: 'POST',
    path: `${DECIDE}?q=secret-q`,
    headers: { 'content-type': 'application/json', 'x-tenant-id': 'log-t', ...auth },
    body: 'x'.repeat(1048577),
    ignoreResetErrors: true,
  });
  expect(big.status).toBe(413);
  await sendRaw('TRACE /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  const lines = await linesSince(off, 2);
  expect(lines.find((l) => l.status === 413)).toMatchObject({ method: 'POST', route: 'decide', path: DECIDE });
  expect(lines.find((l) => l.status === 405)).toMatchObject({ method: 'TRACE', route: 'healthz', path: '/healthz' });
  for (const l of lines) expect(l.path).not.toMatch(/__beamline_error|secret-q/);
});

async function fetchHealthz() {
  const { request } = require('../support/gateway');
  return request(gw.url, { path: '/healthz' });
}

describe('log.access_log_buffer_kb: buffered lines', () => {
  const buffered = (flushMs) => (raw) => {
    raw.log = { access_log_buffer_kb: 64, access_log_flush_ms: flushMs };
  };
  const fileOf = (g) => path.join(g.prefix, 'logs', 'access.log');
  const lineCount = (g) => (fs.existsSync(fileOf(g)) ? fs.readFileSync(fileOf(g), 'utf8').split('\n').filter(Boolean).length : 0);

  test('stay in the worker until the buffer is flushed, and are written on a graceful stop', async () => {
    const g = await startGateway({ natsUrl: nats.url, configure: buffered(60000) });
    expect(fs.readFileSync(path.join(g.prefix, 'conf.d', '00-http.conf'), 'utf8')).toContain('beamline_json buffer=64k flush=60000ms;');
    for (let i = 0; i < 3; i++) expect((await post(g.url, { body: decideBody({ request_id: `buf-${i}` }) })).status).toBe(200);
    await sleep(300);
    expect(lineCount(g)).toBe(0); // 60 s flush, buffer far from full: nothing written yet
    await g.quit();
    await g.waitExit(10000);
    const lines = fs
      .readFileSync(fileOf(g), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.request_id).sort()).toEqual(['buf-0', 'buf-1', 'buf-2']);
    await g.stop();
  });

  test('are written after access_log_flush_ms', async () => {
    const g = await startGateway({ natsUrl: nats.url, configure: buffered(200) });
    expect((await post(g.url, { body: decideBody({ request_id: 'buf-flush' }) })).status).toBe(200);
    const deadline = Date.now() + 5000;
    while (lineCount(g) < 1 && Date.now() < deadline) await sleep(50);
    expect(JSON.parse(fs.readFileSync(fileOf(g), 'utf8').trim()).request_id).toBe('buf-flush');
    await g.stop();
  });
});
