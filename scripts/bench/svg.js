'use strict';
// A small dependency-free SVG chart for scripts/bench.js: throughput (req/s, linear) and p99
// latency (ms, log scale) by concurrency, one line per target.

const COLORS = { bare: '#888888', healthz: '#2b8cbe', decide: '#d7301f', nats: '#31a354' };
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
 * @returns {string} SVG document
 */
function chart(o) {
  const W = 980;
  const H = 440;
  const panelW = 400;
  const panelH = 280;
  const top = 80;
  const lefts = [80, 560];
  const out = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(o.title)}</text>`);
  if (o.subtitle) out.push(`<text x="${W / 2}" y="44" text-anchor="middle" fill="#555">${esc(o.subtitle)}</text>`);
  const xs = (left) => (i) => left + (o.levels.length === 1 ? panelW / 2 : 20 + (i * (panelW - 40)) / (o.levels.length - 1));

  // Panel 1: throughput.
  const maxRps = niceMax(Math.max(...o.series.flatMap((s) => s.points.map((p) => p.rps))));
  const y1 = (v) => top + panelH - (v / maxRps) * panelH;
  // Panel 2: p99, log scale.
  const lat = o.series.flatMap((s) => s.points.map((p) => p.p99_ms)).filter((v) => v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...lat, 1)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...lat, 1)));
  const y2 = (v) => top + panelH - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * panelH;

  const panels = [
    {
      left: lefts[0],
      title: 'throughput (req/s, higher is better)',
      y: y1,
      ticks: [0, 0.25, 0.5, 0.75, 1].map((f) => f * maxRps),
      key: 'rps',
    },
    { left: lefts[1], title: 'p99 latency (ms, log scale, lower is better)', y: y2, ticks: [], key: 'p99_ms' },
  ];
  for (let e = Math.log10(lo); e <= Math.log10(hi) + 1e-9; e++) panels[1].ticks.push(10 ** e);

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
      out.push(`<text x="${x(i)}" y="${top + panelH + 18}" text-anchor="middle">${c}</text>`);
    });
    out.push(
      `<text x="${p.left + panelW / 2}" y="${top + panelH + 36}" text-anchor="middle">concurrency (connections / requests in flight)</text>`,
    );
    for (const s of o.series) {
      const color = COLORS[s.name] || '#000';
      const pts = s.points.map((pt) => [x(o.levels.indexOf(pt.c)), p.y(pt[p.key])]).filter(([xx]) => xx !== undefined);
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
