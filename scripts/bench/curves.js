'use strict';
// `npm run bench -- --curves` (issue 15, "how cost grows with the work"): cost curves of
// POST /api/v1/routes/decide, end to end through NATS and the reference Router (--fast), with
// the configured features (rate limit, decision cache, metrics; access log off as in every
// bench run). One dimension varies at a time, the others stay at the base point (200-byte body,
// c64, one tenant):
//   payload      request body of 200 B, 4 KiB, 64 KiB, 512 KiB (limits.body_bytes is 1 MiB)
//   concurrency  1, 4, 16, 64, 256, 1024 connections (wrk -c)
//   tenants      1, 100, 1,000, 10,000, 100,000 distinct X-Tenant-ID values, round robin
//                (scripts/bench/wrk.lua `X-Tenant-ID=@N`), so the rate-limit and decision
//                dicts fill; the points run in this order on the same gateways, so each starts
//                with the dicts the one before left (a long-running gateway's state)
// Every point runs on two gateways on the same nats-server and Router: one with 1 nginx worker,
// one with 2 (the order alternates from point to point), each after a 1 s unmeasured run of
// the same point. Per point: req/s, p50/p99/p99.9, the non-2xx statuses (counted, e.g. 429s;
// they do not stop the curve, the point is marked void), the nginx workers' CPU µs per decide
// (/proc/<pid>/stat, all workers of that gateway), nats-server and Router CPU µs per decide,
// and each shared dict's capacity and free space afterwards (/__bench/info?dicts=1).
// Writes bench/results/curves-<time>.json and curves-<time>-<dimension>.svg.
const fs = require('fs');
const os = require('os');
const { chart } = require('./svg');

const KIB = 1024;
const DIMENSIONS = {
  payload: {
    levels: [200, 4 * KIB, 64 * KIB, 512 * KIB],
    label: 'request body size (bytes)',
    fmt: (v) => (v >= KIB ? `${v / KIB} KiB` : `${v} B`),
  },
  concurrency: { levels: [1, 4, 16, 64, 256, 1024], label: 'concurrency (connections)', fmt: (v) => String(v) },
  tenants: {
    levels: [1, 100, 1000, 10000, 100000],
    label: 'distinct tenants (X-Tenant-ID, round robin)',
    fmt: (v) => (v >= 1000 ? `${v / 1000}k` : String(v)),
  },
};
const BASE = { payload: 200, concurrency: 64, tenants: 1 };

/**
 * A canonical decide body of exactly `size` bytes (CONTRACT §3): the base body with
 * task.payload.text padded by printable ASCII (no escapes, so the JSON text is the byte count).
 */
function decideBody(size) {
  const head = '{"version":"1","task":{"type":"chat","payload":{"text":"';
  const tail = '"}},"context":{"user_id":"u-42"}}';
  const n = size - head.length - tail.length;
  if (n < 1) throw new Error(`body size ${size} is below the minimum ${head.length + tail.length + 1}`);
  const words = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ';
  const text = words.repeat(Math.ceil(n / words.length)).slice(0, n);
  return head + text + tail;
}

/** Soft open-file limit of this process (wrk inherits it). */
function nofile() {
  try {
    const m = fs.readFileSync('/proc/self/limits', 'utf8').match(/^Max open files\s+(\d+)/m);
    return m ? Number(m[1]) : Infinity;
  } catch (e) {
    return Infinity;
  }
}

const f1 = (v) => (Number.isFinite(v) ? v.toFixed(1) : '—');
const f2 = (v) => (Number.isFinite(v) ? v.toFixed(2) : '—');

/**
 * @param h  helpers of scripts/bench.js: { startBenchNginx, wrk, warmUpSides, workerPids, cpuMeter,
 *           bodyFile, decisionEvictions, getJson, waitForQuietCpu, loadavg, say, num }
 * @param stack  the main bench stack (its nginx is not used: both curve gateways are started here)
 * @param o  options of scripts/bench.js (duration, maxBusy, waitLoad, threads, dimensions)
 */
