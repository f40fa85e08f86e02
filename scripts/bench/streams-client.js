'use strict';
// The client side of `npm run bench -- --streams` (scripts/bench.js): raw SSE streams held on
// raw sockets, in a process of its own (started with a raised open-file limit).
//
//   node streams-client.js idle <port> <count> <tenants>
//       opens <count> messages streams spread over <tenants> tenants (bench-idle-<i>), prints
//       {"open":n,"failed":n} when every one got `: connected`, holds them until stdin ends.
//   node streams-client.js latency <port> <count> <tenant> <events>
//       opens <count> streams of <tenant>, then sends <events> decides one after the other; for
//       each it records, per stream, the time from the decide answer to the event's arrival.
//       Prints {"samples":[…ms],"last":[…ms per event: the slowest stream]}.
const net = require('net');
const http = require('http');

const now = () => Number(process.hrtime.bigint()) / 1e6;

function openStream(port, path, onData) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    let connected = false;
    s.setEncoding('utf8');
    s.on('data', (d) => {
      if (!connected) {
        buf += d;
        if (buf.includes(': connected')) {
          connected = true;
          buf = '';
          resolve(s);
        }
        return;
      }
      if (onData) onData(d);
    });
    s.on('error', () => resolve(null));
    s.on('close', () => {
      if (!connected) resolve(null);
    });
    s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  });
}

async function openMany(port, count, pathOf, onDataOf) {
  const socks = [];
  let failed = 0;
  const batch = 200;
  for (let i = 0; i < count; i += batch) {
    const rs = await Promise.all(
      Array.from({ length: Math.min(batch, count - i) }, (_, k) => openStream(port, pathOf(i + k), onDataOf ? onDataOf(i + k) : null)),
    );
    for (const s of rs)
      if (s) socks.push(s);
      else failed++;
  }
  return { socks, failed };
}

function decide(port, tenant, requestId) {
  const body = JSON.stringify({ version: '1', request_id: requestId, task: { type: 'chat', payload: { text: 'hello' } } });
  return new Promise((resolve, reject) => {
    const r = http.request(
      {
        host: '127.0.0.1',
        port,
        path: '/api/v1/routes/decide',
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-tenant-id': tenant, 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, at: now() }));
      },
    );
    r.on('error', reject);
    r.end(body);
  });
}

async function main() {
  const [mode, portS, countS, third, fourth] = process.argv.slice(2);
  const port = Number(portS);
  const count = Number(countS);
  if (mode === 'idle') {
    const tenants = Number(third);
    const { socks, failed } = await openMany(port, count, (i) => `/api/v1/messages/stream?tenant_id=bench-idle-${i % tenants}`);
    process.stdout.write(JSON.stringify({ open: socks.length, failed }) + '\n');
    process.stdin.resume();
    process.stdin.on('end', () => process.exit(0));
    return;
  }
  if (mode === 'latency') {
    const tenant = third;
    const events = Number(fourth);
    // arrival times: request_id → [ms per stream]
    const arrivals = new Map();
    const onDataOf = () => {
      let buf = '';
      return (d) => {
        const t = now();
        buf += d;
        let m;
        const re = /id: (lat-\d+)\n/g;
        while ((m = re.exec(buf)) !== null) {
          if (!arrivals.has(m[1])) arrivals.set(m[1], []);
          arrivals.get(m[1]).push(t);
        }
        const cut = buf.lastIndexOf('\n\n');
        if (cut >= 0) buf = buf.slice(cut + 2);
      };
    };
    const { socks, failed } = await openMany(port, count, () => `/api/v1/messages/stream?tenant_id=${tenant}`, onDataOf);
    if (failed) throw new Error(`${failed} streams did not open`);
    await new Promise((r) => setTimeout(r, 500));
    const samples = [];
    const last = [];
    for (let e = 0; e < events; e++) {
      const id = `lat-${e}`;
      const r = await decide(port, tenant, id);
      if (r.status !== 200) throw new Error(`decide answered ${r.status}`);
      const deadline = Date.now() + 5000;
      while ((arrivals.get(id) || []).length < socks.length && Date.now() < deadline) await new Promise((res) => setTimeout(res, 2));
      const got = arrivals.get(id) || [];
      if (got.length < socks.length) throw new Error(`event ${id} reached ${got.length}/${socks.length} streams`);
      let worst = 0;
      for (const t of got) {
        const d = Math.max(0, t - r.at);
        samples.push(d);
        if (d > worst) worst = d;
      }
      last.push(worst);
      await new Promise((res) => setTimeout(res, 20));
    }
    for (const s of socks) s.destroy();
    // no process.exit(): it could cut a big write to the pipe short; the process ends by itself
    process.stdout.write(JSON.stringify({ samples, last }) + '\n');
    return;
  }
  throw new Error(`unknown mode ${mode}`);
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e.message}\n`);
  process.exit(1);
});
