#!/usr/bin/env node
'use strict';
// `npm run bench`: throughput, latency, memory and profile of the gateway on the real stack.
//
// Starts its own nginx (config rendered with the benchmark-only /__bench/* locations, access
// log off), nats-server and the reference Router in `--fast` mode on free loopback ports, warms
// up, then measures with wrk (scripts/bench/wrk.lua counts every status; any non-2xx voids the
// run) at each concurrency:
//   bare     GET  /__bench/bare            a fixed JSON from Lua on the same nginx: the ceiling
//   healthz  GET  /healthz                 the gateway's cheapest route
//   decide   POST /api/v1/routes/decide    end to end through NATS and the Router
//   nats     a direct NATS request loop from Node (scripts/bench/nats-loop.js): one connection,
//            the same number of requests in flight, same subject/payload/headers, same Router
// Prints the table and the ratios decide/ceiling and decide/direct-NATS, writes
// bench/results/bench-<time>.json and .svg.
//
//   npm run bench                          the full suite (~10 s per point)
//   npm run bench -- --quick               2 s per point
//   npm run bench -- --memory [--requests 1000000]   worker RSS before/after N decide requests
//   npm run bench -- --memory --tenants 100000   the same, the decides spread round robin over
//            100,000 tenants (X-Tenant-ID bench-<i>): worker RSS and every shared dict's capacity,
//            free space and keys before/after, to show the dicts stay bounded under tenant churn
//   npm run bench -- --curves              cost curves of decide (scripts/bench/curves.js): worker
//            CPU µs per decide, p99 and req/s against the body size (200 B-512 KiB), the
//            concurrency (1-1024) and the number of tenants (1-100,000), each on 1 and 2 nginx
//            workers (--workers 1,2); 3 s per point (--duration), --dimensions payload,concurrency,tenants;
//            writes bench/results/curves-<time>.json and one SVG per dimension
//   npm run bench -- --profile             allocations, jit.profile, perf stat, strace -c, perf dso split
//   npm run bench -- --micro               pure-Lua micro-benchmarks of the decide steps (no nginx)
//   npm run bench -- --state redis [--rounds 2]   decide (c64 unless --concurrency) on a gateway
//                                          with state.backend: local and one with redis (same
//                                          NATS, Router, run); Redis CPU and commands per decide
//   npm run bench -- --streams             SSE streams (CONTRACT §11) on one worker: RSS and fds per
//            idle stream (--idle-streams N, default 10000), decide-to-event latency at 1,000
//            streams of one tenant, decide throughput at c64 with 1,000 streams open vs none
//   npm run bench -- --compare DIR [--rounds 2]   A/B: decide (c64 unless --concurrency) on a
//            gateway running the compiled Lua in DIR ("before", e.g. a dist-lua copied from
//            another commit) and one running this build ("after"), same NATS and Router, rounds
//            alternating; medians of req/s, p99 and worker CPU µs per decide; with --after DIR2
//            the "after" gateway runs the compiled Lua in DIR2 instead of this build; with
//            --together both are loaded at the same time in each round (same machine noise)
// Options: --duration S, --concurrency 1,16,64,256, --targets bare,healthz,decide,nats,
//   --workers N (default: the config's server.workers), --threads N (wrk threads, default 1 or 2),
//   --access-log off|on|buffered (default off; on: one write per request; buffered: 64 KiB, 1 s),
//   --tracing off|on (default off; on: OTLP trace export at 100% sampling to a receiver in this
//   process that accepts and counts the spans; the exported and dropped counts are printed),
//   --config FILE, --out DIR, --max-load L (before starting: wait until the 1-minute load average
//   is below L), --max-busy P (before each point: wait until other processes keep at most P % of
//   the cores busy; the load average is printed too but includes the benchmark's own load),
//   --wait-load S (how long either waits at most, default 300), --tenants N (decide requests
//   spread over N tenants, X-Tenant-ID bench-0 … bench-<N-1>; default 1: one tenant, "bench"),
//   --body-bytes N (every decide body exactly N bytes, task.payload.text padded; e.g. with --profile).
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const { spawn, spawnSync } = require('child_process');
const { parseArgs, usageOf } = require('./lib/args');
const { compileLua } = require('./lib/build');
const { loadConfig, ROOT } = require('./lib/config');
const { render } = require('./lib/render');
const { nginxBin, prefixArgs, testConfig } = require('./lib/nginx');
const { freePort } = require('./lib/net');
const procs = require('../spec/support/processes');
const { chart } = require('./bench/svg');

const WRK_SCRIPT = path.join(__dirname, 'bench', 'wrk.lua');
const NATS_LOOP = path.join(__dirname, 'bench', 'nats-loop.js');
const TARGETS = ['bare', 'healthz', 'decide', 'nats'];
const LABELS = {
  bare: 'bare Lua (ceiling)',
  healthz: 'GET /healthz',
  decide: 'POST decide (end to end)',
  nats: 'direct NATS (Node)',
};
// A canonical decide body (CONTRACT §3). No request_id / trace_id: the gateway generates them,
// as for a client that sends none.
const DECIDE_BODY = '{"version":"1","task":{"type":"chat","payload":{"text":"hello, router"}},"context":{"user_id":"u-42"}}';
const TENANT = 'bench';
// What the gateway publishes for that body (build_router_request), for the direct loop.
const ROUTER_PAYLOAD = JSON.stringify({
  version: '1',
  tenant_id: TENANT,
  request_id: '6f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f',
  trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
  task: { type: 'chat', payload: { text: 'hello, router' } },
  context: { user_id: 'u-42' },
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (msg) => process.stdout.write(`[bench] ${msg}\n`);
const children = new Set(); // wrk / perf / strace / node children, killed by PID on interrupt

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

function loadavg() {
  return os.loadavg().map((v) => v.toFixed(2));
}

function run(command, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const { onStderr, ...spawnOpts } = opts;
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...spawnOpts });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      if (opts.onStderr) opts.onStderr(stderr, child);
    });
    child.on('error', (e) => {
      children.delete(child);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal, stdout, stderr, pid: child.pid });
    });
  });
}

function parseResult(text, what) {
  const line = text.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
  if (!line) throw new Error(`${what}: no result line in output:\n${text.slice(-2000)}`);
  return JSON.parse(line.slice('BENCH_RESULT '.length));
}

function get(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error(`GET ${url}: timeout`)));
  });
}

