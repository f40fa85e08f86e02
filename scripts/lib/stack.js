'use strict';
// The local stack in the foreground, shared by `make run` and `make dev`: builds the Lua when
// the TypeScript changed, validates and renders the config, and — without NATS_URL — starts an
// embedded nats-server and the reference Router, then nginx. Every child's output is shown
// with its name; if one dies, everything stops with its last words on screen.
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');
const { compileLua } = require('./build');
const { loadConfig, ROOT } = require('./config');
const { render } = require('./render');
const { nginxBin, prefixArgs, testConfig } = require('./nginx');
const { freePort, waitForPort, bindProblem, HOST } = require('./net');

// Debian installs nats-server in /usr/sbin, which is not on a normal user's PATH.
const NATS_BIN = process.env.NATS_SERVER_BIN || (fs.existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server');

function say(msg) {
  process.stdout.write(`[run] ${msg}\n`);
}

class Supervisor {
  constructor() {
    this.children = [];
    this.stopping = false;
  }

  /** Spawns a child whose output lines are prefixed with its name. */
  start(name, command, args, { graceful = 'SIGTERM' } = {}) {
    const child = spawn(command, args, { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const entry = { name, child, exited: null, graceful };
    const forward = (stream) => (buf) => {
      for (const line of buf.toString('utf8').split('\n')) if (line) stream.write(`[${name}] ${line}\n`);
    };
    child.stdout.on('data', forward(process.stdout));
    child.stderr.on('data', forward(process.stderr));
    child.on('error', (err) => {
      entry.exited = { code: null, signal: null };
      process.stderr.write(`[run] cannot start ${name} (${command}): ${err.message}\n`);
      this.shutdown(1);
    });
    child.on('exit', (code, signal) => {
      entry.exited = { code, signal };
      if (!this.stopping) {
        process.stderr.write(`[run] ${name} exited unexpectedly (code ${code}, signal ${signal}); stopping everything\n`);
        this.shutdown(1);
      }
    });
    this.children.push(entry);
    return entry;
  }

  /** Stops children newest first (nginx gracefully, then the Router, then NATS) and exits. */
  async shutdown(code) {
    if (this.stopping) return;
    this.stopping = true;
    say('stopping…');
    for (const e of [...this.children].reverse()) {
      if (e.exited) continue;
      const done = new Promise((r) => e.child.once('exit', r));
      try {
        e.child.kill(e.graceful);
      } catch (err) {
        /* already gone */
      }
      const timer = setTimeout(() => {
        try {
          e.child.kill('SIGKILL');
        } catch (err) {
          /* gone */
        }
      }, 15000);
      await done;
      clearTimeout(timer);
      say(`${e.name} stopped`);
    }
    if (this.onStopped) await this.onStopped();
    process.exit(code);
  }
}

/** Resolves when a child prints a line matching `pattern`; rejects after `ms`. */
function waitForOutput(entry, pattern, ms, what) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} did not start within ${ms / 1000} s`)), ms);
    entry.child.stdout.on('data', (buf) => {
      if (pattern.test(buf.toString())) {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

/** What to tell a user whose port cannot be bound, and how to pick another. */
function portMessage(listen, port, code, file) {
  const why =
    code === 'EADDRINUSE'
      ? 'is already in use by another process'
      : code === 'EACCES'
        ? 'needs privileges this user does not have'
        : code === 'EADDRNOTAVAIL'
          ? 'is not an address of this machine'
          : `cannot be bound (${code})`;
  return (
    `port ${port} on ${listen} ${why}: the gateway did not start.\n` +
    `  choose another port: GATEWAY_PORT=${port === 8080 ? 8081 : port + 1} make run  (or server.port in ${file})` +
    (code === 'EADDRINUSE' ? `\n  see who holds it: ss -ltnp 'sport = :${port}'` : '')
  );
}

/**
 * Resolves once nginx itself listens: its master wrote the pid file (nginx does that only after
 * every listening socket is bound) and the port accepts connections. Rejects when nginx exits
 * first, with the port hint when its last words were a bind() failure.
 */
function nginxListening(entry, pidFile, config, host, file) {
  const stderr = [];
  entry.child.stderr.on('data', (b) => stderr.push(b.toString('utf8')));
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      if (err) reject(err);
      else resolve();
    };
    entry.child.once('exit', () => {
      const text = stderr.join('');
      const m = /bind\(\) to \S+ failed \(\d+: ([^)]+)\)/.exec(text);
      if (m) {
        const code = /in use/i.test(m[1]) ? 'EADDRINUSE' : /permission/i.test(m[1]) ? 'EACCES' : m[1];
        finish(new Error(portMessage(config.server.listen, config.server.port, code, file)));
      } else finish(new Error('nginx exited before it listened (its messages are above)'));
    });
    const deadline = Date.now() + 15000;
    const timer = setInterval(async () => {
      let pid = '';
      try {
        pid = fs.readFileSync(pidFile, 'utf8').trim();
      } catch (e) {
        /* not yet */
      }
      if (pid === String(entry.child.pid) && !done) {
        try {
          await waitForPort(config.server.port, 5000, host);
          finish();
        } catch (err) {
          finish(err);
        }
      } else if (Date.now() > deadline) {
        finish(new Error(`nginx did not listen on ${host}:${config.server.port} within 15 s`));
      }
    }, 25);
  });
}

/**
 * @param {{prefix?: string, supervisor: Supervisor}} opts
 * @returns {Promise<{config: object, file: string, prefix: string, nginx: object, url: string}>}
 */
async function startLocalStack({ prefix, supervisor }) {
  const c = compileLua({ log: say });
  say(c.built ? `lua compiled in ${c.ms} ms` : 'lua up to date');

  const { config, file } = loadConfig();
  const subject = config.router.decide_subject;
  if (!process.env.NATS_URL) {
    const port = Number(process.env.NATS_PORT) || (await freePort());
    const natsUrl = `nats://${HOST}:${port}`;
    const nats = supervisor.start('nats', NATS_BIN, ['-a', HOST, '-p', String(port)]);
    await waitForPort(port, 10000);
    say(`embedded nats-server (pid ${nats.child.pid}) on ${natsUrl}`);
    const router = supervisor.start('router', process.execPath, [
      path.join(ROOT, 'router', 'reference-router.js'),
      '--nats',
      natsUrl,
      '--subject',
      subject,
    ]);
    await waitForOutput(router, /listening on/, 10000, 'the reference Router');
    say(`reference Router (pid ${router.child.pid}) answering on ${subject}`);
    config.nats.servers = [natsUrl];
  } else {
    say(`using external NATS ${config.nats.servers.join(',')} (no embedded nats-server or Router)`);
  }

  const out = render(config, { prefix });
  say(`config ${file} rendered into ${out.prefix}/`);
  const t = testConfig(out.prefix);
  if (!t.ok) throw new Error(`nginx -t failed:\n${t.output}`);

  // A port another process holds: say so before nginx retries bind() for 2.5 s and exits.
  const listen = config.server.listen.replace(/^\[|\]$/g, '');
  const problem = await bindProblem(config.server.port, listen);
  if (problem) throw new Error(portMessage(config.server.listen, config.server.port, problem, file));

  const nginx = supervisor.start('nginx', nginxBin(), prefixArgs(out.prefix), { graceful: 'SIGQUIT' });
  say(`nginx master pid ${nginx.child.pid}`);
  const host = config.server.listen === '0.0.0.0' ? HOST : listen;
  await nginxListening(nginx, path.join(out.prefix, 'logs', 'nginx.pid'), config, host, file);
  const shown = config.server.listen === '0.0.0.0' ? HOST : config.server.listen;
  const url = `http://${shown}:${config.server.port}`;
  say(`Beamline gateway listening on ${url} (${config.server.workers} worker(s), NATS ${config.nats.servers.join(',')})`);
  return { config, file, prefix: out.prefix, nginx, url };
}

module.exports = { Supervisor, startLocalStack, say };
