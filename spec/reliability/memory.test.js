'use strict';
// Reliability, issue 8: memory. 50,000 decide requests (`npm run reliability -- --memory` runs
// 1,000,000) through one worker, of which per 20: 2 meet a silent Router (504 after the 100 ms
// route timeout), 1 is aborted by its client after 5 ms, and every 2 s the Router unsubscribes
// for 200 ms (503 no-responders). The worker's private memory (Lua heap and per-worker tables,
// where leaked waiters would pile up) stays flat after the warm-up; shared memory grows only up
// to the configured shared-dict sizes (the decision cache fills its 16 MB); every waiter is
// released (gateway_nats_requests_in_flight back to 0).
const rel = require('../support/reliability');

test('worker memory flat across timeouts, no-responders and client aborts; no waiter left behind', async () => {
  const row = await rel.memory(rel.PROFILES.ci);
  const d = row.details;
  console.log(
    `${row.scenario}: ${JSON.stringify(row.answered)}, client aborts ${d.client_aborts}; worker KiB after warm-up ` +
      `${JSON.stringify(d.kb_after_warmup)} → end ${JSON.stringify(d.kb_end)}: RSS +${d.rss_growth_kb} (private +${d.anon_growth_kb}, ` +
      `shared dicts +${d.shmem_growth_kb}); Router replies ${JSON.stringify(d.router_replies_total)}; in flight at the end ${d.in_flight_end}; ${d.rps} req/s`,
  );
  expect(row.beyond).toBe(0);
  // every kind of request really happened
  expect(row.answered['200']).toBeGreaterThan(0);
  expect(row.answered['503']).toBeGreaterThan(0); // no-responders
  expect(row.answered['504']).toBeGreaterThan(0); // timeouts
  expect(d.client_aborts).toBeGreaterThan(1000);
  expect(d.router_replies_total.no_responders).toBeGreaterThan(0);
  expect(d.in_flight_end).toBe(0);
  // private memory flat (measured: a few hundred KiB of noise); shared memory bounded by the
  // dicts' configured sizes (decision cache 16 MB + idempotency 32 MB + metrics 4 MB + rate limit 8 MB)
  expect(d.anon_growth_kb).toBeLessThan(4096);
  expect(d.shmem_growth_kb).toBeLessThan((16 + 32 + 4 + 8) * 1024);
}, 120000);
