#!/usr/bin/env node
'use strict';
// `make run`: the whole gateway in the foreground.
//   1. builds the Lua if the TypeScript changed, validates the config and renders nginx/;
//   2. without NATS_URL: starts an embedded nats-server on loopback and the reference Router;
//   3. checks the rendered config with `nginx -t` and starts nginx (master + workers).
// Every child's output is shown with its name; if one dies, everything stops with its last
// words on screen. Ctrl-C / SIGTERM stops every child this script started, nginx gracefully.
//   node scripts/run.js [--config FILE] [--prefix DIR]
const path = require('path');
const { spawn } = require('child_process');
const { compileLua } = require('./lib/build');
const { loadConfig, ROOT } = require('./lib/config');
const { render } = require('./lib/render');
const { nginxBin, prefixArgs, testConfig } = require('./lib/nginx');
const { freePort, waitForPort, HOST } = require('./lib/net');
const { parseArgs } = require('./lib/args');

const fs = require('fs');
// Debian installs nats-server in /usr/sbin, which is not on a normal user's PATH.
const NATS_BIN = process.env.NATS_SERVER_BIN || (fs.existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server');
const children = [];
let stopping = false;

function say(msg) {
  process.stdout.write(`[run] ${msg}\n`);
}

/** Spawns a child whose output lines are prefixed with its name; remembers the last lines. */
function startChild(name, command, args, env = {}) {
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const entry = { name, child, last: [], exited: null, graceful: 'SIGTERM' };
  const onData = (stream) => (buf) => {
    for (const line of buf.toString('utf8').split('\n')) {
      if (!line) continue;
      stream.write(`[${name}] ${line}\n`);
      entry.last.push(line);
      if (entry.last.length > 20) entry.last.shift();
    }
  };
  child.stdout.on('data', onData(process.stdout));
  child.stderr.on('data', onData(process.stderr));
  child.on('error', (err) => {
    entry.exited = { code: null, signal: null };
    process.stderr.write(`[run] cannot start ${name} (${command}): ${err.message}\n`);
    shutdown(1);
  });
  child.on('exit', (code, signal) => {
    entry.exited = { code, signal };
    if (!stopping) {
      process.stderr.write(`[run] ${name} exited unexpectedly (code ${code}, signal ${signal}); stopping everything\n`);
      shutdown(1);
    }
  });
  children.push(entry);
  return entry;
}

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  say('stopping…');
  // Reverse start order: nginx first (graceful quit lets in-flight requests finish), then the
  // Router, then NATS.
  for (const e of [...children].reverse()) {
    if (e.exited) continue;
    const done = new Promise((r) => e.child.once('exit', r));
    try { e.child.kill(e.graceful); } catch (err) { /* already gone */ }
    const timer = setTimeout(() => { try { e.child.kill('SIGKILL'); } catch (err) { /* gone */ } }, 15000);
    await done;
    clearTimeout(timer);
    say(`${e.name} stopped`);
  }
  process.exit(code);
}

async function main() {
  const args = parseArgs(process.argv.slice(2), { string: ['config', 'prefix'] });
  process.on('SIGINT', () => shutdown(0));
  process.on('SIGTERM', () => shutdown(0));

  const c = compileLua({ log: say });
  say(c.built ? `lua compiled in ${c.ms} ms` : 'lua up to date');

  const { config, file } = loadConfig();
  const subject = config.router.decide_subject;
  if (!process.env.NATS_URL) {
    const port = Number(process.env.NATS_PORT) || await freePort();
    const natsUrl = `nats://${HOST}:${port}`;
    const nats = startChild('nats', NATS_BIN, ['-a', HOST, '-p', String(port)]);
    await waitForPort(port, 10000);
    say(`embedded nats-server (pid ${nats.child.pid}) on ${natsUrl}`);
    const router = startChild('router', process.execPath, [path.join(ROOT, 'router', 'reference-router.js'), '--nats', natsUrl, '--subject', subject]);
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('reference Router did not start within 10 s')), 10000);
      const check = (buf) => { if (/listening on/.test(buf.toString())) { clearTimeout(t); resolve(); } };
      router.child.stdout.on('data', check);
    });
    say(`reference Router (pid ${router.child.pid}) answering on ${subject}`);
    config.nats.servers = [natsUrl];
  } else {
    say(`using external NATS ${config.nats.servers.join(',')} (no embedded nats-server or Router)`);
  }

  const out = render(config, { prefix: args.prefix });
  say(`config ${file} rendered into ${out.prefix}/`);
  const t = testConfig(out.prefix);
  if (!t.ok) throw new Error(`nginx -t failed:\n${t.output}`);

  const nginx = startChild('nginx', nginxBin(), prefixArgs(out.prefix));
  nginx.graceful = 'SIGQUIT';
  say(`nginx master pid ${nginx.child.pid}`);
  await waitForPort(config.server.port, 15000, config.server.listen === '0.0.0.0' ? HOST : config.server.listen.replace(/^\[|\]$/g, ''));
  const shown = config.server.listen === '0.0.0.0' ? HOST : config.server.listen;
  say(`Beamline gateway listening on http://${shown}:${config.server.port} (${config.server.workers} worker(s), NATS ${config.nats.servers.join(',')})`);
  say(`try: curl -s http://${shown}:${config.server.port}/healthz`);
  say(`logs: ${out.prefix}/logs/ — Ctrl-C stops everything`);
}

main().catch((err) => {
  process.stderr.write(`[run] ${err.message}\n`);
  shutdown(1);
});
