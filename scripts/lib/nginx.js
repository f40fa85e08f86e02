'use strict';
// Finding and driving the nginx binary: `nginx -t` on a rendered prefix, start, reload, quit.
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const CANDIDATES = ['/usr/sbin/nginx', '/usr/local/openresty/nginx/sbin/nginx', '/usr/local/openresty/bin/openresty'];

function nginxBin() {
  if (process.env.NGINX_BIN) return process.env.NGINX_BIN;
  const found = CANDIDATES.find((p) => fs.existsSync(p));
  if (!found) throw new Error('nginx not found: run `make setup` (Debian: nginx + libnginx-mod-http-lua) or set NGINX_BIN');
  return found;
}

/** Arguments that point nginx at a rendered prefix. */
function prefixArgs(prefix) {
  return ['-p', prefix + '/', '-c', path.join(prefix, 'nginx.conf'), '-e', 'stderr'];
}

/** Runs `nginx -t` on the rendered prefix. @returns {{ok: boolean, output: string}} */
function testConfig(prefix) {
  // nginx -t reports on stderr. Its stdout is /dev/null, not a pipe: a config logging to
  // /dev/stdout must open it, and a pipe from node is a socket, which fails with ENXIO.
  const r = spawnSync(nginxBin(), ['-t', ...prefixArgs(prefix)], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  const output = `${r.stderr || ''}`.trim();
  return { ok: r.status === 0, output: r.error ? r.error.message : output };
}

/** Sends a signal through `nginx -s` (reload, quit, stop, reopen). */
function signal(prefix, sig) {
  const r = spawnSync(nginxBin(), ['-s', sig, ...prefixArgs(prefix)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nginx -s ${sig} failed: ${(r.stderr || '').trim()}`);
}

/** PIDs of a process's direct children (an nginx master's workers); [] when it is gone. */
function workerPids(masterPid) {
  try {
    return fs.readFileSync(`/proc/${masterPid}/task/${masterPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch (err) {
    return [];
  }
}

module.exports = { nginxBin, prefixArgs, testConfig, signal, workerPids };
