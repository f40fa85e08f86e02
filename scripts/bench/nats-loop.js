#!/usr/bin/env node
'use strict';
// The direct-NATS baseline of scripts/bench.js: one connection (official `nats` client), N
// requests in flight, the same subject, payload and headers the gateway sends the Router.
//   node scripts/bench/nats-loop.js --url nats://127.0.0.1:4222 --subject S --concurrency 64
//        --duration 10 [--warmup 2] --payload-file FILE
// Prints one line "BENCH_RESULT {json}": requests, duration, errors, latency percentiles (µs).
const fs = require('fs');
const { connect, headers: natsHeaders } = require('nats');
const { parseArgs } = require('../lib/args');

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

async function main() {
  const a = parseArgs(process.argv.slice(2), {
    string: ['url', 'subject', 'concurrency', 'duration', 'warmup', 'payload-file', 'timeout-ms'],
  });
  const concurrency = Number(a.concurrency || 64);
  const durationMs = Number(a.duration || 10) * 1000;
  const warmupMs = Number(a.warmup || 0) * 1000;
  const timeout = Number(a['timeout-ms'] || 10000);
  const payload = fs.readFileSync(a['payload-file']);
  const nc = await connect({ servers: a.url, name: 'beamline-bench-direct' });
  const h = natsHeaders();
  // The gateway's header set (CONTRACT §4): trace_id, tenant_id, request_id, version.
  h.set('trace_id', '4bf92f3577b34da6a3ce929d0e0e4736');
  h.set('tenant_id', 'bench');
  h.set('request_id', 'bench-direct');
  h.set('version', '1');

  let lat = new Float64Array(1 << 16);
  let n = 0;
  let errors = 0;
  let recording = false;
  let stopAt = 0;
  const errorKinds = {};

  async function worker() {
    while (Date.now() < stopAt) {
      const t0 = process.hrtime.bigint();
      try {
        await nc.request(a.subject, payload, { timeout, headers: h });
        if (recording) {
          if (n === lat.length) {
            const b = new Float64Array(lat.length * 2);
            b.set(lat);
            lat = b;
          }
          lat[n++] = Number(process.hrtime.bigint() - t0) / 1000;
        }
      } catch (e) {
        if (recording) {
          errors++;
          errorKinds[e.code || e.message] = (errorKinds[e.code || e.message] || 0) + 1;
        }
      }
    }
  }
  const run = async (ms) => {
    stopAt = Date.now() + ms;
    const ws = [];
    for (let i = 0; i < concurrency; i++) ws.push(worker());
    await Promise.all(ws);
  };
  if (warmupMs > 0) await run(warmupMs);
  recording = true;
  const t0 = process.hrtime.bigint();
  await run(durationMs);
  const elapsedUs = Number(process.hrtime.bigint() - t0) / 1000;
  await nc.close();
  const sorted = lat.subarray(0, n).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i];
  const out = {
    requests: n + errors,
    duration_us: Math.round(elapsedUs),
    non2xx: errors,
    errors: errorKinds,
    latency_us: {
      min: n ? sorted[0] : 0,
      mean: n ? sum / n : 0,
      max: n ? sorted[n - 1] : 0,
      p: { 50: percentile(sorted, 50), 90: percentile(sorted, 90), 99: percentile(sorted, 99), 99.9: percentile(sorted, 99.9) },
    },
  };
  process.stdout.write(`BENCH_RESULT ${JSON.stringify(out)}\n`);
}

main().catch((e) => {
  process.stderr.write(`nats-loop: ${e.stack || e.message}\n`);
  process.exit(1);
});
