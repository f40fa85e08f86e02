#!/usr/bin/env node
'use strict';
// Container health check of the gateway (Dockerfile HEALTHCHECK, docker-compose): one HTTP GET,
// exit 0 on a 200, 1 otherwise. Dependency-free (the runtime image has node but no curl).
//
//   node deploy/healthcheck.js [--prefix DIR] [--path /healthz] [--url URL] [--timeout-ms N]
//
// Without --url the address comes from the rendered config of the running gateway
// (<prefix>/gateway.json: server.listen and server.port, environment overrides included), so
// the check follows GATEWAY_PORT or a port set in the config file; a wildcard listen address
// (0.0.0.0, [::]) is reached on loopback. When gateway.json cannot be read (not rendered yet),
// GATEWAY_LISTEN / GATEWAY_PORT or 127.0.0.1:8080 are used.
const fs = require('fs');
const http = require('http');
const path = require('path');

function parseArgs(argv) {
  const out = {
    prefix: process.env.GATEWAY_PREFIX || '/var/run/beamline',
    path: '/healthz',
    url: undefined,
    timeoutMs: 2000,
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    switch (flag) {
      case '--prefix':
        out.prefix = value();
        break;
      case '--path':
        out.path = value();
        break;
      case '--url':
        out.url = value();
        break;
      case '--timeout-ms':
        out.timeoutMs = Number(value());
        break;
      default:
        throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!out.path.startsWith('/')) throw new Error('--path must start with /');
  if (!(out.timeoutMs > 0)) throw new Error('--timeout-ms must be a positive number');
  return out;
}

/** The loopback-reachable host for a listen address (as the config spells it). */
function connectHost(listen) {
  if (!listen || listen === '0.0.0.0' || listen === 'localhost') return '127.0.0.1';
  const v6 = /^\[(.*)\]$/.exec(listen);
  if (v6) return v6[1] === '::' ? '::1' : v6[1];
  return listen;
}

/** {host, port} of the gateway, from gateway.json or the environment. */
function target(prefix, env = process.env) {
  try {
    const cfg = JSON.parse(fs.readFileSync(path.join(prefix, 'gateway.json'), 'utf8'));
    if (cfg && cfg.server && Number.isInteger(cfg.server.port)) {
      return { host: connectHost(cfg.server.listen), port: cfg.server.port };
    }
  } catch (e) {
    /* not rendered yet or unreadable: fall back to the environment */
  }
  const port = /^\d+$/.test(env.GATEWAY_PORT || '') ? Number(env.GATEWAY_PORT) : 8080;
  return { host: connectHost(env.GATEWAY_LISTEN), port };
}

function get(options, timeoutMs) {
  return new Promise((resolve, reject) => {
    const req = http.get({ ...options, headers: { 'User-Agent': 'beamline-healthcheck' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        if (body.length < 4096) body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let options;
  if (args.url) {
    const u = new URL(args.url);
    options = { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: u.port || 80, path: u.pathname + u.search };
  } else {
    const t = target(args.prefix);
    options = { host: t.host, port: t.port, path: args.path };
  }
  const where = `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}${options.path}`;
  try {
    const r = await get(options, args.timeoutMs);
    const line = `${where} -> ${r.status} ${r.body.trim().slice(0, 200)}`;
    if (r.status === 200) {
      console.log(line);
      return 0;
    }
    console.error(line);
    return 1;
  } catch (e) {
    console.error(`${where} -> ${e.message}`);
    return 1;
  }
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      console.error(e.message);
      process.exit(1);
    },
  );
}

module.exports = { parseArgs, connectHost, target };
