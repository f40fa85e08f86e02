#!/usr/bin/env node
'use strict';
// `make dev`: the local stack of `make run`, plus a watch loop:
//   src-ts/ changed   → TypeScriptToLua recompiles incrementally (only what changed)
//   templates/ or the config changed → re-validate and re-render
// then `nginx -t` on a staging render and a graceful `nginx -s reload`. A broken edit (type
// error, schema error, nginx -t failure) is reported and nothing is reloaded: the last good
// version keeps serving. nginx error-log lines are shown with Lua positions mapped to the
// TypeScript source. Each reload prints how long the edit took to go live.
//   node scripts/dev.js [--prefix DIR]
const fs = require('fs');
const os = require('os');
const path = require('path');
const { Supervisor, startLocalStack } = require('./lib/stack');
const { loadConfig, ConfigError, ROOT } = require('./lib/config');
const { render } = require('./lib/render');
const { testConfig, signal, workerPids } = require('./lib/nginx');
const { mapText, clearCache } = require('./lib/sourcemap');
const { parseArgs } = require('./lib/args');

const TSTL = path.join(ROOT, 'node_modules', 'typescript-to-lua', 'dist', 'tstl.js');
const say = (msg) => process.stdout.write(`[dev] ${msg}\n`);

function shuttingDown(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('shutting down');
  } catch (err) {
    return true; // gone
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2), { string: ['prefix'] });
  const supervisor = new Supervisor();
  process.on('SIGINT', () => supervisor.shutdown(0));
  process.on('SIGTERM', () => supervisor.shutdown(0));
  const stack = await startLocalStack({ prefix: args.prefix, supervisor });
  const masterPid = stack.nginx.child.pid;
  const natsServers = stack.config.nats.servers; // the embedded server's URL when there is one
  const stagingPrefix = fs.mkdtempSync(path.join(os.tmpdir(), 'beamline-dev-staging-'));
  supervisor.onStopped = () => fs.rmSync(stagingPrefix, { recursive: true, force: true });

  let changedAt = null; // when the first unapplied edit was seen
  let busy = Promise.resolve();

  const keep = (msg) => {
    changedAt = null;
    say(`${msg}\n[dev] not reloaded: the last good version keeps serving`);
  };

  /** Validates, renders, checks and reloads; keeps the running version on any failure. */
  const apply = (why) => {
    busy = busy.then(async () => {
      const t0 = changedAt || Date.now();
      const tApply = Date.now();
      let config;
      try {
        ({ config } = loadConfig());
      } catch (err) {
        keep(err instanceof ConfigError ? err.message : `config: ${err.message}`);
        return;
      }
      if (!process.env.NATS_URL) config.nats.servers = natsServers;
      try {
        render(config, { prefix: stagingPrefix });
        const t = testConfig(stagingPrefix);
        if (!t.ok) {
          keep(`nginx -t failed:\n${t.output}`);
          return;
        }
        render(config, { prefix: stack.prefix });
        const before = new Set(workerPids(masterPid));
        signal(stack.prefix, 'reload');
        // Live once a new worker is up and every old one has stopped accepting (nginx retitles
        // a worker "worker process is shutting down" as it closes its listening sockets).
        const deadline = Date.now() + 10000;
        const isLive = () => {
          const now = workerPids(masterPid);
          return now.some((p) => !before.has(p)) && [...before].every((p) => !now.includes(p) || shuttingDown(p));
        };
        while (!isLive() && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 5));
        }
        clearCache();
        changedAt = null;
        say(`${why}: live in ${Date.now() - t0} ms (${tApply - t0} ms to compile, ${Date.now() - tApply} ms to check and reload)`);
      } catch (err) {
        keep(`reload failed: ${err.message}`);
      }
    });
  };

  // TypeScript: the compiler's own watch mode recompiles only what changed; --noEmitOnError
  // keeps the last good Lua on disk when an edit does not type-check.
  const tstl = supervisor.start('tstl', process.execPath, [
    TSTL,
    '-p',
    path.join(ROOT, 'tsconfig.json'),
    '--watch',
    '--noEmitOnError',
    '--preserveWatchOutput',
    '--assumeChangesOnlyAffectDirectDependencies',
  ]);
  tstl.child.stdout.removeAllListeners('data');
  let initial = true;
  let diagnostics = [];
  let pending = '';
  tstl.child.stdout.on('data', (buf) => {
    pending += buf.toString('utf8');
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      // eslint-disable-next-line no-control-regex
      const line = pending.slice(0, i).replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
      pending = pending.slice(i + 1);
      const found = line.match(/Found (\d+) errors?\./);
      if (/File change detected|Starting compilation/.test(line)) {
        diagnostics = [];
      } else if (found) {
        if (Number(found[1]) > 0) {
          keep(`TypeScript: ${found[1]} error(s):\n${diagnostics.join('\n')}`);
        } else if (initial) {
          say('watching src-ts/, templates/ and the config for changes');
        } else {
          apply('src-ts');
        }
        initial = false;
      } else if (line.trim()) {
        diagnostics.push(line);
      }
    }
  });

  // Timestamps for "live in": our own watcher sees the edit before the compiler's debounce.
  fs.watch(path.join(ROOT, 'src-ts'), { recursive: true }, () => {
    if (!changedAt) changedAt = Date.now();
  });
  let renderTimer = null;
  const onConfigChange = (what) => () => {
    if (!changedAt) changedAt = Date.now();
    clearTimeout(renderTimer);
    renderTimer = setTimeout(() => apply(what), 50);
  };
  fs.watch(path.join(ROOT, 'templates'), { recursive: true }, onConfigChange('templates'));
  fs.watch(stack.file, onConfigChange(path.basename(stack.file)));

  // nginx's error log, warnings and worse, with Lua positions mapped to TypeScript.
  const errorLog = path.join(stack.prefix, 'logs', 'error.log');
  let offset = fs.existsSync(errorLog) ? fs.statSync(errorLog).size : 0;
  setInterval(() => {
    let size;
    try {
      size = fs.statSync(errorLog).size;
    } catch (err) {
      return;
    }
    if (size < offset) offset = 0;
    if (size === offset) return;
    const fd = fs.openSync(errorLog, 'r');
    const buf = Buffer.alloc(size - offset);
    fs.readSync(fd, buf, 0, buf.length, offset);
    fs.closeSync(fd);
    offset = size;
    for (const line of buf.toString('utf8').split('\n')) {
      if (/\[(warn|error|crit|alert|emerg)\]/.test(line)) process.stdout.write(`[nginx] ${mapText(line, ROOT)}\n`);
    }
  }, 200).unref();
}

main().catch((err) => {
  process.stderr.write(`[dev] ${err.message}\n`);
  process.exit(1);
});