async function curvesMode(h, stack, o) {
  const { say, num } = h;
  const dims = o.dimensions || Object.keys(DIMENSIONS);
  for (const d of dims) if (!DIMENSIONS[d]) throw new Error(`--dimensions: ${Object.keys(DIMENSIONS).join(', ')}`);
  const maxC = Math.max(...(dims.includes('concurrency') ? DIMENSIONS.concurrency.levels : [BASE.concurrency]));
  if (nofile() < maxC + 64) throw new Error(`open-file limit ${nofile()} is too low for c${maxC} (ulimit -n ${maxC + 256})`);

  // Bodies: one file per size.
  const bodies = {};
  for (const size of new Set([BASE.payload, ...DIMENSIONS.payload.levels])) bodies[size] = h.bodyFile(size);

  // Two gateways on the same NATS and Router: 1 and 2 workers. The curve-only render changes
  // (scripts/bench.js startBenchNginx, opts.curves): no per-address connection cap (wrk's 1024
  // connections come from one address), worker_rlimit_nofile 8192.
  const sides = [];
  for (const workers of o.curveWorkers) {
    const gw = await h.startBenchNginx({ ...o, workers }, stack.nats, stack.luaDir, `nginx-w${workers}`);
    const pids = h.workerPids(gw.nginx.pid);
    sides.push({ name: `w${workers}`, workers, st: { ...stack, ...gw }, pids });
    say(`gateway with ${workers} worker(s): ${gw.url} (master ${gw.nginx.pid}, workers ${pids.join(', ')})`);
  }
  await h.warmUpSides(sides, 2, { body: bodies[BASE.payload] });

  const points = [];
  let k = 0;
  for (const dim of dims) {
    for (const value of DIMENSIONS[dim].levels) {
      const p = { ...BASE, [dim]: value };
      const order = k++ % 2 ? [...sides].reverse() : sides;
      for (const s of order) {
        const opts = { body: bodies[p.payload], tenants: dim === 'tenants' ? p.tenants : 0, threads: o.threads };
        // The same point, unmeasured, first (connections opened, the JIT and the dicts warm).
        await h.wrk(s.st, 'decide', p.concurrency, 1, opts);
        const busy = await h.waitForQuietCpu(o.maxBusy, o.waitLoad);
        process.stdout.write(
          `[bench] load ${h.loadavg().join(' ')}, others ${String(busy).padStart(4)}% busy | ${dim} ${DIMENSIONS[dim].fmt(value).padStart(7)} ${s.name} … `,
        );
        const cpu = h.cpuMeter({ nginx_workers: s.pids, nats_server: [stack.nats.pid], router: [stack.router.pid] });
        const r = await h.wrk(s.st, 'decide', p.concurrency, o.duration, opts);
        const cpuUs = cpu(r.requests);
        const info = await h.getJson(`${s.st.url}/__bench/info?dicts=1${dim === 'tenants' ? '&keys=1' : ''}`);
        const evictions = await h.decisionEvictions(s.st.url);
        const point = {
          dimension: dim,
          value,
          workers: s.workers,
          payload_bytes: p.payload,
          concurrency: p.concurrency,
          tenants: p.tenants,
          requests: r.requests,
          seconds: r.seconds,
          rps: r.rps,
          p50_ms: r.p50_ms,
          p99_ms: r.p99_ms,
          p999_ms: r.p999_ms,
          max_ms: r.max_ms,
          non2xx: r.non2xx,
          socket_errors: r.socket_errors,
          statuses: r.detail.statuses,
          void: r.errors > 0,
          cpu_us_per_decide: cpuUs,
          others_busy_percent_before: busy,
          load_before: os.loadavg(),
          dicts_after: info.dicts,
          decision_cache_evictions_total: evictions,
        };
        points.push(point);
        const dc = info.dicts && info.dicts.beamline_decisions;
        process.stdout.write(
          `${num(r.rps)} req/s, p50 ${f2(r.p50_ms)} ms, p99 ${f2(r.p99_ms)} ms, worker CPU ${f1(cpuUs.nginx_workers)} µs/decide` +
            (dc ? `, decisions dict ${Math.round((100 * (dc.capacity - dc.free_space)) / dc.capacity)}% used` : '') +
            (r.errors
              ? `, NON-2XX/ERRORS ${r.errors} ${JSON.stringify(r.detail.statuses)} ${JSON.stringify(r.detail.socket_errors)}`
              : '') +
            '\n',
        );
      }
    }
  }

  // The error log of each gateway: the first lines of each kind (e.g. "cannot cache decision").
  for (const s of sides) {
    const lines = fs.existsSync(s.st.errorLog) ? fs.readFileSync(s.st.errorLog, 'utf8').split('\n').filter(Boolean) : [];
    s.error_log_lines = lines.length;
    // One sample per kind of line: without the timestamp, pid, connection, paths and numbers.
    const kinds = new Map();
    for (const l of lines) {
      const msg = l.replace(/^\S+ \S+ /, '').replace(/, client: .*$/, '');
      const kind = msg
        .replace(/\d+#\d+: (\*\d+ )?/, '')
        .replace(/\/\S+/g, '…')
        .replace(/\d+/g, 'N');
      kinds.set(kind, (kinds.get(kind) || 0) + 1);
    }
    s.error_log_sample = [...kinds]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([k, n]) => `${n} × ${k}`);
  }
  return {
    base: BASE,
    dimensions: dims,
    sides: sides.map((s) => ({
      name: s.name,
      workers: s.workers,
      pids: s.pids,
      error_log_lines: s.error_log_lines,
      error_log_sample: s.error_log_sample,
    })),
    points,
  };
}

