'use strict';
// deploy/grafana/beamline-gateway.json: parses as a Grafana dashboard, every metric it queries
// is a CONTRACT §7 name (or the traffic switch's shadow metric), it uses only labels those
// metrics have, and it covers what the runbook tells operators to watch.
const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..');
const FILE = path.join(ROOT, 'deploy', 'grafana', 'beamline-gateway.json');
const SHADOW = 'gateway_shadow_comparisons_total';

/** The contract: the shared copy beside the repository (source of truth), else docs/. */
function contractText() {
  for (const f of [path.join(ROOT, '..', 'shared', 'CONTRACT.md'), path.join(ROOT, 'docs', 'CONTRACT.md')]) {
    if (fs.existsSync(f)) return fs.readFileSync(f, 'utf8');
  }
  throw new Error('CONTRACT.md not found (../shared/CONTRACT.md or docs/CONTRACT.md)');
}

/** Metric names listed in §7 of the contract. */
function section7Names() {
  const text = contractText();
  const start = text.search(/^## 7\. Metrics/m);
  expect(start).toBeGreaterThan(-1);
  const rest = text.slice(start + 1);
  const end = rest.search(/^## /m);
  const section = end === -1 ? rest : rest.slice(0, end);
  return [...new Set([...section.matchAll(/`(gateway_[a-z0-9_]+)/g)].map((m) => m[1]))];
}

// Labels of each metric: §7 where it names them, the rest from src-ts/beamline/metrics.ts
// (histograms are "by route name"), the shadow metric from the traffic-switch design.
const LABELS = {
  gateway_http_requests_total: ['route', 'method', 'status'],
  gateway_http_request_duration_seconds: ['route'],
  gateway_router_request_duration_seconds: ['route'],
  gateway_router_replies_total: ['code'],
  gateway_rate_limit_hits_total: ['route'],
  [SHADOW]: ['result'],
  gateway_idempotency_evictions_total: ['reason'],
  gateway_decision_cache_evictions_total: ['reason'],
};
const TARGET_LABELS = ['job', 'instance'];
const HISTOGRAMS = ['gateway_http_request_duration_seconds', 'gateway_router_request_duration_seconds'];

const dashboard = JSON.parse(fs.readFileSync(FILE, 'utf8'));
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels || [])]);
const queryPanels = panels.filter((p) => p.type !== 'row');
const targets = queryPanels.flatMap((p) => (p.targets || []).map((t) => ({ panel: p.title, expr: t.expr, t })));
const variableQueries = dashboard.templating.list
  .filter((v) => v.type === 'query')
  .map((v) => ({ panel: `$${v.name}`, expr: v.definition }));

/** The metric a series name belongs to (histogram series suffixes stripped). */
function family(name) {
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  return m && HISTOGRAMS.includes(m[1]) ? m[1] : name;
}
const seriesIn = (expr) => [...expr.matchAll(/\b(gateway_[a-z0-9_]+)\b/g)].map((m) => m[1]);

describe('deploy/grafana/beamline-gateway.json', () => {
  test('is a Grafana dashboard: uid, title, schema version, unique panel ids, panels on the grid without overlap', () => {
    expect(dashboard.uid).toBe('beamline-gateway');
    expect(dashboard.title).toBe('Beamline gateway');
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set();
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          expect({ panel: p.title, cell: `${i},${j}`, taken: cells.has(`${i},${j}`) }).toEqual({
            panel: p.title,
            cell: `${i},${j}`,
            taken: false,
          });
          cells.add(`${i},${j}`);
        }
      }
    }
  });

  test("every query panel has PromQL targets on the dashboard's Prometheus data source variable", () => {
    expect(dashboard.templating.list.find((v) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const p of queryPanels) {
      expect({ panel: p.title, n: (p.targets || []).length > 0 }).toEqual({ panel: p.title, n: true });
      expect(p.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
      for (const t of p.targets) {
        expect(t.datasource).toEqual(p.datasource);
        expect(typeof t.expr).toBe('string');
        // balanced brackets
        for (const [o, c] of [
          ['(', ')'],
          ['{', '}'],
          ['[', ']'],
        ]) {
          expect({ panel: p.title, expr: t.expr, balanced: t.expr.split(o).length === t.expr.split(c).length }).toEqual({
            panel: p.title,
            expr: t.expr,
            balanced: true,
          });
        }
      }
    }
  });

  test('every metric it queries is a §7 name, or the shadow comparison metric', () => {
    const allowed = new Set([...section7Names(), SHADOW]);
    expect(allowed.size).toBeGreaterThanOrEqual(12); // §7 parsed
    const used = [...targets, ...variableQueries].flatMap(({ panel, expr }) => seriesIn(expr).map((s) => ({ panel, metric: family(s) })));
    expect(used.length).toBeGreaterThan(0);
    expect(used.filter((u) => !allowed.has(u.metric))).toEqual([]);
    // histogram series only with their suffixes, counters/gauges never with them
    for (const { panel, expr } of targets) {
      for (const s of seriesIn(expr)) {
        if (HISTOGRAMS.includes(s)) throw new Error(`${panel}: histogram ${s} queried without _bucket/_sum/_count`);
      }
    }
  });

  test('covers §7 and the shadow metric: every name is on the dashboard', () => {
    const used = new Set(targets.flatMap(({ expr }) => seriesIn(expr).map(family)));
    for (const name of [...section7Names(), SHADOW]) expect({ name, used: used.has(name) }).toEqual({ name, used: true });
  });

  test('uses only labels the metrics have (plus job and instance)', () => {
    for (const { panel, expr } of [...targets, ...variableQueries]) {
      for (const m of expr.matchAll(/\b(gateway_[a-z0-9_]+)\{([^}]*)\}/g)) {
        const known = [...(LABELS[family(m[1])] || []), ...TARGET_LABELS, ...(m[1].endsWith('_bucket') ? ['le'] : [])];
        for (const [, label] of m[2].matchAll(/([a-z_]+)\s*(?:=~|!~|!=|=)/g)) {
          expect({ panel, metric: m[1], label, known: known.includes(label) }).toEqual({ panel, metric: m[1], label, known: true });
        }
      }
      const metrics = seriesIn(expr);
      const known = new Set([
        ...TARGET_LABELS,
        ...metrics.flatMap((s) => [...(LABELS[family(s)] || []), ...(s.endsWith('_bucket') ? ['le'] : [])]),
      ]);
      for (const by of expr.matchAll(/\bby\s*\(([^)]*)\)/g)) {
        for (const label of by[1].split(',').map((s) => s.trim())) {
          expect({ panel, label, known: known.has(label) }).toEqual({ panel, label, known: true });
        }
      }
    }
  });

  test('latency quantiles come from histogram buckets aggregated by le', () => {
    const quantiles = targets.filter(({ expr }) => expr.includes('histogram_quantile'));
    expect(quantiles.length).toBeGreaterThanOrEqual(6);
    for (const { panel, expr } of quantiles) {
      expect({ panel, expr }).toEqual({
        panel,
        expr: expect.stringMatching(
          /histogram_quantile\(0\.\d+, sum by \((le|le, route)\) \(rate\(gateway_[a-z_]+_duration_seconds_bucket\{[^}]*\}\[\$__rate_interval\]\)\)\)/,
        ),
      });
    }
    const http = quantiles
      .filter(({ expr }) => expr.includes('gateway_http_request_duration_seconds_bucket'))
      .map(({ expr }) => /histogram_quantile\((0\.\d+)/.exec(expr)[1]);
    const router = quantiles
      .filter(({ expr }) => expr.includes('gateway_router_request_duration_seconds_bucket'))
      .map(({ expr }) => /histogram_quantile\((0\.\d+)/.exec(expr)[1]);
    for (const p of ['0.5', '0.95', '0.99']) {
      expect(http).toContain(p);
      expect(router).toContain(p);
    }
  });

  test('has the panels the runbook refers to', () => {
    const titles = queryPanels.map((p) => p.title);
    for (const t of [
      'Requests by route and status',
      'Error ratio',
      'Latency p50 / p95 / p99',
      'Router latency p50 / p95 / p99',
      'Router replies by code',
      'Rate-limit hits (429) by route',
      'Reconnects',
      'Publish failures',
      'Idempotency replays',
      'Shadow comparisons by result',
      'Shadow mismatch ratio',
      'Shadow mismatches (range)',
      'Connected workers by instance',
    ]) {
      expect(titles).toContain(t);
    }
    const runbook = fs.readFileSync(path.join(ROOT, 'docs', 'RUNBOOK.md'), 'utf8');
    for (const t of ['5xx ratio', 'p99 latency', 'Shadow mismatches (range)', 'Reconnects']) expect(runbook).toContain(t);
  });
});
