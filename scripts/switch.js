#!/usr/bin/env node
'use strict';
// `make switch PERCENT=N [SHADOW=on|off]`: moves the traffic switch (migration.*, docs/RUNBOOK.md)
// of a running gateway with a checked reload:
//   1. rewrites migration.share_percent (and migration.shadow.enabled) in the config file, in
//      place: only that value's characters change, comments and layout are kept;
//   2. validates the result (schema, environment overrides: as `make run` loads it);
//   3. renders it into a staging prefix and runs `nginx -t` there;
//   4. writes the config file, renders into the live prefix, `nginx -s reload`, and waits until
//      a new worker runs (old workers finish their in-flight requests with the old share).
// Any failure before 4 changes nothing; a failure in 4 puts the file and the live prefix back.
// The switch changes only the switch: if the file holds other changes that are not live yet
// (compared with the live prefix's gateway.json), it refuses unless --force (FORCE=1).
//
//   node scripts/switch.js --percent N [--shadow on|off] [--config FILE] [--prefix DIR] [--force]
const fs = require('fs');
const os = require('os');
const path = require('path');
const YAML = require('yaml');
const { loadConfig, ConfigError, ROOT } = require('./lib/config');
const { render } = require('./lib/render');
const { testConfig, signal } = require('./lib/nginx');
const { parseArgs } = require('./lib/args');

const SHARE = ['migration', 'share_percent'];
const SHADOW = ['migration', 'shadow', 'enabled'];

class Refusal extends Error {}

/** The PID of the nginx master running with `prefix`, or null. */
function runningMaster(prefix) {
  let pid;
  try {
    pid = Number(fs.readFileSync(path.join(prefix, 'logs', 'nginx.pid'), 'utf8').trim());
  } catch (err) {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
    if (!fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('nginx')) return null;
  } catch (err) {
    if (err.code === 'EPERM') return pid; // alive, another user's: nginx -s will tell
    return null;
  }
  return pid;
}

/** PIDs of the processes whose parent is `ppid` (the master's workers). */
function childrenOf(ppid) {
  const out = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      // pid (comm) state ppid …: comm may hold spaces and parentheses; the last ')' ends it.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) out.push(Number(e));
    } catch (err) {
      /* gone */
    }
  }
  return out;
}

/**
 * Sets `keys` to `value` in the YAML text. An existing scalar is replaced in place (its source
 * range), so nothing else in the file changes; a missing key is added with the Document API.
 */
function setScalar(text, keys, value) {
  const doc = YAML.parseDocument(text, { uniqueKeys: true });
  const node = doc.getIn(keys, true);
  if (node && YAML.isScalar(node) && Array.isArray(node.range)) {
    return text.slice(0, node.range[0]) + String(value) + text.slice(node.range[1]);
  }
  doc.setIn(keys, value);
  return doc.toString({ lineWidth: 0 });
}

function getIn(obj, keys) {
  return keys.reduce((o, k) => (o === undefined || o === null ? undefined : o[k]), obj);
}

/** Key paths where two plain JSON values differ. */
function differences(a, b, at = '', out = []) {
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      differences(a[k], b[k], Array.isArray(a) ? `${at}[${k}]` : at ? `${at}.${k}` : k, out);
    }
  } else if (JSON.stringify(a) !== JSON.stringify(b)) {
    out.push(at || '(top level)');
  }
  return out;
}