/** The curve table (one row per point and worker count) as text. */
function curvesTable(points) {
  const pad = (s, n) => String(s).padStart(n);
  const lines = [
    `${'dimension'.padEnd(12)}${pad('value', 9)}${pad('workers', 8)}${pad('req/s', 9)}${pad('p50 ms', 9)}${pad('p99 ms', 9)}` +
      `${pad('worker µs', 11)}${pad('nats µs', 9)}${pad('router µs', 11)}${pad('non-2xx', 9)}`,
  ];
  for (const p of points) {
    lines.push(
      `${p.dimension.padEnd(12)}${pad(DIMENSIONS[p.dimension].fmt(p.value), 9)}${pad(p.workers, 8)}${pad(Math.round(p.rps).toLocaleString('en-US'), 9)}` +
        `${pad(f2(p.p50_ms), 9)}${pad(f2(p.p99_ms), 9)}${pad(f1(p.cpu_us_per_decide.nginx_workers), 11)}${pad(f1(p.cpu_us_per_decide.nats_server), 9)}` +
        `${pad(f1(p.cpu_us_per_decide.router), 11)}${pad(p.non2xx + p.socket_errors, 9)}`,
    );
  }
  return lines.join('\n');
}

/** One SVG per dimension: worker CPU µs per decide, p99 (log), req/s; a line per worker count. */
function curvesCharts(doc) {
  const out = {};
  for (const dim of doc.dimensions) {
    const def = DIMENSIONS[dim];
    const pts = doc.points.filter((p) => p.dimension === dim);
    const series = [...new Set(pts.map((p) => p.workers))].map((w) => ({
      name: `w${w}`,
      label: `${w} nginx worker${w > 1 ? 's' : ''}`,
      points: pts
        .filter((p) => p.workers === w)
        .map((p) => ({ c: p.value, us: p.cpu_us_per_decide.nginx_workers, p99_ms: p.p99_ms, rps: p.rps })),
    }));
    const base = Object.entries(doc.base)
      .filter(([k]) => k !== dim)
      .map(([k, v]) => `${k} ${DIMENSIONS[k].fmt(v)}`)
      .join(', ');
    out[dim] = chart({
      levels: def.levels,
      series,
      xLabel: def.label,
      xFormat: def.fmt,
      panels: [
        // The body size spans three decades of cost: log scales there.
        { key: 'us', title: `nginx worker CPU µs per decide${dim === 'payload' ? ' (log scale)' : ''}`, log: dim === 'payload' },
        { key: 'p99_ms', title: 'p99 latency (ms, log scale)', log: true },
        { key: 'rps', title: `throughput (decide/s${dim === 'payload' ? ', log scale' : ''})`, log: dim === 'payload' },
      ],
      title: `POST decide cost by ${dim} (${base}; ${doc.options.duration_s} s per point)${pts.some((p) => p.void) ? ' — some points had non-2xx' : ''}`,
      subtitle: `${doc.machine.cores} cores shared by wrk, nginx, nats-server and the Router; nginx ${doc.machine.nginx}, ${doc.machine.luajit.split(' (')[0]}; ${doc.date.slice(0, 16)}Z`,
    });
  }
  return out;
}

module.exports = { curvesMode, curvesTable, curvesCharts, decideBody, DIMENSIONS, BASE };
