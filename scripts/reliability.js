#!/usr/bin/env node
'use strict';
// `npm run reliability`: the reliability scenarios of issue 8 on the real stack (nginx +
// nats-server + the reference Router on free loopback ports), full profile by default. Every
// scenario keeps a load running, counts and classifies every response, and reports: requests
// sent, answered by status, transport errors, failures beyond what the contract allows (target
// 0), recovery time. Prints a table and writes bench/results/reliability-<time>.json.
//
//   npm run reliability                         chaos scenarios + slow clients + fuzz (full profile)
//   npm run reliability -- --profile ci         the shorter profile the jest suite runs
//   npm run reliability -- --only kill,cluster,silence,reload,quit,slow,fuzz
//   npm run reliability -- --memory [--requests 1000000]   worker RSS across many requests
//   npm run reliability -- --fuzz [--seed N] [--count N]   only the fuzzer
// The scenarios are in spec/support/reliability.js, the fuzzer in spec/support/fuzz.js;
// docs/RELIABILITY.md explains what each guarantees.
const fs = require('fs');
const path = require('path');
const { parseArgs } = require('./lib/args');
const { compileLua } = require('./lib/build');
const { ROOT } = require('./lib/config');
const rel = require('../spec/support/reliability');
const { runFuzz, WORKER_TROUBLE } = require('../spec/support/fuzz');
const { startStack, waitReady, waitDecideOk } = require('../spec/support/gateway');
const { stopAll } = require('../spec/support/processes');
const { workerPids } = require('./lib/nginx');

const SCENARIOS = {
  kill: rel.natsKillRestart,
  cluster: rel.clusterNodeKill,
  silence: rel.silenceShare,
  reload: rel.reloadsInARow,
  quit: rel.gracefulQuit,
  slow: rel.slowClients,
};

async function fuzzScenario(p, { seed, count }) {
  try {
    const { gateway: gw } = await startStack({
      routerArgs: ['--fast'],
      configure: (raw) => {
        raw.server = { ...raw.server, client_header_timeout_seconds: 1, client_body_timeout_seconds: 1 };
        raw.routes = { decide: { rate_limit: { limit: 1000000000 } }, messages: { rate_limit: { limit: 1000000000 } } };
      },
    });
    await waitReady(gw);
    await waitDecideOk(gw);
    const before = workerPids(gw.pid);
    const r = await runFuzz({
      port: gw.port,
      seed,
      count,
      concurrency: 24,
      onProgress: (n, total) => {
        if (n % 10000 === 0) process.stdout.write(`  fuzz ${n}/${total}\n`);
      },
    });
    const trouble = gw
      .errorLog()
      .split('\n')
      .filter((l) => WORKER_TROUBLE.test(l));
    const lost = before.filter((pid) => !workerPids(gw.pid).includes(pid));
    return {
      scenario: `fuzz: ${count} malformed requests, seed ${seed}`,
      sent: r.sent,
      answered: r.byStatus,
      errors: 0,
      beyond: r.failures.length + trouble.length + lost.length,
      beyondSamples: [
        ...r.failures.slice(0, 5).map((f) => `case ${f.i} [${f.category}] ${f.why}: ${f.request.slice(0, 300)}`),
        ...trouble.slice(0, 3),
      ],
      recovery_ms: null,
      details: {
        seed,
        ms: r.ms,
        per_second: Math.round(r.sent / (r.ms / 1000)),
        by_category: r.byCategory,
        worker_trouble_lines: trouble.length,
        workers_lost: lost.length,
      },
      note: 'closed = the server closed without an answer (only for unfinished requests)',
    };
  } finally {
    await stopAll();
  }
}

function statusText(answered) {
  return Object.entries(answered)
    .map(([s, n]) => `${s}:${n}`)
    .join(' ');
}

