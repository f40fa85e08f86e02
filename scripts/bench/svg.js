'use strict';
// A small dependency-free SVG chart for scripts/bench.js: throughput (req/s, linear) and p99
// latency (ms, log scale) by concurrency, one line per target. --curves (scripts/bench/curves.js)
// passes its own panels (worker CPU µs per decide, p99, req/s) and x axis (payload size,
// concurrency, tenants), one line per nginx worker count.

const COLORS = { bare: '#888888', healthz: '#2b8cbe', decide: '#d7301f', nats: '#31a354', w1: '#d7301f', w2: '#2b8cbe' };
const esc = (s) => String(s).replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]);
const fmt = (v) => (v >= 1000 ? `${Math.round(v / 100) / 10}k` : String(Math.round(v * 100) / 100));

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * @param {object} o
 * @param {number[]} o.levels  concurrency levels (x axis, evenly spaced)
 * @param {{name: string, label: string, points: {c: number, rps: number, p99_ms: number}[]}[]} o.series
 * @param {string} o.title
 * @param {string} [o.subtitle]
 * @param {{key: string, title: string, log?: boolean}[]} [o.panels]  default: rps (linear), p99_ms (log)
 * @param {string} [o.xLabel]  default: concurrency
 * @param {(v: number) => string} [o.xFormat]  x tick labels (default: the level as is)
 * @returns {string} SVG document
 */
function chart(o) {
  const specs = o.panels || [
    { key: 'rps', title: 'throughput (req/s, higher is better)' },
    { key: 'p99_ms', title: 'p99 latency (ms, log scale, lower is better)', log: true },
  ];
  const panelW = 400;
  const panelH = 280;
  const top = 80;
  const lefts = specs.map((_, i) => 80 + i * 480);
  const W = specs.length * 480 + 20;
  const H = 440;
  const out = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(o.title)}</text>`);
  if (o.subtitle) out.push(`<text x="${W / 2}" y="44" text-anchor="middle" fill="#555">${esc(o.subtitle)}</text>`);
  const xs = (left) => (i) => left + (o.levels.length === 1 ? panelW / 2 : 20 + (i * (panelW - 40)) / (o.levels.length - 1));

  const panels = specs.map((sp, i) => {
    const vals = o.series.flatMap((s) => s.points.map((p) => p[sp.key])).filter((v) => Number.isFinite(v));
    if (!sp.log) {
      // Linear from 0.
      const max = niceMax(Math.max(...vals));
      return {
        left: lefts[i],
        title: sp.title,
        y: (v) => top + panelH - (v / max) * panelH,
        ticks: [0, 0.25, 0.5, 0.75, 1].map((f) => f * max),
        key: sp.key,
      };
    }
    // Log scale, whole decades.
    const pos = vals.filter((v) => v > 0);
    const lo = 10 ** Math.floor(Math.log10(Math.min(...pos, 1)));
    const hi = 10 ** Math.ceil(Math.log10(Math.max(...pos, 1)));
    const ticks = [];
    for (let e = Math.log10(lo); e <= Math.log10(hi) + 1e-9; e++) ticks.push(10 ** e);
    return {
      left: lefts[i],
      title: sp.title,
      y: (v) => top + panelH - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * panelH,
      ticks,
      key: sp.key,
    };
  });

  for (const p of panels) {
    const x = xs(p.left);
    out.push(`<text x="${p.left + panelW / 2}" y="${top - 12}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`);
    out.push(`<rect x="${p.left}" y="${top}" width="${panelW}" height="${panelH}" fill="none" stroke="#333"/>`);
    for (const t of p.ticks) {
      const yy = p.y(t);
      out.push(`<line x1="${p.left}" x2="${p.left + panelW}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`);
      out.push(`<text x="${p.left - 6}" y="${yy + 4}" text-anchor="end">${fmt(t)}</text>`);
    }
    o.levels.forEach((c, i) => {
      out.push(`<line x1="${x(i)}" x2="${x(i)}" y1="${top + panelH}" y2="${top + panelH + 5}" stroke="#333"/>`);
      out.push(`<text x="${x(i)}" y="${top + panelH + 18}" text-anchor="middle">${esc(o.xFormat ? o.xFormat(c) : c)}</text>`);
    });
    out.push(
      `<text x="${p.left + panelW / 2}" y="${top + panelH + 36}" text-anchor="middle">${esc(o.xLabel || 'concurrency (connections / requests in flight)')}</text>`,
    );
    for (const s of o.series) {
      const color = COLORS[s.name] || '#000';
      const pts = s.points
        .filter((pt) => Number.isFinite(pt[p.key]) && o.levels.includes(pt.c))
        .map((pt) => [x(o.levels.indexOf(pt.c)), p.y(pt[p.key])]);
      if (pts.length > 1)
        out.push(
          `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' ')}"/>`,
        );
      for (const [a, b] of pts) out.push(`<circle cx="${a.toFixed(1)}" cy="${b.toFixed(1)}" r="3.5" fill="${color}"/>`);
    }
  }
  // Legend.
  let lx = 80;
  for (const s of o.series) {
    const color = COLORS[s.name] || '#000';
    out.push(`<rect x="${lx}" y="${H - 30}" width="14" height="4" fill="${color}"/>`);
    out.push(`<text x="${lx + 20}" y="${H - 24}">${esc(s.label)}</text>`);
    lx += 30 + s.label.length * 7;
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

module.exports = { chart };
