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

/** PIDs of the processes that have `file` open (nginx masters and workers of one prefix). */
function processesUsing(file) {
  const pids = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readlinkSync(`/proc/${entry}/fd/2`) === file || fs.readlinkSync(`/proc/${entry}/fd/3`) === file) pids.push(Number(entry));
    } catch (e) { /* gone, or not ours to read */ }
  }
  return pids;
}

/**
 * @param {object} [opts]
 * @param {string[]|string} [opts.natsUrl]   NATS server URL(s) the gateway connects to
 * @param {(raw: object) => void} [opts.configure]  edits the raw config before validation
 * @param {object} [opts.env]  environment overrides for loadConfig (default: none)
 * @param {number} [opts.workers]
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
    await stopMaster();
    for (const pid of processesUsing(errorLog)) {
      try { process.kill(pid, 'SIGKILL'); } catch (e) { /* already gone */ }
    }
  };
  return Object.assign(proc, {
    port,
    prefix,
    config,
    url: `http://127.0.0.1:${port}`,
    errorLog: () => (fs.existsSync(errorLog) ? fs.readFileSync(errorLog, 'utf8') : ''),
    reload: () => signal(prefix, 'reload'),
    quit: () => signal(prefix, 'quit'),
  });
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
 * @param {string} baseUrl
 * @param {{method?: string, path?: string, headers?: object, body?: string|Buffer}} req
 */
function request(baseUrl, req = {}) {
  const u = new URL(req.path || '/', baseUrl);
  return new Promise((resolve, reject) => {
    const r = http.request(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, method: req.method || 'GET', headers: req.headers || {}, agent: false },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          let json;
          try { json = JSON.parse(body); } catch (e) { json = undefined; }
          resolve({ status: res.statusCode, headers: res.headers, body, json });
        });
      },
    );
    r.on('error', reject);
    if (req.body !== undefined) r.write(req.body);
    r.end();
  });
}

module.exports = { startGateway, startStack, request };
