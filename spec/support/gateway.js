'use strict';
// Starts the real gateway for end-to-end tests: validated config → rendered prefix in a temp
// dir → `nginx -t` → nginx (master + workers) with the compiled Lua, on a free loopback port.
// Optionally also the NATS server and the reference Router (the whole stack).
const fs = require('fs');
const path = require('path');
const http = require('http');
const { loadConfig } = require('../../scripts/lib/config');
const { render } = require('../../scripts/lib/render');
const { compileLua } = require('../../scripts/lib/build');
const { nginxBin, prefixArgs, testConfig, signal } = require('../../scripts/lib/nginx');
const { startProcess, startNats, startRouter, tmpRoot, freePort } = require('./processes');

let prefixSeq = 0;

// The error-log rule (as APISIX's `no_error_log [error]`): after every test, each gateway's
// error log must not have gained an [error], [crit], [alert] or [emerg] line, unless the test
// declared it with gw.expectErrorLog(regex) (for this test) or startGateway({expectErrorLog})
// (for the gateway's life). spec/support/jest-setup.js runs checkErrorLogs() after each test.
const SEVERE = /\[(error|crit|alert|emerg)\]/;
// nginx core writes some client faults at [error]: a body over client_max_body_size and broken
// chunked framing. They say nothing about the gateway's health (the client got its 413/400), so
// they never fail a test.
const CLIENT_FAULTS = [/\[error\] .*client intended to send too large (chunked )?body/, /\[error\] .*client sent invalid chunked body/];
const watched = new Set();

function newSevereLines(gw) {
  let text;
  try {
    const fd = fs.openSync(gw.errorLogPath, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= gw.logChecked) return [];
      const buf = Buffer.alloc(size - gw.logChecked);
      fs.readSync(fd, buf, 0, buf.length, gw.logChecked);
      gw.logChecked = size;
      text = buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    return [];
  }
  return text.split('\n').filter((l) => SEVERE.test(l));
}

/** Throws when a watched gateway's error log gained a severe line no test declared. */
function checkErrorLogs() {
  const problems = [];
  for (const gw of watched) {
    const allowed = [...CLIENT_FAULTS, ...gw.allowedLog, ...gw.allowedThisTest];
    gw.allowedThisTest = [];
    const lines = newSevereLines(gw).filter((l) => !allowed.some((re) => re.test(l)));
    if (gw.stopped) watched.delete(gw);
    if (lines.length) problems.push(`${gw.errorLogPath}:\n  ${lines.slice(0, 10).join('\n  ')}`);
  }
  if (problems.length) {
    throw new Error(
      `nginx error log gained unexpected [error]/[crit]/[alert]/[emerg] lines (declare expected ones with gw.expectErrorLog(re)):\n${problems.join('\n')}`,
    );
  }
}

/** PIDs of the processes that have `file` open (nginx masters and workers of one prefix). */
function processesUsing(file) {
  const pids = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readlinkSync(`/proc/${entry}/fd/2`) === file || fs.readlinkSync(`/proc/${entry}/fd/3`) === file) pids.push(Number(entry));
    } catch (e) {
      /* gone, or not ours to read */
    }
  }
  return pids;
}

/**
 * @param {object} [opts]
 * @param {string[]|string} [opts.natsUrl]   NATS server URL(s) the gateway connects to
 * @param {(raw: object) => void} [opts.configure]  edits the raw config before validation
 * @param {object} [opts.env]  environment overrides for loadConfig (default: none)
 * @param {number} [opts.workers]
 * @param {RegExp|RegExp[]} [opts.expectErrorLog]  severe error-log lines this gateway may write at any time
 */
async function startGateway(opts = {}) {
  compileLua();
  const port = await freePort();
  const prefix = path.join(tmpRoot(), `gateway-${process.pid}-${++prefixSeq}`);
  const { config } = loadConfig({
    env: opts.env || {},
    overrides: (raw) => {
      raw.server = { ...(raw.server || {}), listen: '127.0.0.1', port, workers: opts.workers || 1 };
      if (opts.natsUrl) raw.nats = { ...(raw.nats || {}), servers: [].concat(opts.natsUrl) };
      // Tests read /health's details (the NATS server) from loopback; the default shows them to
      // no one (issue 17). A test that sets raw.health itself gets exactly what it sets.
      if (raw.health === undefined) raw.health = { details_from: ['127.0.0.1/32'] };
      if (opts.configure) opts.configure(raw);
    },
  });
  render(config, { prefix });
  const t = testConfig(prefix);
  if (!t.ok) throw new Error(`nginx -t failed:\n${t.output}`);
  const proc = await startProcess({ name: 'nginx', command: nginxBin(), args: prefixArgs(prefix), readyPort: port });
  const errorLog = path.join(prefix, 'logs', 'error.log');
  // A worker outlives its master if the master is killed hard: after stopping, end any process
  // of this gateway that is left (found by its open error log inside this prefix).
  const stopMaster = proc.stop.bind(proc);
  proc.stop = async () => {
    gw.stopped = true;
    await stopMaster();
    for (const pid of processesUsing(errorLog)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (e) {
        /* already gone */
      }
    }
  };
  const gw = Object.assign(proc, {
    port,
    prefix,
    config,
    url: `http://127.0.0.1:${port}`,
    errorLogPath: errorLog,
    logChecked: 0,
    stopped: false,
    allowedLog: [].concat(opts.expectErrorLog || []),
    allowedThisTest: [],
    /** Declares severe error-log lines matching `re` as expected in the running test. */
    expectErrorLog: (re) => gw.allowedThisTest.push(re),
    errorLog: () => (fs.existsSync(errorLog) ? fs.readFileSync(errorLog, 'utf8') : ''),
    reload: () => signal(prefix, 'reload'),
    quit: () => signal(prefix, 'quit'),
  });
  watched.add(gw);
  return gw;
}

