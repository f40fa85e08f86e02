'use strict';

/**
 * Test helpers that start REAL processes (nats-server, the reference Router, anything else)
 * on 127.0.0.1, capture their output to log files, and stop them by PID at the end.
 *
 * Every process started here is registered; `stopAll()` (call it from `afterAll`) stops them
 * in reverse start order: SIGTERM, then SIGKILL after a timeout. Only PIDs this module spawned
 * are ever signalled. If the test process exits without `stopAll()`, an `exit` hook SIGKILLs
 * whatever is still registered.
 */

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const { HOST, freePort, portOpen, waitForPort } = require('../../scripts/lib/net');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN || '/usr/sbin/nats-server';
const ROUTER_SCRIPT = path.join(REPO_ROOT, 'router', 'reference-router.js');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** @type {Set<ProcessHandle>} */
const registry = new Set();
let rootDir = null;
let seq = 0;

/**
 * The temp directory of this test process (created on first use): logs and config files.
 * @returns {string}
 */
function tmpRoot() {
  if (!rootDir) {
    rootDir = fs.mkdtempSync(path.join(os.tmpdir(), 'beamline-spec-'));
    // nginx workers run as an unprivileged user when the tests run as root: they must be able
    // to reach their prefix (request bodies over the memory buffer go to a temp file there).
    fs.chmodSync(rootDir, 0o755);
  }
  return rootDir;
}

/** Resolves when 127.0.0.1:port refuses connections (the listener is gone). */
async function waitForPortClosed(port, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (await portOpen(port)) {
    if (Date.now() >= deadline) throw new Error(`port ${HOST}:${port} still open after ${timeoutMs} ms`);
    await sleep(25);
  }
}

/**
 * Last `lines` lines of a file ('' when unreadable).
 * @param {string} file
 * @param {number} [lines=40]
 * @returns {string}
 */
function tail(file, lines = 40) {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  } catch (e) {
    return '';
  }
}

/**
 * @typedef {object} ProcessHandle
 * @property {string} name
 * @property {number|undefined} pid  PID of the current child (changes on restart)
 * @property {string} logFile  stdout+stderr of the child (appended across restarts)
 * @property {boolean} running
 * @property {() => Promise<void>} stop  SIGTERM, SIGKILL after stopTimeoutMs; resolves on exit; untracks
 * @property {(signal?: NodeJS.Signals) => boolean} kill  sends a signal to this child only (no wait)
 * @property {() => Promise<void>} restart  stop (if running), start again with the same command, wait ready
 * @property {(timeoutMs?: number) => Promise<{code: number|null, signal: string|null}>} waitExit
 * @property {(lines?: number) => string} tail  last lines of the log
 */

/**
 * Spawns a tracked process with output to a log file and waits until it is ready.
 *
 * @param {object} o
 * @param {string} o.name  short label (log file name prefix)
 * @param {string} o.command
 * @param {string[]} [o.args]
 * @param {NodeJS.ProcessEnv} [o.env]  merged over process.env
 * @param {string} [o.cwd]  default repo root
 * @param {RegExp} [o.readyPattern]  ready once the log (from this start on) matches
 * @param {number} [o.readyPort]  ready once 127.0.0.1:port accepts connections
 * @param {number} [o.readyTimeoutMs=15000]
 * @param {number} [o.stopTimeoutMs=5000]  SIGTERM → SIGKILL grace period
 * @param {boolean} [o.quiet]  do not print the log tail when the start fails (it is still in
 *   the thrown error's message)
 * @returns {Promise<ProcessHandle>}
 */