function table(rows) {
  const head = ['scenario', 'sent', 'answered by status', 'transport errors', 'beyond contract', 'recovery'];
  const body = rows.map((r) => [
    r.scenario,
    String(r.sent),
    statusText(r.answered),
    String(r.errors),
    String(r.beyond),
    r.recovery_ms === null || r.recovery_ms === undefined ? '—' : `${r.recovery_ms} ms`,
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => c.padEnd(w[i])).join(' | ')} |`;
  return [line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    boolean: ['memory', 'fuzz'],
    string: ['profile', 'only', 'requests', 'seed', 'count', 'out'],
  });
  const profileName = args.profile || 'full';
  const p = JSON.parse(JSON.stringify(rel.PROFILES[profileName] || {}));
  if (!rel.PROFILES[profileName]) throw new Error(`unknown profile ${profileName} (ci, full)`);
  compileLua();
  const rows = [];
  const t0 = Date.now();
  const run = async (name, fn) => {
    const t = Date.now();
    process.stdout.write(`▶ ${name}…\n`);
    const row = await fn();
    row.seconds = Math.round((Date.now() - t) / 100) / 10;
    rows.push(row);
    process.stdout.write(
      `  ${row.scenario}: sent ${row.sent}, ${statusText(row.answered)}, errors ${row.errors}, beyond ${row.beyond}` +
        `${row.recovery_ms !== null && row.recovery_ms !== undefined ? `, recovery ${row.recovery_ms} ms` : ''} (${row.seconds} s)\n  details ${JSON.stringify(row.details)}\n` +
        `${row.beyondSamples.length ? `  beyond-contract samples: ${JSON.stringify(row.beyondSamples)}\n` : ''}`,
    );
  };
  if (args.memory) {
    if (args.requests) p.memory.requests = Number(args.requests);
    await run('memory', () =>
      rel.memory(p, {
        onProgress: (tag, i, n, m) =>
          process.stdout.write(`  ${tag} ${i}/${n} requests, worker RSS ${m.rss} KiB (anon ${m.anon}, shmem ${m.shmem})\n`),
      }),
    );
  } else if (args.fuzz) {
    await run('fuzz', () => fuzzScenario(p, { seed: Number(args.seed || 20261126), count: Number(args.count || p.fuzz) }));
  } else {
    const only = args.only ? String(args.only).split(',') : [...Object.keys(SCENARIOS), 'fuzz'];
    for (const name of only) {
      if (name === 'fuzz')
        await run('fuzz', () => fuzzScenario(p, { seed: Number(args.seed || 20261126), count: Number(args.count || p.fuzz) }));
      else if (SCENARIOS[name]) await run(name, () => SCENARIOS[name](p));
      else throw new Error(`unknown scenario ${name}`);
    }
  }
  console.log(`\n${table(rows)}\n`);
  const outDir = path.resolve(args.out || path.join(ROOT, 'bench', 'results'));
  fs.mkdirSync(outDir, { recursive: true });
  const stamp = new Date()
    .toISOString()
    .replace(/[:.]/g, '-')
    .replace(/-\d{3}Z$/, 'Z');
  const file = path.join(outDir, `reliability-${args.memory ? 'memory-' : ''}${stamp}.json`);
  fs.writeFileSync(
    file,
    JSON.stringify(
      {
        profile: profileName,
        started: new Date(t0).toISOString(),
        seconds: Math.round((Date.now() - t0) / 1000),
        cores: require('os').cpus().length,
        rows,
      },
      null,
      2,
    ),
  );
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
  const beyond = rows.reduce((n, r) => n + r.beyond, 0);
  process.exitCode = beyond ? 1 : 0;
}

main().catch(async (err) => {
  // A usage mistake is one line; anything else keeps its stack for the report.
  console.error(
    /^(unknown option|--\S+ needs a value|unknown profile)/.test(err.message) ? `reliability: ${err.message}` : err.stack || err.message,
  );
  await stopAll().catch(() => {});
  process.exit(1);
});
