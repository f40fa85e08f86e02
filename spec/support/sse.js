'use strict';
// SSE helpers for the stream tests (CONTRACT §11):
// - sseClients(): a child process running real EventSource clients (spec/support/sse-client.mjs);
// - rawStream(): a raw socket, for the exact bytes on the wire.
const net = require('net');
const path = require('path');
const { spawn } = require('child_process');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value; rejects with `what` after `timeoutMs`. */
async function until(fn, what, timeoutMs = 5000, stepMs = 20) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

/**
 * Starts the EventSource process. `open(url, {headers, events})` returns a handle whose `log`
 * collects every record ({type: 'open'|'message'|<event name>|'error', data, lastEventId}).
 */
async function sseClients() {
  const child = spawn(process.execPath, [path.join(__dirname, 'sse-client.mjs')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const logs = new Map();
  let ready = false;
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const m = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (m.type === 'ready') ready = true;
      else if (logs.has(m.id)) logs.get(m.id).push({ ...m, at: Date.now() });
    }
  });
  await until(() => ready, 'the EventSource process', 10000);
  let seq = 0;
  const send = (o) => child.stdin.write(JSON.stringify(o) + '\n');
  return {
    open(url, opts = {}) {
      const id = ++seq;
      const log = [];
      logs.set(id, log);
      send({ cmd: 'open', id, url, headers: opts.headers, events: opts.events || ['message_created'] });
      const of = (type) => log.filter((m) => m.type === type);
      return {
        id,
        log,
        of,
        opens: () => of('open').length,
        close: () => send({ cmd: 'close', id }),
        waitOpen: (n = 1, ms = 5000) => until(() => of('open').length >= n, `open #${n} of stream ${id}`, ms),
        waitFor: (type, pred = () => true, ms = 5000) => until(() => of(type).find(pred), `a ${type} on stream ${id}`, ms),
      };
    },
    async stop() {
      send({ cmd: 'exit' });
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(2000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/** A raw HTTP/1.1 GET on a socket; `text()` is everything received so far. */
function rawStream(port, pathAndQuery, headers = {}) {
  const sock = net.connect(port, '127.0.0.1');
  const chunks = [];
  let ended = false;
  sock.on('data', (d) => chunks.push(d));
  sock.on('close', () => {
    ended = true;
  });
  sock.on('error', () => {});
  const head = Object.entries({ Host: '127.0.0.1', ...headers })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  sock.write(`GET ${pathAndQuery} HTTP/1.1\r\n${head}\r\n`);
  return {
    sock,
    text: () => Buffer.concat(chunks).toString('utf8'),
    ended: () => ended,
    close: () => sock.destroy(),
  };
}

/** The body of a chunked response, de-chunked (complete chunks only). */
function dechunk(text) {
  const at = text.indexOf('\r\n\r\n');
  let rest = text.slice(at + 4);
  let body = '';
  for (;;) {
    const nl = rest.indexOf('\r\n');
    if (nl < 0) break;
    const n = parseInt(rest.slice(0, nl), 16);
    if (!(n > 0) || rest.length < nl + 2 + n + 2) break;
    body += rest.slice(nl + 2, nl + 2 + n);
    rest = rest.slice(nl + 2 + n + 2);
  }
  return body;
}

module.exports = { sseClients, rawStream, dechunk, until, sleep };
