#!/usr/bin/env node
'use strict';
// `make run`: the whole gateway in the foreground (see scripts/lib/stack.js): builds the Lua if
// the TypeScript changed, renders and checks the config, starts an embedded nats-server and the
// reference Router unless NATS_URL is set, then nginx. Ctrl-C / SIGTERM stops every child.
//   node scripts/run.js [--prefix DIR]
// Environment: GATEWAY_CONFIG (config file, default gateway.yaml), NATS_URL (comma-separated
// servers: use them, start no nats-server and no Router), GATEWAY_PORT, and every other override
// of the README's configuration table.
const { Supervisor, startLocalStack, say } = require('./lib/stack');
const { parseArgs } = require('./lib/args');

async function main() {
  const args = parseArgs(process.argv.slice(2), { string: ['prefix'] });
  const supervisor = new Supervisor();
  process.on('SIGINT', () => supervisor.shutdown(0));
  process.on('SIGTERM', () => supervisor.shutdown(0));
  try {
    const stack = await startLocalStack({ prefix: args.prefix, supervisor });
    say(`try: curl -s ${stack.url}/healthz`);
    say(`     curl -s -H 'X-Tenant-ID: demo' ${stack.url}/api/v1/extensions/health`);
    say(`logs: ${stack.prefix}/logs/ — Ctrl-C stops everything`);
  } catch (err) {
    process.stderr.write(`[run] ${err.message}\n`);
    supervisor.shutdown(1);
  }
}

main().catch((err) => {
  process.stderr.write(`[run] ${err.message}\n`);
  process.exit(1);
});