/** Validates config text exactly as `make run` would load it (this process's environment). */
function validate(text, file) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'beamline-switch-cfg-'));
  try {
    const f = path.join(tmp, path.basename(file));
    fs.writeFileSync(f, text);
    return loadConfig({ file: f }).config;
  } catch (err) {
    if (err instanceof ConfigError) throw new Refusal(err.message.split(path.join(tmp, path.basename(file))).join(file));
    throw err;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Snapshot of the rendered files of a prefix, to put back when a step fails. */
function snapshot(prefix) {
  const files = new Map();
  const add = (f) => {
    if (fs.existsSync(f)) files.set(f, { text: fs.readFileSync(f), mode: fs.statSync(f).mode & 0o777 });
  };
  add(path.join(prefix, 'nginx.conf'));
  add(path.join(prefix, 'gateway.json'));
  const confd = path.join(prefix, 'conf.d');
  if (fs.existsSync(confd)) for (const f of fs.readdirSync(confd)) add(path.join(confd, f));
  return {
    restore() {
      if (fs.existsSync(confd)) for (const f of fs.readdirSync(confd)) if (!files.has(path.join(confd, f))) fs.rmSync(path.join(confd, f));
      for (const [f, { text, mode }] of files) {
        fs.writeFileSync(f, text, { mode });
        fs.chmodSync(f, mode);
      }
    },
  };
}

/** Replaces a file's content atomically, keeping its mode. */
function writeAtomic(file, text) {
  const mode = fs.statSync(file).mode & 0o777;
  const tmp = `${file}.switch-${process.pid}`;
  fs.writeFileSync(tmp, text, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}

async function waitForNewWorker(master, before, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (childrenOf(master).some((p) => !before.has(p))) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/**
 * @param {{percent?: string, shadow?: string, config?: string, prefix?: string, force?: boolean,
 *   env?: NodeJS.ProcessEnv, log?: (s: string) => void}} o
 */
async function doSwitch(o) {
  const log = o.log || ((s) => process.stdout.write(`${s}\n`));
  const env = o.env || process.env;
  if ((o.percent === undefined || o.percent === '') && o.shadow === undefined) {
    throw new Refusal('give PERCENT=N (0-100), and/or SHADOW=on|off');
  }
  let percent;
  if (o.percent !== undefined && o.percent !== '') {
    if (!/^\d{1,3}$/.test(String(o.percent)) || Number(o.percent) > 100) {
      throw new Refusal(`PERCENT must be an integer from 0 to 100, not ${JSON.stringify(String(o.percent))}`);
    }
    percent = Number(o.percent);
  }
  let shadow;
  if (o.shadow !== undefined) {
    if (!['on', 'off'].includes(o.shadow)) throw new Refusal(`SHADOW must be on or off, not ${JSON.stringify(o.shadow)}`);
    shadow = o.shadow === 'on';
  }
  const file = path.resolve(o.config || env.GATEWAY_CONFIG || path.join(ROOT, 'gateway.yaml'));
  const prefix = path.resolve(o.prefix || path.join(ROOT, 'nginx'));

  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Refusal(`cannot read the config file ${file}: ${err.code || err.message}`);
  }
  const before = validate(text, file);
  let next = text;
  if (percent !== undefined) next = setScalar(next, SHARE, percent);
  if (shadow !== undefined) next = setScalar(next, SHADOW, shadow);
  const config = validate(next, file);
  // Disabling the switch altogether (after the decommission) is an edit applied with FORCE=1.
  if (!config.migration.enabled && !o.force) {
    throw new Refusal(`migration is not enabled in ${file}: set migration.enabled: true and migration.legacy_url (docs/RUNBOOK.md)`);
  }
  const changes = [];
  if (percent !== undefined) changes.push(`migration.share_percent: ${before.migration.share_percent} → ${config.migration.share_percent}`);
  if (shadow !== undefined)
    changes.push(`migration.shadow.enabled: ${before.migration.shadow.enabled} → ${config.migration.shadow.enabled}`);

  const master = runningMaster(prefix);
  if (master === null) {
    throw new Refusal(`no nginx is running with the prefix ${prefix} (start the gateway with make run, or give PREFIX=)`);
  }
  const liveFile = path.join(prefix, 'gateway.json');
  let live;
  try {
    live = JSON.parse(fs.readFileSync(liveFile, 'utf8'));
    // What the renderer adds beside the validated config (not a setting of the file).
    delete live.version;
    delete live.dns_hosts;
  } catch (err) {
    throw new Refusal(`cannot read the live config ${liveFile}: ${err.code || err.message}`);
  }
  // `make run` without NATS_URL points the gateway at its own embedded nats-server: keep that.
  if (!env.NATS_URL && live.nats && Array.isArray(live.nats.servers)) config.nats.servers = live.nats.servers;
  // Only the switch may change: anything else that differs from what is live is refused.
  const expected = JSON.parse(JSON.stringify(config));
  for (const keys of [SHARE, SHADOW]) {
    const v = getIn(live, keys);
    if (v !== undefined) getIn(expected, keys.slice(0, -1))[keys[keys.length - 1]] = v;
  }
  const drift = differences(live, expected);
  if (drift.length && !o.force) {
    throw new Refusal(
      `${file} holds other changes that are not live: ${drift.slice(0, 10).join(', ')}${drift.length > 10 ? ', …' : ''}\n` +
        '  (edits in the file, or environment overrides that differ from those the gateway was started with);\n' +
        '  apply them on purpose with FORCE=1 (--force), or revert them',
    );
  }
  if (
    next === text &&
    !drift.length &&
    getIn(live, SHARE) === config.migration.share_percent &&
    getIn(live, SHADOW) === config.migration.shadow.enabled
  ) {
    log(`${changes.join(', ')}: already live, nothing to do`);
    return { changed: false, changes };
  }

  // Staging render + nginx -t: a config nginx rejects never reaches the live prefix.
  const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'beamline-switch-'));
  try {
    render(config, { prefix: staging });
    const t = testConfig(staging);
    if (!t.ok) throw new Refusal(`nginx -t failed on the new config:\n${t.output}`);
  } catch (err) {
    if (err instanceof Refusal) throw err;
    throw new Refusal(`cannot render the new config: ${err.message}`);
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }

  const saved = snapshot(prefix);
  const workers = new Set(childrenOf(master));
  const rollback = (why) => {
    writeAtomic(file, text);
    saved.restore();
    return new Refusal(`${why}; the config file and ${prefix} were put back (nginx keeps the old share)`);
  };
  writeAtomic(file, next);
  try {
    render(config, { prefix });
    signal(prefix, 'reload');
  } catch (err) {
    throw rollback(`reload failed: ${err.message}`);
  }
  if (!(await waitForNewWorker(master, workers, 15000))) {
    throw rollback(`nginx (master ${master}) started no new worker within 15 s; see ${path.join(prefix, 'logs', 'error.log')}`);
  }
  const shown = path.relative(process.cwd(), file);
  log(`${changes.join(', ')} (${shown && !shown.startsWith('..') ? shown : file}; nginx reloaded, prefix ${prefix})`);
  return { changed: true, changes };
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2), { string: ['percent', 'shadow', 'config', 'prefix'], boolean: ['force'] });
  } catch (err) {
    console.error(`switch: ${err.message}`);
    return 2;
  }
  try {
    await doSwitch(args);
    return 0;
  } catch (err) {
    console.error(err instanceof Refusal ? `switch refused, nothing changed: ${err.message}` : `switch: ${err.stack || err.message}`);
    return 1;
  }
}

if (require.main === module) {
  main().then((code) => process.exit(code));
}

module.exports = { doSwitch, setScalar, Refusal };