async function getJson(url, headers) {
  const r = await get(url, headers);
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${r.body}`);
  return JSON.parse(r.body);
}

/** PIDs of the nginx master's worker processes. */
function workerPids(masterPid) {
  const pids = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (ppid === masterPid && /worker process/.test(cmd)) pids.push(Number(d));
    } catch (e) {
      /* gone */
    }
  }
  return pids.sort((a, b) => a - b);
}

/** VmRSS and its parts (KiB) of a process, from /proc/<pid>/status. */
function rss(pid) {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => {
    const m = text.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) : null;
  };
  return { VmRSS: kb('VmRSS'), RssAnon: kb('RssAnon'), RssFile: kb('RssFile'), RssShmem: kb('RssShmem'), VmHWM: kb('VmHWM') };
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/** CPU time (user + system, ms) a process has used, from /proc/<pid>/stat. */
function cpuMs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK; // utime, stime (fields 14, 15)
  } catch (e) {
    return NaN;
  }
}

/**
 * Starts measuring the CPU time of groups of processes ({name: [pid, …]}); the returned function
 * gives each group's CPU µs per request over `requests` since the start (one decimal).
 */
function cpuMeter(groups) {
  const sum = (pids) => pids.reduce((x, p) => x + cpuMs(p), 0);
  const t0 = Object.fromEntries(Object.entries(groups).map(([k, v]) => [k, sum(v)]));
  return (requests) =>
    Object.fromEntries(
      Object.entries(groups).map(([k, v]) => [k, Math.round((((sum(v) - t0[k]) * 1000) / Math.max(1, requests)) * 10) / 10]),
    );
}

const mib = (kb) => `${(kb / 1024).toFixed(1)} MiB`;
const signedMib = (kb) => `${kb >= 0 ? '+' : '-'}${(Math.abs(kb) / 1024).toFixed(2)} MiB`;
const num = (v) => Math.round(v).toLocaleString('en-US');

function version(cmd, args, re) {
  try {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    const text = `${r.stdout || ''}${r.stderr || ''}`;
    const m = text.match(re);
    return m ? m[1] : text.split('\n')[0].trim();
  } catch (e) {
    return 'unknown';
  }
}

function dpkgVersion(pkg) {
  const r = spawnSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

function luaVersion(n) {
  // ngx_lua_version is major*1e6 + minor*1e3 + patch.
  return `${Math.floor(n / 1e6)}.${Math.floor(n / 1e3) % 1e3}.${n % 1e3}`;
}

function cpuTimes() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { idle: f[3] + f[4], total: f.reduce((x, y) => x + y, 0) };
}

/** Percent of all cores busy during the next `ms` (the bench's own stack is idle meanwhile). */
async function busyPercent(ms = 1000) {
  const a = cpuTimes();
  await sleep(ms);
  const b = cpuTimes();
  return b.total > a.total ? Math.round((1 - (b.idle - a.idle) / (b.total - a.total)) * 1000) / 10 : 0;
}

/**
 * Before each point: how busy the machine is without our load (1 s sample while the stack
 * idles); with --max-busy P, waits (up to --wait-load s) until at most P % of the cores are busy.
 */
async function waitForQuietCpu(maxBusy, waitS) {
  const deadline = Date.now() + waitS * 1000;
  for (;;) {
    const busy = await busyPercent();
    if (!(maxBusy > 0) || busy <= maxBusy || Date.now() >= deadline) return busy;
    await sleep(2000);
  }
}

async function waitForLowLoad(max, waitS) {
  if (!(max > 0)) return;
  const deadline = Date.now() + waitS * 1000;
  for (;;) {
    const l1 = os.loadavg()[0];
    if (l1 < max) {
      say(`load average ${loadavg().join(' ')} (below ${max}): starting`);
      return;
    }
    if (Date.now() >= deadline) {
      say(`load average still ${loadavg().join(' ')} after ${waitS} s: running anyway (numbers are distorted)`);
      return;
    }
    say(`load average ${loadavg().join(' ')} is above ${max}: waiting…`);
    await sleep(15000);
  }
}

// ---------------------------------------------------------------------------------------------
// The stack
// ---------------------------------------------------------------------------------------------

async function startBenchStack(opts) {
  if (!opts.after) {
    const c = compileLua({ log: say });
    if (c.built) say(`lua compiled in ${c.ms} ms`);
  }
  // A private copy of the compiled Lua: other builds in the repo (tests running at the same
  // time) must not change the modules under a running benchmark.
  const luaDir = path.join(procs.tmpRoot(), 'dist-lua');
  fs.cpSync(opts.after || path.join(ROOT, 'dist-lua'), luaDir, { recursive: true });
  // nginx workers run unprivileged (Debian: nobody) and load beamline.bench on first use, so
  // they must be able to read it: the temp dir is 0700 by default.
  fs.chmodSync(procs.tmpRoot(), 0o755);

  const nats = await procs.startNats();
  const router = await procs.startRouter({ natsUrl: nats.url, args: ['--fast'] });
  const collector = opts.tracing === 'on' ? await startCollector() : null;
  const gw = await startBenchNginx(opts, nats, luaDir, 'nginx', undefined, collector);
  return { nats, router, luaDir, collector, tenants: opts.tenants, ...gw };
}

/**
 * One benchmark nginx on `nats`, in its own prefix `name` under the temp root; `configure`
 * edits the raw config last (--state redis: a second gateway on Redis); `collector`: --tracing on.
 */
async function startBenchNginx(opts, nats, luaDir, name, configure, collector = null) {
  const port = await freePort();
  const prefix = path.join(procs.tmpRoot(), name);
  const { config } = loadConfig({
    file: opts.config,
    env: {},
    overrides: (raw) => {
      raw.server = { ...(raw.server || {}), listen: '127.0.0.1', port };
      if (opts.workers) raw.server.workers = opts.workers;
      raw.nats = { ...(raw.nats || {}), servers: [nats.url] };
      // No access log for the run unless asked for (the cost of one is measured with
      // --access-log on|buffered); errors still go to the prefix.
      raw.log = { ...(raw.log || {}), level: 'warn' };
      if (opts.accessLog === 'off') raw.log.access_log = 'off';
      else {
        raw.log.access_log = 'logs/access.log';
        raw.log.access_log_buffer_kb = opts.accessLog === 'buffered' ? 64 : 0;
        raw.log.access_log_flush_ms = 1000;
      }
      // Trace export at 100% sampling to the in-process collector (--tracing on).
      if (collector) raw.tracing = { ...(raw.tracing || {}), enabled: true, endpoint: `${collector.url}/v1/traces`, sample_ratio: 1 };
      // Rate limits must not answer 429 to the benchmark's single tenant.
      raw.routes = raw.routes || {};
      if (opts.curves) {
        // --curves: up to 1024 connections from one address (wrk), over 2 workers or 1
        raw.server.max_connections_per_client = 0;
        raw.server.worker_connections = Math.max(raw.server.worker_connections || 0, 4096);
        raw.server.worker_rlimit_nofile = 8192;
      }
      if (opts.streams) {
        // --streams: many streams on one worker, from one client address
        raw.server.workers = 1;
        raw.server.worker_connections = 24000;
        raw.server.worker_rlimit_nofile = 50000;
        raw.server.max_connections_per_client = 0;
        raw.streams = { ...(raw.streams || {}), max_per_tenant: 100000, max_per_worker: 100000 };
      }
      for (const r of ['decide', 'messages', 'streams']) {
        raw.routes[r] = { ...(raw.routes[r] || {}) };
        raw.routes[r].rate_limit = { ...(raw.routes[r].rate_limit || {}), limit: 1e9 };
      }
      if (configure) configure(raw);
    },
  });
  render(config, { prefix, luaDir, bench: true });
  const t = testConfig(prefix);
  if (!t.ok) throw new Error(`nginx -t failed:\n${t.output}`);
  const nginx = await procs.startProcess({ name, command: nginxBin(), args: prefixArgs(prefix), readyPort: port });
  const url = `http://127.0.0.1:${port}`;
  // Ready = every worker... at least the one that answers is connected to NATS.
  const deadline = Date.now() + 15000;
  for (;;) {
    const r = await get(`${url}/readyz`).catch(() => ({ status: 0 }));
    if (r.status === 200) break;
    if (Date.now() > deadline) throw new Error(`gateway not ready after 15 s:\n${nginx.tail()}`);
    await sleep(50);
  }
  const errorLog = path.join(prefix, 'logs', 'error.log');
  return { nginx, url, port, prefix, config, errorLog };
}

/**
 * An OTLP/HTTP receiver for --tracing on: answers every POST with 200 `{}` and counts the spans
 * (by their `"spanId"` keys, without decoding: a collector's work is not what is measured).
 */
