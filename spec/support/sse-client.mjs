// A real EventSource client (npm `eventsource`, the browser's API) in its own Node process: the
// package is ESM-only and jest runs CommonJS, so tests drive it through spec/support/sse.js.
//
// stdin: JSON lines {"cmd":"open","id":…,"url":…,"headers":{…}} | {"cmd":"close","id":…}
// stdout: JSON lines {"id":…,"type":"open"|"message"|"error"|…,"data","event","lastEventId","status"}
import { EventSource } from 'eventsource';
import readline from 'node:readline';

const sources = new Map();
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

function open({ id, url, headers, events }) {
  const es = new EventSource(url, {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, ...(headers || {}) } }),
  });
  sources.set(id, es);
  es.addEventListener('open', () => out({ id, type: 'open' }));
  es.addEventListener('error', (e) => out({ id, type: 'error', status: e.code, message: e.message, readyState: es.readyState }));
  // Big events are reported by size only: stdout to a busy test process is a pipe, and writes to
  // pipes block in Node; echoing megabytes would make this client the slow one.
  const onEvent = (e) =>
    out({ id, type: e.type, data: e.data.length > 4096 ? null : e.data, size: e.data.length, lastEventId: e.lastEventId });
  es.addEventListener('message', onEvent);
  for (const name of events || []) es.addEventListener(name, onEvent);
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line);
  if (m.cmd === 'open') open(m);
  else if (m.cmd === 'close') {
    const es = sources.get(m.id);
    if (es) es.close();
    sources.delete(m.id);
    out({ id: m.id, type: 'closed' });
  } else if (m.cmd === 'exit') process.exit(0);
});
out({ type: 'ready' });