/** nats-server + reference Router + gateway. */
async function startStack(opts = {}) {
  const nats = await startNats();
  const router = await startRouter({ natsUrl: nats.url, args: opts.routerArgs });
  const gateway = await startGateway({ ...opts, natsUrl: nats.url });
  return { nats, router, gateway };
}

/**
 * One HTTP request over a fresh connection. Resolves with {status, headers, body, json}.
 * A `body` array is written chunk by chunk (with no Content-Length header, Node sends it with
 * Transfer-Encoding: chunked). With `ignoreResetErrors`, EPIPE/ECONNRESET while sending are
 * ignored: a server that answers early (413) may close before the body is written.
 * @param {string} baseUrl
 * @param {{method?: string, path?: string, headers?: object, body?: string|Buffer|Array<string|Buffer>,
 *   ignoreResetErrors?: boolean}} req
 */
function request(baseUrl, req = {}) {
  const u = new URL(req.path || '/', baseUrl);
  return new Promise((resolve, reject) => {
    const r = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: req.method || 'GET',
        headers: req.headers || {},
        agent: false,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = JSON.parse(body);
          } catch (e) {
            json = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, body, json });
          r.destroy();
        });
      },
    );
    r.on('error', (e) => (req.ignoreResetErrors && (e.code === 'EPIPE' || e.code === 'ECONNRESET') ? null : reject(e)));
    for (const chunk of [].concat(req.body === undefined ? [] : req.body)) r.write(chunk);
    r.end();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves once GET /readyz answers 200 (this worker's NATS connection is up); rejects after timeoutMs. */
async function waitReady(gw, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await request(gw.url, { path: '/readyz' }).catch((e) => ({ status: 0, body: e.message }));
    if (r.status === 200) return;
    if (Date.now() > deadline) throw new Error(`gateway not ready after ${timeoutMs} ms: ${r.body}\n${gw.errorLog().slice(-3000)}`);
    await sleep(20);
  }
}

/**
 * Resolves once a plain decide (tenant `t-warm`) gets 200: the Router is subscribed where the
 * gateway is connected. Rejects after timeoutMs with the last status.
 */
async function waitDecideOk(gw, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (let k = 0; ; k++) {
    const r = await request(gw.url, {
      method: 'POST',
      path: '/api/v1/routes/decide',
      headers: { 'content-type': 'application/json', 'x-tenant-id': 't-warm' },
      body: JSON.stringify({ version: '1', request_id: `warm-${k}`, task: { type: 'chat', payload: { text: 'hi' } } }),
    }).catch((e) => ({ status: 0, body: e.message }));
    if (r.status === 200) return;
    if (Date.now() > deadline) throw new Error(`decide not 200 after ${timeoutMs} ms: ${r.status} ${r.body}`);
    await sleep(20);
  }
}

/** Whether a PID is alive (a zombie counts as gone: it has exited). */
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (e) {
    return false;
  }
}

/** Resident set size of a process in KiB (VmRSS), or undefined when it is gone. */
function rssKb(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : undefined;
  } catch (e) {
    return undefined;
  }
}

/**
 * Memory of a process in KiB from /proc/<pid>/status: rss = anon + file + shmem. Shared dicts
 * (lua_shared_dict) count in `shmem` as their pages are touched, up to their configured size;
 * the Lua heap and every per-worker table are in `anon`. Undefined when the process is gone.
 */
function memKb(pid) {
  try {
    const t = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const f = (k) => {
      const m = t.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm'));
      return m ? Number(m[1]) : 0;
    };
    return { rss: f('VmRSS'), anon: f('RssAnon'), file: f('RssFile'), shmem: f('RssShmem') };
  } catch (e) {
    return undefined;
  }
}

module.exports = { checkErrorLogs, startGateway, startStack, request, waitReady, waitDecideOk, alive, rssKb, memKb };
