'use strict';
// Reliability, issue 8: the seeded HTTP fuzzer (spec/support/fuzz.js) against the real stack.
// 10,000 malformed requests over raw sockets (FUZZ_COUNT to change, FUZZ_SEED to pick the seed;
// `npm run reliability -- --fuzz` runs the full count of the script). Every answer must be a valid
// contract response; no worker may die or log a Lua error; the gateway still serves afterwards.
// A failure prints the seed, the case number and the request: replay it with
// `FUZZ_SEED=<seed> npx jest spec/reliability/fuzz.test.js` or `caseFor(seed, i)`.
const { startStack, request, waitReady, waitDecideOk } = require('../support/gateway');
const { stopAll } = require('../support/processes');
const { runFuzz, WORKER_TROUBLE } = require('../support/fuzz');
const { workerPids } = require('../../scripts/lib/nginx');

const SEED = Number(process.env.FUZZ_SEED || 20261126);
const COUNT = Number(process.env.FUZZ_COUNT || 10000);

let stack;
beforeAll(async () => {
  stack = await startStack({
    routerArgs: ['--fast'],
    configure: (raw) => {
      // short client timeouts: cases that leave a body unfinished are cut off quickly
      raw.server = { ...raw.server, client_header_timeout_seconds: 1, client_body_timeout_seconds: 1 };
      raw.routes = { decide: { rate_limit: { limit: 1000000000 } }, messages: { rate_limit: { limit: 1000000000 } } };
    },
  });
  await waitReady(stack.gateway);
  await waitDecideOk(stack.gateway);
});
afterAll(() => stopAll());

test(`${COUNT} malformed requests (seed ${SEED}): contract answers only, no worker lost, still serving`, async () => {
  const gw = stack.gateway;
  const workersBefore = workerPids(gw.pid);
  const r = await runFuzz({ port: gw.port, seed: SEED, count: COUNT, concurrency: 24 });
  const log = gw.errorLog();
  const trouble = log.split('\n').filter((l) => WORKER_TROUBLE.test(l));
  const luaErrors = log.split('\n').filter((l) => /\[error\].*\[lua\]/.test(l));
  console.log(
    `fuzz: seed ${SEED}, ${r.sent} requests in ${(r.ms / 1000).toFixed(1)} s (${Math.round(r.sent / (r.ms / 1000))}/s); ` +
      `answers ${JSON.stringify(r.byStatus)}; by category ${JSON.stringify(r.byCategory)}; ` +
      `contract violations ${r.failures.length}; worker trouble in the error log ${trouble.length}; Lua [error] lines ${luaErrors.length}`,
  );
  if (r.failures.length) {
    console.error(
      `fuzz failures (seed ${SEED}), first 10:\n${r.failures
        .slice(0, 10)
        .map((f) => `  case ${f.i} [${f.category}] ${f.why}\n    request: ${f.request}`)
        .join('\n')}`,
    );
  }
  expect(r.sent).toBe(COUNT);
  expect(r.failures).toEqual([]);
  expect(trouble).toEqual([]);
  expect(luaErrors).toEqual([]);
  expect(workerPids(gw.pid)).toEqual(workersBefore);
  // still serving
  expect((await request(gw.url, { path: '/healthz' })).status).toBe(200);
  await waitDecideOk(gw, 2000);
}, 120000);