async function startCollector() {
  const c = { posts: 0, spans: 0, url: '' };
  const server = http.createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (text += d));
    req.on('end', () => {
      c.posts++;
      c.spans += text.split('"spanId"').length - 1;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  c.url = `http://127.0.0.1:${server.address().port}`;
  procs.track({
    name: 'otlp-collector',
    stop: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
  return c;
}

async function describeMachine(stack) {
  const info = await getJson(`${stack.url}/__bench/info`);
  const cpus = os.cpus();
  return {
    cores: os.cpus().length,
    cpu_model: cpus.length ? cpus[0].model : 'unknown',
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    nginx: version(nginxBin(), ['-v'], /nginx\/(\S+)/),
    lua_module: `${luaVersion(info.ngx_lua_version)} (libnginx-mod-http-lua ${dpkgVersion('libnginx-mod-http-lua') || '?'})`,
    luajit: `${info.jit_version}${dpkgVersion('luajit2') ? ` (luajit2 ${dpkgVersion('luajit2')})` : ''}`,
    lua_cjson: info.cjson_version,
    nats_server: version(procs.NATS_SERVER_BIN, ['--version'], /v(\d\S*)/),
    node: process.version,
    nats_js: require('nats/package.json').version,
    wrk: version('wrk', ['-v'], /wrk (\S+)/),
    nginx_workers: stack.config.server.workers,
  };
}

// ---------------------------------------------------------------------------------------------
// Load generators
// ---------------------------------------------------------------------------------------------

// --body-bytes N: every decide of the run sends a body of exactly N bytes (curves' padding).
let bodyBytes = 0;

/** The file of a decide body of exactly `size` bytes (curves' padding); 0: DECIDE_BODY. */
function bodyFile(size = bodyBytes) {
  const f = path.join(procs.tmpRoot(), size ? `decide-body-${size}.json` : 'decide-body.json');
  if (!fs.existsSync(f)) fs.writeFileSync(f, size ? require('./bench/curves').decideBody(size) : DECIDE_BODY);
  return f;
}

/** gateway_decision_cache_evictions_total by reason, scraped from the gateway's /metrics. */
async function decisionEvictions(url) {
  const text = (await get(`${url}/metrics`)).body;
  const out = {};
  for (const m of text.matchAll(/^gateway_decision_cache_evictions_total\{reason="([^"]+)"\} (\S+)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

/**
 * decide: `body` (a file) instead of DECIDE_BODY; `tenants` > 0 spreads over bench-0 … bench-<N-1>,
 * each wrk thread starting `tenantOffset` tenants further (scripts/bench/wrk.lua).
 */
function targetRequest(stack, target, { body, tenants, tenantOffset = 0 } = {}) {
  // An explicit spread (--curves, --memory) or the run's --tenants (> 1: spread; 1: one tenant).
  const spread = tenants > 0 ? tenants : stack.tenants > 1 ? stack.tenants : 0;
  if (target === 'bare') return { url: `${stack.url}/__bench/bare`, method: 'GET', body: '-', headers: [] };
  if (target === 'healthz') return { url: `${stack.url}/healthz`, method: 'GET', body: '-', headers: [] };
  if (target === 'decide')
    return {
      url: `${stack.url}/api/v1/routes/decide`,
      method: 'POST',
      body: body || bodyFile(),
      headers: [`X-Tenant-ID=${spread > 0 ? `@${spread}+${tenantOffset}` : TENANT}`],
    };
  throw new Error(`no HTTP request for target ${target}`);
}

/**
 * One wrk run. limitTotal > 0: stop after about that many responses (the duration is a cap).
 * body, tenants: see targetRequest (--curves, --memory --tenants).
 */
async function wrk(stack, target, c, durationS, { threads, limitTotal = 0, body, tenants, tenantOffset } = {}) {
  const t = Math.max(1, Math.min(threads || (c === 1 ? 1 : 2), c));
  const r = targetRequest(stack, target, { body, tenants, tenantOffset });
  const perThread = limitTotal > 0 ? Math.ceil(limitTotal / t) : 0;
  const args = [
    '-t',
    String(t),
    '-c',
    String(c),
    '-d',
    `${durationS}s`,
    '--timeout',
    '10s',
    '-s',
    WRK_SCRIPT,
    r.url,
    '--',
    r.method,
    r.body,
    String(perThread),
    ...r.headers,
  ];
  // With a limit, each wrk thread stops itself and says so on stderr; wrk's main thread only
  // wakes at the end of -d, so once every thread has stopped it gets SIGINT (it then prints
  // its summary as usual).
  let interrupted = false;
  const onStderr =
    limitTotal > 0
      ? (text, child) => {
          if (!interrupted && (text.match(/BENCH_LIMIT/g) || []).length >= t) {
            interrupted = true;
            child.kill('SIGINT');
          }
        }
      : undefined;
  const out = await run('wrk', args, { onStderr });
  if (out.code !== 0) throw new Error(`wrk exited with ${out.code}:\n${out.stderr}${out.stdout}`);
  const res = parseResult(out.stdout, `wrk ${target} c${c}`);
  return normalize(target, c, res);
}

async function natsLoop(stack, c, durationS, warmupS) {
  const f = path.join(procs.tmpRoot(), 'router-payload.json');
  if (!fs.existsSync(f)) fs.writeFileSync(f, ROUTER_PAYLOAD);
  const out = await run(process.execPath, [
    NATS_LOOP,
    '--url',
    stack.nats.url,
    '--subject',
    stack.config.router.decide_subject,
    '--concurrency',
    String(c),
    '--duration',
    String(durationS),
    '--warmup',
    String(warmupS),
    '--payload-file',
    f,
  ]);
  if (out.code !== 0) throw new Error(`nats-loop exited with ${out.code}:\n${out.stderr}`);
  return normalize('nats', c, parseResult(out.stdout, `nats c${c}`));
}

function normalize(target, c, r) {
  const socket = r.socket_errors ? Object.values(r.socket_errors).reduce((a, b) => a + b, 0) : 0;
  const seconds = r.duration_us / 1e6;
  return {
    target,
    concurrency: c,
    requests: r.requests,
    seconds: Math.round(seconds * 1000) / 1000,
    rps: r.requests / seconds,
    p50_ms: r.latency_us.p['50'] / 1000,
    p90_ms: r.latency_us.p['90'] / 1000,
    p99_ms: r.latency_us.p['99'] / 1000,
    p999_ms: r.latency_us.p['99.9'] / 1000,
    max_ms: r.latency_us.max / 1000,
    non2xx: r.non2xx,
    socket_errors: socket,
    errors: r.non2xx + socket,
    detail: { statuses: r.statuses, socket_errors: r.socket_errors, errors: r.errors },
  };
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

function pad(s, n, left = false) {
  s = String(s);
  return left ? s.padEnd(n) : s.padStart(n);
}

function table(results) {
  const lines = [];
  lines.push(
    `${pad('target', 26, true)}${pad('conc', 6)}${pad('req/s', 10)}${pad('p50 ms', 9)}${pad('p99 ms', 9)}${pad('p99.9 ms', 10)}${pad('errors', 8)}${pad('nginx µs/req', 14)}`,
  );
  for (const r of results) {
    lines.push(
      `${pad(LABELS[r.target], 26, true)}${pad(r.concurrency, 6)}${pad(num(r.rps), 10)}${pad(r.p50_ms.toFixed(2), 9)}` +
        `${pad(r.p99_ms.toFixed(2), 9)}${pad(r.p999_ms.toFixed(2), 10)}${pad(r.errors, 8)}` +
        `${pad(r.target === 'nats' || !r.cpu_us_per_request ? '—' : r.cpu_us_per_request.nginx_workers.toFixed(1), 14)}`,
    );
  }
  return lines.join('\n');
}

function ratios(results, levels) {
  const by = (t, c) => results.find((r) => r.target === t && r.concurrency === c);
  return levels.map((c) => {
    const d = by('decide', c);
    const b = by('bare', c);
    const n = by('nats', c);
    return {
      concurrency: c,
      decide_over_ceiling: d && b ? d.rps / b.rps : null,
      decide_over_direct_nats: d && n ? d.rps / n.rps : null,
      decide_p99_ms: d ? d.p99_ms : null,
    };
  });
}

function ratioTable(rs) {
  const f = (v) => (v === null ? '—' : v.toFixed(2));
  return [
    `${pad('conc', 6)}${pad('decide/ceiling', 16)}${pad('decide/direct-NATS', 20)}${pad('decide p99 ms', 15)}`,
    ...rs.map(
      (r) =>
        `${pad(r.concurrency, 6)}${pad(f(r.decide_over_ceiling), 16)}${pad(f(r.decide_over_direct_nats), 20)}${pad(r.decide_p99_ms === null ? '—' : r.decide_p99_ms.toFixed(2), 15)}`,
    ),
  ].join('\n');
}

function machineText(m) {
  return (
    `${m.cores} cores (${m.cpu_model}), ${m.memory_gib} GiB, Linux ${m.kernel}; nginx ${m.nginx} with ${m.nginx_workers} worker(s), ` +
    `lua-nginx-module ${m.lua_module}, ${m.luajit}, lua-cjson ${m.lua_cjson}, nats-server ${m.nats_server}, ` +
    `node ${m.node} (nats.js ${m.nats_js}), wrk ${m.wrk}`
  );
}

function stamp() {
  return new Date()
    .toISOString()
    .replace(/[:.]/g, '-')
    .replace(/-\d{3}Z$/, 'Z');
}

// ---------------------------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------------------------

async function warmup(stack, targets, seconds) {
  say(`warming up (${seconds} s per HTTP target at c64)…`);
  for (const t of targets.filter((x) => x !== 'nats')) {
    const r = await wrk(stack, t, 64, seconds);
    if (r.errors) throw new Error(`warm-up of ${t} got ${r.errors} errors: ${JSON.stringify(r.detail)}`);
  }
}

async function suite(stack, o) {
  const results = [];
  const worker = workerPids(stack.nginx.pid);
  const rssBefore = worker.map(rss);
  const heapBefore = await getJson(`${stack.url}/__bench/info?gc=1`);
  let decideRequests = 0;
  for (const c of o.levels) {
    for (const t of o.targets) {
      // A short unmeasured run of the same point first: without it the first point after the
      // warm-up measured up to 2x slower at c1, whichever target it was.
      if (t !== 'nats') await wrk(stack, t, c, 1, { threads: o.threads });
      const busy = await waitForQuietCpu(o.maxBusy, o.waitLoad);
      process.stdout.write(
        `[bench] load ${loadavg().join(' ')}, others ${String(busy).padStart(4)}% busy | ${pad(LABELS[t], 26, true)} c${pad(c, 3, true)} … `,
      );
      const cpu = cpuMeter({ nginx_workers: worker, nats_server: [stack.nats.pid], router: [stack.router.pid] });
      const r =
        t === 'nats'
          ? await natsLoop(stack, c, o.duration, Math.min(2, o.duration))
          : await wrk(stack, t, c, o.duration, { threads: o.threads });
      // CPU time per request of each stack process (the nats target measures the Router loop).
      r.cpu_us_per_request = cpu(r.requests);
      r.load_before = os.loadavg();
      r.others_busy_percent_before = busy;
      results.push(r);
      if (t === 'decide') decideRequests += r.requests;
      process.stdout.write(
        `${num(r.rps)} req/s, p50 ${r.p50_ms.toFixed(2)} ms, p99 ${r.p99_ms.toFixed(2)} ms, p99.9 ${r.p999_ms.toFixed(2)} ms, errors ${r.errors}, ` +
          `worker CPU ${r.cpu_us_per_request.nginx_workers} µs/req` +
          `${r.errors ? ` ${JSON.stringify(r.detail)}` : ''}\n`,
      );
    }
  }
  const heapAfter = await getJson(`${stack.url}/__bench/info?gc=1`);
  const rssAfter = worker.map(rss);
  return {
    results,
    memory: worker.map((pid, i) => ({
      pid,
      decide_requests: decideRequests,
      before_kb: rssBefore[i],
      after_kb: rssAfter[i],
      growth_kb: rssAfter[i].VmRSS - rssBefore[i].VmRSS,
      lua_heap_kb_before: heapBefore.lua_kb,
      lua_heap_kb_after: heapAfter.lua_kb,
    })),
  };
}

async function memoryMode(stack, o) {
  const worker = workerPids(stack.nginx.pid);
  const c = o.levels.includes(64) ? 64 : o.levels[0];
  const total = o.requests;
  const chunk = Math.max(10000, Math.ceil(total / 10));
  const tenants = o.tenants;
  say(
    `memory: ${num(total)} decide requests at c${c} in chunks of ${num(chunk)}` +
      `${tenants > 0 ? `, spread over ${num(tenants)} tenants (bench-0 … bench-${tenants - 1})` : `, one tenant (${TENANT})`}; nginx worker pid(s) ${worker.join(', ')}`,
  );
  // The key counts after the RSS sample: get_keys builds a Lua table of every key, whose pages
  // the allocator keeps after the GC.
  const heap0 = await getJson(`${stack.url}/__bench/info?gc=1`);
  const before = worker.map(rss);
  const dicts0 = (await getJson(`${stack.url}/__bench/info?dicts=1&keys=1`)).dicts;
  const showDicts = (label, info) =>
    say(
      `${label} shared dicts: ${Object.entries(info)
        .map(
          ([k, d]) =>
            `${k.replace('beamline_', '')} ${num(d.keys)} keys, ${mib((d.capacity - d.free_space) / 1024)} of ${mib(d.capacity / 1024)} used`,
        )
        .join('; ')}`,
    );
  showDicts('before', dicts0);
  const show = (label, r, heap) =>
    say(
      `${label}: ${worker.map((p, i) => `pid ${p} VmRSS ${mib(r[i].VmRSS)} (anon ${mib(r[i].RssAnon)}, shmem ${mib(r[i].RssShmem)}, file ${mib(r[i].RssFile)})`).join('; ')}${heap ? `, Lua heap ${heap.lua_kb} KiB` : ''}`,
    );
  show('before', before, heap0);
  let done = 0;
  const t0 = Date.now();
  const progress = [];
  while (done < total) {
    const n = Math.min(chunk, total - done);
    // Each chunk's two wrk threads continue where the previous chunk's stopped (done / 2 each).
    const r = await wrk(stack, 'decide', c, 600, { limitTotal: n, tenants, tenantOffset: Math.floor(done / 2) });
    if (r.errors) throw new Error(`memory run: ${r.errors} errors after ${num(done)} requests: ${JSON.stringify(r.detail)}`);
    done += r.requests;
    const now = worker.map(rss);
    const di = (await getJson(`${stack.url}/__bench/info?dicts=1`)).dicts;
    const used = Object.fromEntries(Object.entries(di).map(([k, d]) => [k, d.capacity - d.free_space]));
    progress.push({ requests: done, rss_kb: now.map((x) => x.VmRSS), anon_kb: now.map((x) => x.RssAnon), dict_used_bytes: used });
    say(
      `  ${num(done).padStart(11)} / ${num(total)} requests (${Math.round((Date.now() - t0) / 1000)} s, ${num(r.rps)} req/s, load ${loadavg()[0]}): ` +
        `VmRSS ${worker.map((p, i) => `${mib(now[i].VmRSS)} (${signedMib(now[i].VmRSS - before[i].VmRSS)})`).join(', ')}, anon ${worker.map((p, i) => signedMib(now[i].RssAnon - before[i].RssAnon)).join(', ')}; ` +
        `dicts used: decisions ${mib(used.beamline_decisions / 1024)}, ratelimit ${mib(used.beamline_ratelimit / 1024)}`,
    );
  }
  const heap1 = await getJson(`${stack.url}/__bench/info?gc=1`);
  const after = worker.map(rss);
  const dicts1 = (await getJson(`${stack.url}/__bench/info?dicts=1&keys=1`)).dicts;
  show('after', after, heap1);
  showDicts('after', dicts1);
  const evictions = await decisionEvictions(stack.url);
  say(`stored decisions dropped or refused (gateway_decision_cache_evictions_total): ${JSON.stringify(evictions)}`);
  for (let i = 0; i < worker.length; i++) {
    say(
      `growth over ${num(done)} decide requests (pid ${worker[i]}): VmRSS ${signedMib(after[i].VmRSS - before[i].VmRSS)}, ` +
        `RssAnon ${signedMib(after[i].RssAnon - before[i].RssAnon)}, RssShmem ${signedMib(after[i].RssShmem - before[i].RssShmem)} ` +
        `(shared dicts: the decision cache is ${stack.config.decision_cache.size_mb} MiB), Lua heap after full GC ${(heap1.lua_kb - heap0.lua_kb).toFixed(1)} KiB`,
    );
  }
  return {
    concurrency: c,
    tenants: tenants || 1,
    dicts: { before: dicts0, after: dicts1 },
    decision_cache_evictions_total: evictions,
    requests: done,
    seconds: (Date.now() - t0) / 1000,
    workers: worker.map((pid, i) => ({
      pid,
      before_kb: before[i],
      after_kb: after[i],
      growth_kb: after[i].VmRSS - before[i].VmRSS,
      anon_growth_kb: after[i].RssAnon - before[i].RssAnon,
    })),
    lua_heap_kb: { before: heap0.lua_kb, after: heap1.lua_kb },
    progress,
  };
}

const STREAMS_CLIENT = path.join(__dirname, 'bench', 'streams-client.js');

/** The streams client (scripts/bench/streams-client.js) with a raised open-file limit. */
function streamsClient(args) {
  const child = spawn(
    'sh',
    ['-c', 'ulimit -n 30000 2>/dev/null || ulimit -n 20000; exec "$0" "$@"', process.execPath, STREAMS_CLIENT, ...args],
    {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  children.add(child);
  child.on('exit', () => children.delete(child));
  let out = '';
  let ended = false;
  child.stdout.on('data', (d) => (out += d));
  child.stdout.on('close', () => (ended = true));
  const line = () =>
    new Promise((resolve, reject) => {
      const check = () => {
        const i = out.indexOf('\n');
        if (i >= 0) {
          const l = out.slice(0, i);
          out = out.slice(i + 1);
          return resolve(JSON.parse(l));
        }
        if (ended) return reject(new Error(`streams client exited with ${child.exitCode}`));
        setTimeout(check, 50);
      };
      check();
    });
  return { child, line };
}

function pct(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function fdCount(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * --streams: one worker. (1) idle streams: RSS and fds per stream; (2) latency from the decide
 * answer to the event on each of 1,000 streams of the decide's tenant; (3) decide throughput at
 * c64 with 1,000 idle streams (10 other tenants) open against none, in the same run.
 */
/** Calls per Redis command since the server started (INFO commandstats). */
async function redisCommandCalls(client) {
  const text = await client.info('commandstats');
  const out = {};
  for (const m of text.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}

/**
 * --state redis: decide at each concurrency on two gateways in the same run, one with
 * `state.backend: local` (the main stack) and one with `state.backend: redis` (a second nginx
 * on the same NATS and Router, a redis-server on a free loopback port), alternating rounds so
 * that both see the same machine load. Also Redis CPU and commands per decide.
 */
async function stateMode(stack, o) {
  const { startRedis } = require('../spec/support/cluster');
  const Redis = require('ioredis');
  const redis = await startRedis();
  const client = new Redis({ host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: 1 });
  // After an interrupt the stack (Redis with it) stops before this client: no error spam.
  client.on('error', () => {});
  try {
    const rstack = {
      ...stack,
      ...(await startBenchNginx(o, stack.nats, stack.luaDir, 'nginx-redis', (raw) => {
        raw.state = { backend: 'redis', redis: { host: '127.0.0.1', port: redis.port } };
      })),
    };
    say(`Redis ${redis.url} (pid ${redis.pid}); gateway with state.backend: redis at ${rstack.url} (master ${rstack.nginx.pid})`);
    const sides = [
      { name: 'local', st: stack },
      { name: 'redis', st: rstack },
    ];
    await warmUpSides(sides, o.quick ? 1 : 3);
    const results = await abRounds(
      sides,
      o,
      (s, c, round) => `decide state ${s.name} c${c} round ${round}`,
      async (s, c, round) => {
        const cpu = cpuMeter({ workers: workerPids(s.st.nginx.pid), redis: [redis.pid] });
        const k0 = await redisCommandCalls(client);
        const r = await wrk(s.st, 'decide', c, o.duration, { threads: o.threads });
        const k1 = await redisCommandCalls(client);
        const us = cpu(r.requests);
        r.state = s.name;
        r.round = round;
        r.worker_cpu_us_per_request = us.workers;
        r.redis_cpu_us_per_request = us.redis;
        r.redis_commands_per_request = Object.fromEntries(
          Object.keys(k1)
            .filter((k) => k1[k] - (k0[k] || 0) > 0 && k !== 'info')
            .map((k) => [k, Math.round(((k1[k] - (k0[k] || 0)) / r.requests) * 1000) / 1000]),
        );
        process.stdout.write(
          `${num(r.rps)} req/s, p50 ${r.p50_ms.toFixed(2)} ms, p99 ${r.p99_ms.toFixed(2)} ms, errors ${r.errors}, ` +
            `worker CPU ${r.worker_cpu_us_per_request} µs/req, Redis CPU ${r.redis_cpu_us_per_request} µs/req ${JSON.stringify(r.redis_commands_per_request)}\n`,
        );
        return r;
      },
    );
    const summary = o.levels.map((c) => {
      const of = (name) => results.filter((r) => r.concurrency === c && r.state === name);
      const agg = (rs) => ({
        rps: rs.reduce((x, r) => x + r.requests, 0) / rs.reduce((x, r) => x + r.seconds, 0),
        p99_ms_worst: Math.max(...rs.map((r) => r.p99_ms)),
        p50_ms_mean: rs.reduce((x, r) => x + r.p50_ms, 0) / rs.length,
        worker_cpu_us_per_request: rs.reduce((x, r) => x + r.worker_cpu_us_per_request, 0) / rs.length,
        redis_cpu_us_per_request: rs.reduce((x, r) => x + r.redis_cpu_us_per_request, 0) / rs.length,
      });
      const local = agg(of('local'));
      const red = agg(of('redis'));
      return { concurrency: c, local, redis: red, redis_over_local: red.rps / local.rps };
    });
    const f1 = (v) => v.toFixed(1);
    process.stdout.write(
      `\n${pad('conc', 6)}${pad('local req/s', 13)}${pad('redis req/s', 13)}${pad('redis/local', 13)}${pad('local p99', 11)}${pad('redis p99', 11)}${pad('Redis CPU µs/decide', 21)}\n` +
        summary
          .map(
            (x) =>
              `${pad(x.concurrency, 6)}${pad(num(x.local.rps), 13)}${pad(num(x.redis.rps), 13)}${pad(x.redis_over_local.toFixed(2), 13)}` +
              `${pad(x.local.p99_ms_worst.toFixed(2), 11)}${pad(x.redis.p99_ms_worst.toFixed(2), 11)}${pad(f1(x.redis.redis_cpu_us_per_request), 21)}`,
          )
          .join('\n') +
        '\n\n',
    );
    return { results, summary, redis_version: version('redis-server', ['--version'], /v=(\S+)/) };
  } finally {
    client.disconnect();
  }
}

const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Warm-up of gateways side by side: decide at c64 on each side ({name, st}); any error stops the run. */
async function warmUpSides(sides, seconds, wrkOpts = {}) {
  say(`warming up (${seconds} s per gateway at c64)…`);
  for (const s of sides) {
    const r = await wrk(s.st, 'decide', 64, seconds, wrkOpts);
    if (r.errors) throw new Error(`warm-up of ${s.name} got ${r.errors} errors: ${JSON.stringify(r.detail)}`);
  }
}

/**
 * The A/B rounds: at each concurrency, `o.rounds` rounds over the sides, the order flipped each
 * round so both see the same machine; before each point it waits for a quiet machine and prints
 * `label(s, c, round)`; `measure(s, c, round)` runs the point (and prints its result). Returns
 * the results in order.
 */
async function abRounds(sides, o, label, measure) {
  const results = [];
  for (const c of o.levels) {
    for (let round = 1; round <= o.rounds; round++) {
      for (const s of round % 2 ? sides : [...sides].reverse()) {
        const busy = await waitForQuietCpu(o.maxBusy, o.waitLoad);
        process.stdout.write(`[bench] load ${loadavg().join(' ')}, others ${String(busy).padStart(4)}% busy | ${label(s, c, round)} … `);
        results.push(await measure(s, c, round));
      }
    }
  }
  return results;
}

/** The rounds of `--compare --together`: every side measured at the same time in each round. */
async function togetherRounds(sides, o, measure, line) {
  const results = [];
  for (const c of o.levels) {
    for (let round = 1; round <= o.rounds; round++) {
      const busy = await waitForQuietCpu(o.maxBusy, o.waitLoad);
      say(`load ${loadavg().join(' ')}, others ${String(busy).padStart(4)}% busy | decide c${c} round ${round}, both gateways at once:`);
      const rs = await Promise.all(sides.map((s) => measure(s, c, round)));
      for (const r of rs) say(`  ${r.side.padEnd(7)} ${line(r)}`);
      results.push(...rs);
    }
  }
  return results;
}

/**
 * --compare DIR: decide on two gateways in the same run, on the same NATS and Router: "before"
 * runs the compiled Lua in DIR (e.g. a dist-lua built from another commit), "after" the current
 * build. Rounds alternate the order (--rounds, default 2), so both see the same machine; prints
 * each point and the medians of req/s, p99 and worker CPU per decide.
 */
async function compareMode(stack, o) {
  const beforeDir = path.join(procs.tmpRoot(), 'dist-lua-before');
  fs.cpSync(o.compare, beforeDir, { recursive: true });
  const bstack = { ...stack, ...(await startBenchNginx(o, stack.nats, beforeDir, 'nginx-before')) };
  say(
    `"before" gateway (${o.compare}) at ${bstack.url} (master ${bstack.nginx.pid}); "after" (${o.after || 'this build'}) at ${stack.url}`,
  );
  const sides = [
    { name: 'before', st: bstack },
    { name: 'after', st: stack },
  ];
  await warmUpSides(sides, o.quick ? 1 : 3);
  const measureSide = async (s, c, round) => {
    const cpu = cpuMeter({ workers: workerPids(s.st.nginx.pid) });
    const r = await wrk(s.st, 'decide', c, o.duration, { threads: o.threads });
    r.side = s.name;
    r.round = round;
    r.worker_cpu_us_per_request = cpu(r.requests).workers;
    return r;
  };
  const line = (r) =>
    `${num(r.rps)} req/s, p50 ${r.p50_ms.toFixed(2)} ms, p99 ${r.p99_ms.toFixed(2)} ms, errors ${r.errors}, worker CPU ${r.worker_cpu_us_per_request} µs/req`;
  // --together: both gateways under load at the same time in each round, so that whatever else
  // the machine does in that interval (other VMs on the host included) hits both alike.
  const results = o.together
    ? await togetherRounds(sides, o, measureSide, line)
    : await abRounds(
        sides,
        o,
        (s, c, round) => `decide ${s.name} c${c} round ${round}`,
        async (s, c, round) => {
          const r = await measureSide(s, c, round);
          process.stdout.write(`${line(r)}\n`);
          return r;
        },
      );
  const summary = o.levels.map((c) => {
    const agg = (name) => {
      const rs = results.filter((r) => r.concurrency === c && r.side === name);
      return {
        rps: median(rs.map((r) => r.rps)),
        p99_ms: median(rs.map((r) => r.p99_ms)),
        worker_cpu_us_per_request: median(rs.map((r) => r.worker_cpu_us_per_request)),
      };
    };
    // Round by round, after/before: the same round saw the same machine, so these ratios move
    // less with the machine than the medians of each side do.
    const pairs = [];
    for (let round = 1; round <= o.rounds; round++) {
      const b = results.find((r) => r.concurrency === c && r.side === 'before' && r.round === round);
      const a = results.find((r) => r.concurrency === c && r.side === 'after' && r.round === round);
      if (a && b) pairs.push({ cpu: a.worker_cpu_us_per_request / b.worker_cpu_us_per_request, rps: a.rps / b.rps });
    }
    const ratios = {
      rounds: pairs.length,
      cpu_median: median(pairs.map((x) => x.cpu)),
      rps_median: median(pairs.map((x) => x.rps)),
      after_cheaper_rounds: pairs.filter((x) => x.cpu < 1).length,
    };
    return { concurrency: c, before: agg('before'), after: agg('after'), ratios };
  });
  process.stdout.write(
    `\nmedians over ${o.rounds} rounds, ${o.tenants || 1} tenant(s)\n${pad('conc', 6)}${pad('before req/s', 14)}${pad('after req/s', 13)}` +
      `${pad('before p99', 12)}${pad('after p99', 11)}${pad('before µs/req', 15)}${pad('after µs/req', 14)}\n` +
      summary
        .map(
          (x) =>
            `${pad(x.concurrency, 6)}${pad(num(x.before.rps), 14)}${pad(num(x.after.rps), 13)}${pad(x.before.p99_ms.toFixed(2), 12)}` +
            `${pad(x.after.p99_ms.toFixed(2), 11)}${pad(x.before.worker_cpu_us_per_request.toFixed(1), 15)}${pad(x.after.worker_cpu_us_per_request.toFixed(1), 14)}`,
        )
        .join('\n') +
      '\n' +
      summary
        .map(
          (x) =>
            `c${x.concurrency} per round, after/before: worker µs/decide ${x.ratios.cpu_median.toFixed(3)} (median; after cheaper in ` +
            `${x.ratios.after_cheaper_rounds} of ${x.ratios.rounds} rounds), req/s ${x.ratios.rps_median.toFixed(3)}`,
        )
        .join('\n') +
      '\n\n',
  );
  return { results, summary };
}

async function streamsMode(stack, o) {
  const [worker] = workerPids(stack.nginx.pid);
  const out = { worker, idle: {}, latency: {}, throughput: {} };
  const dur = o.duration;

  // (3a) throughput without streams, first: nothing else open
  await waitForQuietCpu(o.maxBusy, o.waitLoad);
  const none = await wrk(stack, 'decide', 64, dur);
  say(`decide c64, no streams: ${num(none.rps)} req/s, p99 ${none.p99_ms} ms, errors ${none.errors}`);

  // (1) idle streams
  await getJson(`${stack.url}/__bench/info?gc=1`);
  await sleep(500);
  const before = rss(worker);
  const fd0 = fdCount(worker);
  const idle = streamsClient(['idle', String(stack.port), String(o.idleStreams), '100']);
  const t0 = Date.now();
  const opened = await idle.line();
  const openMs = Date.now() - t0;
  await sleep(1000);
  await getJson(`${stack.url}/__bench/info?gc=1`);
  await sleep(500);
  const after = rss(worker);
  const fd1 = fdCount(worker);
  const n = opened.open;
  out.idle = {
    streams: n,
    failed: opened.failed,
    open_ms: openMs,
    rss_kb_before: before.VmRSS,
    rss_kb_after: after.VmRSS,
    rss_per_stream_kib: (after.VmRSS - before.VmRSS) / n,
    anon_per_stream_kib: (after.RssAnon - before.RssAnon) / n,
    fds_before: fd0,
    fds_after: fd1,
    fds_per_stream: (fd1 - fd0) / n,
  };
  say(
    `idle: ${num(n)} streams open (${opened.failed} failed) in ${openMs} ms; worker VmRSS ${mib(before.VmRSS)} → ${mib(after.VmRSS)}: ` +
      `${out.idle.rss_per_stream_kib.toFixed(2)} KiB per stream (anon ${out.idle.anon_per_stream_kib.toFixed(2)}); fds ${fd0} → ${fd1}`,
  );
  idle.child.stdin.end();
  await new Promise((r) => (idle.child.exitCode !== null ? r() : idle.child.once('exit', r)));
  await sleep(2000);

  // (2) latency at 1,000 streams of the decide's tenant
  const events = o.duration >= 10 ? 200 : 50;
  const lat = streamsClient(['latency', String(stack.port), '1000', 'bench-lat', String(events)]);
  const l = await lat.line();
  const samples = l.samples.sort((a, b) => a - b);
  const last = l.last.sort((a, b) => a - b);
  out.latency = {
    streams: 1000,
    events,
    deliveries: samples.length,
    p50_ms: pct(samples, 50),
    p99_ms: pct(samples, 99),
    max_ms: samples[samples.length - 1],
    last_stream_p50_ms: pct(last, 50),
    last_stream_p99_ms: pct(last, 99),
  };
  say(
    `latency decide answer → event, 1,000 streams of one tenant, ${events} events (${num(samples.length)} deliveries): ` +
      `p50 ${out.latency.p50_ms.toFixed(2)} ms, p99 ${out.latency.p99_ms.toFixed(2)} ms, max ${out.latency.max_ms.toFixed(2)} ms; ` +
      `the 1,000th stream: p50 ${out.latency.last_stream_p50_ms.toFixed(2)} ms, p99 ${out.latency.last_stream_p99_ms.toFixed(2)} ms`,
  );
  await sleep(1000);

  // (3b) throughput with 1,000 idle streams of 10 other tenants open
  const open1k = streamsClient(['idle', String(stack.port), '1000', '10']);
  const o1k = await open1k.line();
  await waitForQuietCpu(o.maxBusy, o.waitLoad);
  const withStreams = await wrk(stack, 'decide', 64, dur);
  open1k.child.stdin.end();
  // and again without, so the pair brackets the machine's drift
  await sleep(1000);
  const none2 = await wrk(stack, 'decide', 64, dur);
  const base = (none.rps + none2.rps) / 2;
  out.throughput = {
    concurrency: 64,
    duration_s: dur,
    streams_open: o1k.open,
    none_rps: [none.rps, none2.rps],
    with_streams_rps: withStreams.rps,
    ratio: withStreams.rps / base,
    p99_ms: { none: [none.p99_ms, none2.p99_ms], with_streams: withStreams.p99_ms },
    errors: none.errors + none2.errors + withStreams.errors,
  };
  say(
    `decide c64: ${num(withStreams.rps)} req/s with ${o1k.open} streams open vs ${num(none.rps)} / ${num(none2.rps)} without ` +
      `(before / after): ${(out.throughput.ratio * 100).toFixed(1)} %; errors ${out.throughput.errors}`,
  );
  return out;
}

async function profileMode(stack, o) {
  const [worker] = workerPids(stack.nginx.pid);
  const out = { worker };
  const d = Math.max(3, Math.min(o.duration, 10));
  const c = 64;

  // 0. What the OpenResty APIs of the decide path cost, timed inside the worker.
  out.ngx_costs = await getJson(`${stack.url}/__bench/profile?action=ngx_costs`, {
    'X-Tenant-ID': TENANT,
    'Content-Type': 'application/json',
  });
  say(
    `OpenResty API costs in the worker (ns/call): ${Object.entries(out.ngx_costs)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );

  // 1. Lua allocations per request: the collector is stopped, heap growth / requests.
  out.allocations = {};
  for (const t of ['bare', 'healthz', 'decide']) {
    const n = 20000;
    await getJson(`${stack.url}/__bench/profile?action=gc_stop`);
    const r = await wrk(stack, t, 16, 60, { limitTotal: n });
    const a = await getJson(`${stack.url}/__bench/profile?action=gc_count`);
    await getJson(`${stack.url}/__bench/profile?action=gc_restart`);
    out.allocations[t] = { requests: r.requests, bytes_per_request: Math.round((a.allocated_kb * 1024) / r.requests) };
    say(
      `Lua allocation per request, ${LABELS[t]}: ${out.allocations[t].bytes_per_request} bytes (${num(r.requests)} requests, GC stopped)`,
    );
  }

  // 2. perf stat on the worker (software counters; this VM has no hardware counters).
  {
    say(`perf stat on worker ${worker} during ${d} s of decide at c${c}…`);
    const perf = spawn('perf', ['stat', '-x', ',', '-e', 'task-clock,context-switches,cpu-migrations,page-faults', '-p', String(worker)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.add(perf);
    let err = '';
    perf.stderr.on('data', (x) => {
      err += x;
    });
    await sleep(300);
    const r = await wrk(stack, 'decide', c, d);
    const exited = new Promise((res) => perf.on('exit', res));
    perf.kill('SIGINT');
    await exited;
    children.delete(perf);
    const counters = {};
    for (const line of err.split('\n')) {
      const f = line.split(',');
      if (f.length > 3 && f[2]) counters[f[2]] = Number(f[0]);
    }
    out.perf_stat = {
      requests: r.requests,
      rps: r.rps,
      counters,
      cpu_us_per_request: counters['task-clock'] ? (counters['task-clock'] * 1000) / r.requests : null,
      context_switches_per_request: counters['context-switches'] / r.requests,
    };
    say(
      `  ${num(r.rps)} req/s; worker CPU ${out.perf_stat.cpu_us_per_request ? out.perf_stat.cpu_us_per_request.toFixed(1) : '?'} µs/request, ` +
        `${(out.perf_stat.context_switches_per_request || 0).toFixed(3)} context switches/request, page faults ${counters['page-faults']}`,
    );
  }

  // 3. perf record: where the worker's CPU goes, by shared object.
  {
    const data = path.join(procs.tmpRoot(), 'perf.data');
    say(`perf record (cpu-clock) on worker during ${d} s of decide at c${c}…`);
    const perf = spawn('perf', ['record', '-e', 'cpu-clock', '-F', '2000', '-o', data, '-p', String(worker)], { stdio: 'ignore' });
    children.add(perf);
    await sleep(300);
    await wrk(stack, 'decide', c, d);
    const exited = new Promise((res) => perf.on('exit', res));
    perf.kill('SIGINT');
    await exited;
    children.delete(perf);
    const rep = spawnSync('perf', ['report', '-i', data, '--stdio', '--sort', 'dso', '--percent-limit', '0.5'], { encoding: 'utf8' });
    const dsos = (rep.stdout || '')
      .split('\n')
      .filter((l) => /^\s+\d/.test(l))
      .map((l) => l.trim().replace(/\s+/g, ' '));
    const sym = spawnSync('perf', ['report', '-i', data, '--stdio', '--sort', 'dso,sym', '--percent-limit', '1'], { encoding: 'utf8' });
    const syms = (sym.stdout || '')
      .split('\n')
      .filter((l) => /^\s+\d/.test(l))
      .map((l) => l.trim().replace(/\s+/g, ' '))
      .slice(0, 30);
    out.perf_dso = dsos;
    out.perf_symbols = syms;
    say('  CPU by object:');
    for (const l of dsos) say(`    ${l}`);
    say('  top symbols:');
    for (const l of syms.slice(0, 20)) say(`    ${l}`);
  }

  // 4. strace -c: system calls per request (strace slows the worker; the counts stay valid).
  {
    say(`strace -c on worker during ${d} s of decide at c16…`);
    const file = path.join(procs.tmpRoot(), 'strace.txt');
    const st = spawn('strace', ['-c', '-f', '-o', file, '-p', String(worker)], { stdio: 'ignore' });
    children.add(st);
    await sleep(500);
    const r = await wrk(stack, 'decide', 16, d);
    const exited = new Promise((res) => st.on('exit', res));
    st.kill('SIGINT');
    await exited;
    children.delete(st);
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const calls = {};
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 5 && /^\d/.test(f[0]) && f[f.length - 1] !== 'total') calls[f[f.length - 1]] = Number(f[3]);
    }
    out.strace = {
      requests: r.requests,
      per_request: Object.fromEntries(
        Object.entries(calls)
          .map(([k, v]) => [k, Math.round((v / r.requests) * 100) / 100])
          .sort((a, b) => b[1] - a[1]),
      ),
    };
    say(
      `  system calls per decide request (${num(r.requests)} requests): ${Object.entries(out.strace.per_request)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
  }

  // 5. LuaJIT's sampling profiler inside the worker.
  {
    say(`jit.profile in the worker during ${d} s of decide at c${c}…`);
    await getJson(`${stack.url}/__bench/profile?action=start`);
    await wrk(stack, 'decide', c, d);
    const p = await getJson(`${stack.url}/__bench/profile?action=stop`);
    const strip = (k) =>
      k
        .split(stack.luaDir + '/')
        .join('')
        .split('/usr/share/lua/5.1/')
        .join('');
    for (const list of [p.leaf, p.stacks]) for (const e of list) e[0] = strip(e[0]);
    out.jit_profile = p;
    const pct = (n) => `${((n * 100) / p.samples).toFixed(1)}%`;
    say(
      `  ${p.samples} samples; VM state: ${p.vmstate.map(([k, n]) => `${{ N: 'compiled', I: 'interpreted', C: 'C code', G: 'GC', J: 'JIT compiler' }[k] || k} ${pct(n)}`).join(', ')}`,
    );
    say('  top lines:');
    for (const [k, n] of p.leaf.slice(0, 25)) say(`    ${pct(n).padStart(6)}  ${k}`);
    say('  top stacks (leaf < callers):');
    for (const [k, n] of p.stacks.slice(0, 15)) say(`    ${pct(n).padStart(6)}  ${k}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  let a;
  try {
    a = parseArgs(process.argv.slice(2), {
      boolean: ['quick', 'memory', 'profile', 'micro', 'streams', 'curves', 'together', 'help'],
      string: [
        'duration',
        'concurrency',
        'targets',
        'workers',
        'threads',
        'requests',
        'config',
        'max-load',
        'max-busy',
        'wait-load',
        'out',
        'access-log',
        'idle-streams',
        'state',
        'rounds',
        'tracing',
        'compare',
        'after',
        'tenants',
        'dimensions',
        'body-bytes',
      ],
    });
  } catch (e) {
    process.stderr.write(`[bench] ${e.message} (see --help)\n`);
    return 2;
  }
  if (a.help) {
    process.stdout.write(usageOf(__filename));
    return 0;
  }
  const o = {
    duration: Number(a.duration || (a.quick ? 2 : a.curves ? 3 : 10)),
    levels: (a.concurrency || '1,16,64,256').split(',').map(Number),
    targets: (a.targets || TARGETS.join(',')).split(','),
    workers: a.workers && !a.curves ? (a.workers === 'auto' ? 'auto' : Number(a.workers)) : undefined,
    curves: a.curves === true,
    curveWorkers: (a.curves && a.workers ? a.workers : '1,2').split(',').map(Number),
    dimensions: a.dimensions ? a.dimensions.split(',') : undefined,
    tenants: Number(a.tenants || 0),
    threads: a.threads ? Number(a.threads) : undefined,
    requests: Number(a.requests || 1000000),
    config: a.config ? path.resolve(a.config) : undefined,
    maxLoad: a['max-load'] ? Number(a['max-load']) : 0,
    maxBusy: a['max-busy'] ? Number(a['max-busy']) : 0,
    waitLoad: Number(a['wait-load'] || 300),
    outDir: path.resolve(a.out || path.join(ROOT, 'bench', 'results')),
    accessLog: a['access-log'] || 'off',
    streams: a.streams === true,
    idleStreams: Number(a['idle-streams'] || 10000),
    tracing: a.tracing || 'off',
    state: a.state,
    rounds: Number(a.rounds || 2),
    quick: !!a.quick,
    compare: a.compare ? path.resolve(a.compare) : undefined,
    after: a.after ? path.resolve(a.after) : undefined,
    together: !!a.together,
  };
  bodyBytes = Number(a['body-bytes'] || 0);
  if (!(Number.isInteger(bodyBytes) && bodyBytes >= 0)) throw new Error('--body-bytes: a positive integer');
  if (o.state !== undefined && o.state !== 'redis') throw new Error('--state: redis (compares it with local in the same run)');
  if ((o.state || o.compare) && !a.concurrency) o.levels = [64];
  if (!(Number.isInteger(o.tenants) && o.tenants >= 0)) throw new Error('--tenants: a positive integer');
  for (const [flag, dir] of [
    ['--compare', o.compare],
    ['--after', o.after],
  ]) {
    if (dir && !fs.existsSync(path.join(dir, 'beamline', 'phases.lua'))) {
      throw new Error(`${flag}: ${dir} holds no compiled gateway (beamline/phases.lua)`);
    }
  }
  if (o.after && !o.compare) throw new Error('--after DIR goes with --compare DIR');
  if (!['off', 'on', 'buffered'].includes(o.accessLog)) throw new Error('--access-log: off, on or buffered');
  if (!['off', 'on'].includes(o.tracing)) throw new Error('--tracing: off or on');
  for (const t of o.targets) if (!TARGETS.includes(t)) throw new Error(`unknown target ${t} (${TARGETS.join(', ')})`);
  if (o.levels.some((c) => !(c >= 1))) throw new Error('--concurrency: positive integers, comma-separated');

  say(`load average ${loadavg().join(' ')} on ${os.cpus().length} cores (other processes on this machine distort the numbers)`);
  if (a.micro) {
    // Pure-Lua micro-benchmarks of the decide steps, no nginx (scripts/bench/micro.lua).
    compileLua({ log: say });
    const r = spawnSync('luajit', [path.join(__dirname, 'bench', 'micro.lua'), path.join(ROOT, 'dist-lua')], { stdio: 'inherit' });
    return r.status === 0 ? 0 : 1;
  }
  await waitForLowLoad(o.maxLoad, o.waitLoad);
  const stack = await startBenchStack(o);
  say(
    `stack up: nginx ${stack.url} (master ${stack.nginx.pid}, workers ${workerPids(stack.nginx.pid).join(', ')}), nats-server ${stack.nats.url} (pid ${stack.nats.pid}), ` +
      `reference Router --fast (pid ${stack.router.pid}); access log ${o.accessLog}; tracing ${o.tracing}`,
  );
  const machine = await describeMachine(stack);
  say(`machine: ${machineText(machine)}`);
  fs.mkdirSync(o.outDir, { recursive: true });
  const ts = stamp();
  let code = 0;

  if (o.curves) {
    const { curvesMode, curvesTable, curvesCharts } = require('./bench/curves');
    const helpers = {
      startBenchNginx,
      wrk,
      warmUpSides,
      workerPids,
      cpuMeter,
      bodyFile,
      decisionEvictions,
      getJson,
      waitForQuietCpu,
      loadavg,
      say,
      num,
    };
    const m = await curvesMode(helpers, stack, o);
    const doc = {
      kind: 'curves',
      date: new Date().toISOString(),
      machine,
      options: { duration_s: o.duration, workers: o.curveWorkers, threads: o.threads || 'c=1: 1, else 2', max_busy: o.maxBusy },
      void: m.points.some((p) => p.void),
      load_after: os.loadavg(),
      ...m,
    };
    process.stdout.write(`\n${curvesTable(m.points)}\n\n`);
    for (const s of m.sides)
      if (s.error_log_lines) say(`gateway ${s.name}: ${num(s.error_log_lines)} error-log lines, e.g. ${s.error_log_sample.join(' | ')}`);
    const base = path.join(o.outDir, `curves-${ts}`);
    fs.writeFileSync(`${base}.json`, JSON.stringify(doc, null, 2));
    const svgs = curvesCharts(doc);
    for (const [dim, svg] of Object.entries(svgs)) fs.writeFileSync(`${base}-${dim}.svg`, svg);
    say(
      `written ${path.relative(ROOT, base)}.json and ${Object.keys(svgs)
        .map((d) => `-${d}.svg`)
        .join(', ')}`,
    );
    if (doc.void) say('some points had non-2xx responses or socket errors (counted per point in the JSON: statuses, socket_errors)');
    return doc.void ? 1 : 0;
  }
  if (a.memory) {
    await warmup(stack, ['decide'], a.quick ? 1 : 3);
    const m = await memoryMode(stack, o);
    const file = path.join(o.outDir, `memory-${ts}.json`);
    fs.writeFileSync(
      file,
      JSON.stringify({ kind: 'memory', date: new Date().toISOString(), machine, load_after: os.loadavg(), ...m }, null, 2),
    );
    say(`written ${path.relative(ROOT, file)}`);
    return 0;
  }
  if (a.streams) {
    await warmup(stack, ['decide'], a.quick ? 1 : 3);
    const r = await streamsMode(stack, o);
    const file = path.join(o.outDir, `streams-${ts}.json`);
    fs.writeFileSync(
      file,
      JSON.stringify({ kind: 'streams', date: new Date().toISOString(), machine, load_after: os.loadavg(), ...r }, null, 2),
    );
    say(`written ${path.relative(ROOT, file)}`);
    return 0;
  }
  // A/B modes: results with a side label per point; any point with errors voids the run.
  const writeAB = (kind, m, sideOf) => {
    const file = path.join(o.outDir, `${kind}-${ts}.json`);
    const voided = m.results.filter((r) => r.errors > 0);
    fs.writeFileSync(
      file,
      JSON.stringify({ kind, date: new Date().toISOString(), machine, void: voided.length > 0, options: o, ...m }, null, 2),
    );
    say(`written ${path.relative(ROOT, file)}`);
    if (!voided.length) return 0;
    process.stderr.write(`[bench] VOID: ${voided.map((r) => `${sideOf(r)} c${r.concurrency}: ${JSON.stringify(r.detail)}`).join('; ')}\n`);
    return 1;
  };
  if (o.compare) return writeAB('compare', await compareMode(stack, o), (r) => r.side);
  if (o.state) return writeAB('state', await stateMode(stack, o), (r) => r.state);
  if (a.profile) {
    await warmup(stack, ['bare', 'healthz', 'decide'], a.quick ? 1 : 3);
    const p = await profileMode(stack, o);
    const file = path.join(o.outDir, `profile-${ts}.json`);
    fs.writeFileSync(file, JSON.stringify({ kind: 'profile', date: new Date().toISOString(), machine, ...p }, null, 2));
    say(`written ${path.relative(ROOT, file)}`);
    return 0;
  }

  await warmup(stack, o.targets, a.quick ? 1 : 3);
  const { results, memory } = await suite(stack, o);
  const rs = ratios(results, o.levels);
  const voided = results.filter((r) => r.errors > 0);
  process.stdout.write(`\n${table(results)}\n\n${ratioTable(rs)}\n\n`);
  for (const m of memory) {
    say(
      `nginx worker ${m.pid}: VmRSS ${mib(m.before_kb.VmRSS)} → ${mib(m.after_kb.VmRSS)} (${signedMib(m.growth_kb)}) over this run's ${num(m.decide_requests)} decide requests; ` +
        `Lua heap after full GC ${m.lua_heap_kb_before} → ${m.lua_heap_kb_after} KiB (this includes nginx and Lua growing to the highest concurrency's ` +
        `connections and requests in flight; \`--memory\` checks for leaks: 1,000,000 decide requests at one concurrency)`,
    );
  }
  let tracing;
  if (stack.collector) {
    await sleep(1500); // the last flush of every worker
    const m = (await get(`${stack.url}/metrics`)).body;
    const sum = (re) => [...m.matchAll(re)].reduce((n, x) => n + Number(x[1]), 0);
    tracing = {
      spans_received: stack.collector.spans,
      posts: stack.collector.posts,
      spans_exported: sum(/^gateway_tracing_spans_exported_total (\S+)$/gm),
      spans_dropped: sum(/^gateway_tracing_spans_dropped_total\{[^}]*\} (\S+)$/gm),
    };
    say(
      `tracing: ${num(tracing.spans_received)} spans in ${num(tracing.posts)} POSTs received by the collector; ` +
        `exported ${num(tracing.spans_exported)}, dropped ${num(tracing.spans_dropped)} (gateway metrics)`,
    );
  }
  say(`machine: ${machineText(machine)}; load average at the end ${loadavg().join(' ')}`);
  const doc = {
    kind: 'throughput',
    date: new Date().toISOString(),
    machine,
    options: {
      duration_s: o.duration,
      levels: o.levels,
      targets: o.targets,
      threads: o.threads || 'c=1: 1, else 2',
      access_log: o.accessLog,
      tracing: o.tracing,
      decide_body: DECIDE_BODY,
    },
    void: voided.length > 0,
    results,
    ratios: rs,
    memory,
    tracing,
  };
  const base = path.join(o.outDir, `bench-${ts}`);
  fs.writeFileSync(`${base}.json`, JSON.stringify(doc, null, 2));
  const series = o.targets.map((t) => ({
    name: t,
    label: LABELS[t],
    points: results.filter((r) => r.target === t).map((r) => ({ c: r.concurrency, rps: r.rps, p99_ms: r.p99_ms })),
  }));
  fs.writeFileSync(
    `${base}.svg`,
    chart({
      levels: o.levels,
      series,
      title: `Beamline gateway: ${o.duration} s per point${voided.length ? ' (VOID: errors)' : ''}`,
      subtitle: `${machine.cores} cores, ${machine.nginx_workers} nginx worker(s), nginx ${machine.nginx}, ${machine.luajit.split(' (')[0]}, nats-server ${machine.nats_server}, ${doc.date.slice(0, 16)}Z`,
    }),
  );
  say(`written ${path.relative(ROOT, base)}.json and .svg`);
  if (voided.length) {
    process.stderr.write(
      `[bench] VOID: ${voided.length} run(s) had errors (non-2xx or socket errors): ` +
        `${voided.map((r) => `${r.target} c${r.concurrency}: ${JSON.stringify(r.detail)}`).join('; ')}\n`,
    );
    code = 1;
  }
  const errs = fs.existsSync(stack.errorLog)
    ? fs
        .readFileSync(stack.errorLog, 'utf8')
        .split('\n')
        .filter((l) => /\[(error|crit|alert|emerg)\]/.test(l))
    : [];
  if (errs.length) say(`nginx error log has ${errs.length} error line(s), e.g.: ${errs[0]}`);
  return code;
}

let exiting = false;
let cleaning = null;
/** Stops wrk & co., then the stack (nginx, Router, nats-server) by PID; one run however often called. */
function cleanup() {
  if (!cleaning) {
    cleaning = (async () => {
      for (const c of children) {
        try {
          c.kill('SIGKILL');
        } catch (e) {
          /* gone */
        }
      }
      await procs.stopAll().catch((e) => process.stderr.write(`[bench] stop: ${e.message}\n`));
    })();
  }
  return cleaning;
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    if (exiting) return;
    exiting = true;
    process.stderr.write(`\n[bench] ${sig}: stopping\n`);
    await cleanup();
    process.exit(130);
  });
}

main().then(
  async (code) => {
    await cleanup();
    process.exit(code);
  },
  async (err) => {
    process.stderr.write(`[bench] ${err.stack || err.message}\n`);
    await cleanup();
    process.exit(1);
  },
);