async function startProcess(o) {
  const logFile = path.join(tmpRoot(), `${o.name}-${++seq}.log`);
  const stopTimeoutMs = o.stopTimeoutMs === undefined ? 5000 : o.stopTimeoutMs;
  const readyTimeoutMs = o.readyTimeoutMs === undefined ? 15000 : o.readyTimeoutMs;
  let child = null;
  let exitPromise = null;
  let exitInfo = null;

  /** @type {ProcessHandle} */
  const handle = {
    name: o.name,
    logFile,
    get pid() {
      return child ? child.pid : undefined;
    },
    get running() {
      return !!child && exitInfo === null;
    },
    kill(signal = 'SIGTERM') {
      if (!child || exitInfo !== null) return false;
      try {
        return child.kill(signal);
      } catch (e) {
        return false;
      }
    },
    async waitExit(timeoutMs = stopTimeoutMs) {
      if (!exitPromise) return { code: null, signal: null };
      let t;
      const timeout = new Promise((_, rej) => {
        t = setTimeout(() => rej(new Error(`${o.name} (pid ${handle.pid}) did not exit within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        return await Promise.race([exitPromise, timeout]);
      } finally {
        clearTimeout(t);
      }
    },
    async stop() {
      registry.delete(handle);
      await terminate();
    },
    async restart() {
      await terminate();
      registry.add(handle);
      await launch();
    },
    tail(lines = 40) {
      return tail(logFile, lines);
    },
  };

  async function terminate() {
    if (!child || exitInfo !== null) return;
    const c = child;
    try {
      c.kill('SIGCONT');
    } catch (e) {
      /* may be SIGSTOPped by a test */
    }
    try {
      c.kill('SIGTERM');
    } catch (e) {
      /* already gone */
    }
    let t;
    const timedOut = await Promise.race([
      exitPromise.then(() => false),
      new Promise((r) => {
        t = setTimeout(() => r(true), stopTimeoutMs);
      }),
    ]);
    clearTimeout(t);
    if (timedOut && exitInfo === null) {
      try {
        c.kill('SIGKILL');
      } catch (e) {
        /* gone */
      }
      await exitPromise;
    }
  }

  async function launch() {
    const startOffset = fs.existsSync(logFile) ? fs.statSync(logFile).size : 0;
    const fd = fs.openSync(logFile, 'a');
    exitInfo = null;
    try {
      child = spawn(o.command, o.args || [], {
        cwd: o.cwd || REPO_ROOT,
        env: { ...process.env, ...(o.env || {}) },
        stdio: ['ignore', fd, fd],
      });
    } finally {
      fs.closeSync(fd);
    }
    const c = child;
    exitPromise = new Promise((resolve) => {
      c.once('exit', (code, signal) => {
        exitInfo = { code, signal };
        resolve(exitInfo);
      });
      c.once('error', (err) => {
        exitInfo = { code: null, signal: null, error: err };
        fs.appendFileSync(logFile, `spawn error: ${err.message}\n`);
        resolve(exitInfo);
      });
    });

    const deadline = Date.now() + readyTimeoutMs;
    const fail = async (why) => {
      await terminate();
      registry.delete(handle);
      const msg =
        `${o.name} failed to start (${why}): ${o.command} ${(o.args || []).join(' ')}\n` + `log ${logFile}, last lines:\n${tail(logFile)}`;
      if (!o.quiet) console.error(msg);
      throw new Error(msg);
    };
    const readPattern = () => {
      try {
        const buf = fs.readFileSync(logFile);
        return o.readyPattern.test(buf.subarray(startOffset).toString('utf8'));
      } catch (e) {
        return false;
      }
    };
    for (;;) {
      if (exitInfo !== null) {
        await fail(exitInfo.error ? exitInfo.error.message : `exited with code ${exitInfo.code} signal ${exitInfo.signal}`);
      }
      const patOk = !o.readyPattern || readPattern();
      const portOk = o.readyPort === undefined || (patOk && (await portOpen(o.readyPort)));
      if (patOk && portOk) return;
      if (Date.now() >= deadline) await fail(`not ready after ${readyTimeoutMs} ms`);
      await sleep(25);
    }
  }

  registry.add(handle);
  await launch();
  return handle;
}

/**
 * Adds a handle (anything with `stop(): Promise`) to the registry so `stopAll()` stops it.
 * @template {{stop: () => Promise<any>}} T
 * @param {T} handle
 * @returns {T}
 */
function track(handle) {
  registry.add(handle);
  return handle;
}

/** Removes a handle from the registry without stopping it. */
function untrack(handle) {
  registry.delete(handle);
}

/**
 * Stops every registered process, newest first. Safe to call more than once.
 * @returns {Promise<void>}
 */
async function stopAll() {
  const all = [...registry].reverse();
  registry.clear();
  const errors = [];
  for (const h of all) {
    try {
      await h.stop();
    } catch (e) {
      errors.push(e);
    }
  }
  if (errors.length) throw errors[0];
}

process.on('exit', () => {
  for (const h of registry) {
    try {
      if (h.running && h.pid) process.kill(h.pid, 'SIGKILL');
    } catch (e) {
      /* gone */
    }
  }
});

/**
 * @typedef {ProcessHandle & {port: number, url: string, clusterPort?: number, httpPort?: number,
 *   configFile?: string}} NatsHandle
 */

/**
 * Starts nats-server bound to 127.0.0.1 and waits until it accepts clients.
 *
 * @param {object} [opts]
 * @param {number} [opts.port]  client port (default: a free one)
 * @param {string[]} [opts.args]  extra nats-server arguments
 * @param {string} [opts.config]  config file text, written to a temp file and passed with -c
 *   (command-line flags still win over the file, as nats-server does)
 * @param {string} [opts.clusterName]  enables clustering with this name
 * @param {number} [opts.clusterPort]  cluster listen port (default: a free one when clustering)
 * @param {string[]} [opts.routes]  route URLs (nats://127.0.0.1:<clusterPort>) of other nodes
 * @param {boolean|number} [opts.httpPort]  monitoring port on 127.0.0.1 (true = a free one)
 * @param {string} [opts.serverName]
 * @param {string} [opts.host]  listen address (default 127.0.0.1; another 127.x address for DNS tests)
 * @param {boolean} [opts.debug]  -DV
 * @param {number} [opts.readyTimeoutMs]
 * @param {boolean} [opts.quiet]
 * @returns {Promise<NatsHandle>}
 */
async function startNats(opts = {}) {
  const port = opts.port || (await freePort());
  const host = opts.host || HOST;
  const args = ['-a', host, '-p', String(port)];
  let configFile;
  if (opts.config !== undefined) {
    configFile = path.join(tmpRoot(), `nats-${port}.conf`);
    fs.writeFileSync(configFile, opts.config);
    args.push('-c', configFile);
  }
  let clusterPort;
  if (opts.clusterName || opts.clusterPort || opts.routes) {
    clusterPort = opts.clusterPort || (await freePort());
    args.push('--cluster', `nats://${HOST}:${clusterPort}`);
    if (opts.clusterName) args.push('--cluster_name', opts.clusterName);
    if (opts.routes && opts.routes.length) args.push('--routes', opts.routes.join(','));
  }
  let httpPort;
  if (opts.httpPort) {
    httpPort = opts.httpPort === true ? await freePort() : opts.httpPort;
    args.push('-m', String(httpPort));
  }
  if (opts.serverName) args.push('-n', opts.serverName);
  if (opts.debug) args.push('-DV');
  if (opts.args) args.push(...opts.args);

  const h = await startProcess({
    name: `nats-${port}`,
    command: NATS_SERVER_BIN,
    args,
    readyPattern: /Server is ready/,
    // (the port check connects to 127.0.0.1; on another loopback address the log line must do)
    readyPort: host === HOST ? port : undefined,
    readyTimeoutMs: opts.readyTimeoutMs,
    quiet: opts.quiet,
  });
  return Object.assign(h, { port, host, url: `nats://${host}:${port}`, clusterPort, httpPort, configFile });
}

/**
 * Starts `size` clustered nats-servers (full mesh of routes) and waits until every node sees
 * the others (via the monitoring endpoint /routez).
 *
 * @param {{size?: number, clusterName?: string, args?: string[], readyTimeoutMs?: number}} [opts]
 * @returns {Promise<{servers: NatsHandle[], urls: string[], url: string, stop: () => Promise<void>}>}
 *   `url` is the comma-separated list (NATS_URL form).
 */
async function startNatsCluster(opts = {}) {
  const size = opts.size || 3;
  const clusterName = opts.clusterName || `beamline-test-${process.pid}`;
  const clusterPorts = [];
  for (let i = 0; i < size; i++) clusterPorts.push(await freePort());
  const routes = clusterPorts.map((p) => `nats://${HOST}:${p}`);
  const servers = [];
  for (let i = 0; i < size; i++) {
    servers.push(
      await startNats({
        clusterName,
        clusterPort: clusterPorts[i],
        routes: routes.filter((_, j) => j !== i),
        httpPort: true,
        serverName: `n${i + 1}-${clusterPorts[i]}`,
        args: opts.args,
        readyTimeoutMs: opts.readyTimeoutMs,
      }),
    );
  }
  const deadline = Date.now() + (opts.readyTimeoutMs || 15000);
  for (const s of servers) {
    for (;;) {
      const n = await routeCount(s.httpPort).catch(() => 0);
      if (n >= size - 1) break;
      if (Date.now() >= deadline) throw new Error(`nats cluster: ${s.name} has ${n}/${size - 1} routes\n${s.tail()}`);
      await sleep(50);
    }
  }
  const urls = servers.map((s) => s.url);
  return {
    servers,
    urls,
    url: urls.join(','),
    async stop() {
      for (const s of [...servers].reverse()) await s.stop();
    },
  };
}

/** Number of routes a server reports on /routez. */
function routeCount(httpPort) {
  return new Promise((resolve, reject) => {
    const http = require('http');
    const req = http.get({ host: HOST, port: httpPort, path: '/routez' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => {
        try {
          resolve(JSON.parse(body).num_routes || 0);
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('error', reject);
    req.setTimeout(1000, () => req.destroy(new Error('routez timeout')));
  });
}

/**
 * Starts `node router/reference-router.js` and waits for its "listening" line.
 *
 * @param {object} opts
 * @param {string} opts.natsUrl  NATS URL(s), comma-separated
 * @param {string[]} [opts.args]  extra CLI args (e.g. ['--mode', 'echo'], ['--fast'])
 * @param {string} [opts.subject]
 * @param {NodeJS.ProcessEnv} [opts.env]
 * @param {number} [opts.readyTimeoutMs]
 * @param {boolean} [opts.quiet]  no log tail on stderr when the start fails
 * @returns {Promise<ProcessHandle & {natsUrl: string}>}
 */
async function startRouter(opts) {
  if (!opts || !opts.natsUrl) throw new Error('startRouter: natsUrl is required');
  const args = [ROUTER_SCRIPT, '--nats', opts.natsUrl];
  if (opts.subject) args.push('--subject', opts.subject);
  if (opts.args) args.push(...opts.args);
  const h = await startProcess({
    name: 'router',
    command: process.execPath,
    args,
    env: opts.env,
    readyPattern: /reference router listening on /,
    readyTimeoutMs: opts.readyTimeoutMs,
    quiet: opts.quiet,
  });
  return Object.assign(h, { natsUrl: opts.natsUrl });
}

/**
 * The reference Router's request handler on a `nats` client connection inside this process, for
 * servers the Router CLI cannot reach (credentials, TLS with a test CA or client certificate).
 * Registered: stopAll() closes it.
 *
 * @param {object} o
 * @param {string|string[]} o.servers
 * @param {object} [o.connect]  extra `nats` connect options (auth, `tls: {caFile, certFile, keyFile}`)
 * @param {string} [o.subject='beamline.router.v1.decide']
 * @returns {Promise<{name: string, nc: object, stop: () => Promise<void>}>}
 */
async function startRouterClient(o) {
  const { connect } = require('nats');
  const { createHandler, compilePolicies, DEFAULT_POLICIES } = require('../../router/reference-router');
  const nc = await connect({
    servers: o.servers,
    name: 'test-router-client',
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    ...(o.connect || {}),
  });
  const handle = createHandler({ policies: compilePolicies(DEFAULT_POLICIES), defaultMode: o.mode || null });
  const subscribe = () =>
    nc.subscribe(o.subject || 'beamline.router.v1.decide', {
      queue: 'beamline-router',
      callback: (err, m) => {
        if (!err) handle(m.data, m.headers, { subject: m.subject, reply: m.reply }, (buf) => m.respond(buf));
      },
    });
  let sub = subscribe();
  await nc.flush();
  return track({
    name: 'router-client',
    nc,
    /** Unsubscribes: requests get NATS no-responders until resume(). */
    async pause() {
      if (sub) {
        sub.unsubscribe();
        sub = null;
        await nc.flush();
      }
    },
    async resume() {
      if (!sub) {
        sub = subscribe();
        await nc.flush();
      }
    },
    stop: async () => {
      if (!nc.isClosed()) await nc.close();
    },
  });
}

module.exports = {
  HOST,
  REPO_ROOT,
  NATS_SERVER_BIN,
  tmpRoot,
  freePort,
  waitForPort,
  waitForPortClosed,
  tail,
  startProcess,
  startNats,
  startNatsCluster,
  startRouter,
  startRouterClient,
  track,
  untrack,
  stopAll,
};
