'use strict';
// Reliability, issue 8: slow and abusive clients. 200 slowloris connections (request head never
// finished, a header line every 500 ms) and 50 slow bodies (head complete, part of the body, then
// silence) hold connections while normal clients keep being served with their normal latency;
// the slow ones are cut off after client_header_timeout / client_body_timeout (4 s here); a flood
// of slow bodies over server.max_connections_per_client is refused at once with the JSON 503.
const rel = require('../support/reliability');

const P = rel.PROFILES.ci;

test('slowloris and slow bodies are cut at the timeouts; normal clients unaffected; the per-address cap answers 503', async () => {
  const row = await rel.slowClients(P);
  const d = row.details;
  console.log(
    `${row.scenario}: normal clients ${JSON.stringify(row.answered)} errors ${row.errors}; ${JSON.stringify(d)}` +
      `${row.beyondSamples.length ? `; beyond: ${JSON.stringify(row.beyondSamples)}` : ''}`,
  );
  const t = P.slow.timeoutS * 1000;
  expect(row.beyond).toBe(0);
  expect(row.errors).toBe(0);
  expect(Object.keys(row.answered)).toEqual(['200']);
  // cut off after the configured timeouts, without a response (nothing to answer a half request)
  expect(d.slowloris_cut_ms.min).toBeGreaterThanOrEqual(t - 300);
  expect(d.slowloris_cut_ms.max).toBeLessThan(t + 1500);
  expect(d.slowloris_cut_ms.without_response).toBe(P.slow.slowloris);
  expect(d.slow_body_cut_after_last_byte_ms.n).toBe(P.slow.slowBody);
  expect(d.slow_body_cut_after_last_byte_ms.min).toBeGreaterThanOrEqual(t - 300);
  expect(d.slow_body_cut_after_last_byte_ms.max).toBeLessThan(t + 1500);
  // normal latency while they were held (generous bound on a shared machine; values printed)
  expect(d.normal_with_slow_clients.p99_ms).toBeLessThan(Math.max(3 * d.normal_baseline.p99_ms, d.normal_baseline.p99_ms + 50));
  expect(d.flood_over_cap.refused_503_at_once).toBeGreaterThanOrEqual(d.flood_over_cap.opened - d.flood_over_cap.cap);
}, 60000);
