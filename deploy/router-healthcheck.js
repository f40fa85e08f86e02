#!/usr/bin/env node
'use strict';
// Health check of the reference Router container (docker-compose): one decide request over
// NATS to the Router's subject; exit 0 when a Router answers with a JSON envelope (a boolean
// `ok`), 1 otherwise (NATS down, no responders, timeout, malformed reply). It proves the whole
// path the gateway uses: NATS up, Router subscribed, Router answering.
//
//   node deploy/router-healthcheck.js [--nats URL[,URL…]] [--subject S] [--timeout-ms N]
//
// Defaults: NATS_URL, ROUTER_DECIDE_SUBJECT (as the Router itself reads them), 2000 ms.
// Needs the `nats` client (the Router image has it).
const { connect } = require('nats');

function parseArgs(argv, env = process.env) {
  const out = {
    servers: env.NATS_URL || 'nats://127.0.0.1:4222',
    subject: env.ROUTER_DECIDE_SUBJECT || 'beamline.router.v1.decide',
    timeoutMs: 2000,
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    switch (flag) {
      case '--nats':
        out.servers = value();
        break;
      case '--subject':
        out.subject = value();
        break;
      case '--timeout-ms':
        out.timeoutMs = Number(value());
        break;
      default:
        throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!(out.timeoutMs > 0)) throw new Error('--timeout-ms must be a positive number');
  return out;
}

const REQUEST = JSON.stringify({
  version: '1',
  tenant_id: 'healthcheck',
  request_id: 'healthcheck',
  task: { type: 'healthcheck', payload: {} },
});

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const servers = args.servers
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  let nc;
  try {
    nc = await connect({ servers, timeout: args.timeoutMs, name: 'beamline-router-healthcheck', maxReconnectAttempts: 0 });
    const msg = await nc.request(args.subject, new TextEncoder().encode(REQUEST), { timeout: args.timeoutMs });
    const reply = JSON.parse(new TextDecoder().decode(msg.data));
    if (typeof reply.ok !== 'boolean') throw new Error('reply has no boolean "ok"');
    console.log(`${args.subject}: router answered ok=${reply.ok}`);
    return 0;
  } catch (e) {
    console.error(`${args.subject}: ${e.message || e.code}`);
    return 1;
  } finally {
    if (nc) await nc.close().catch(() => {});
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

module.exports = { parseArgs, REQUEST };
