'use strict';
/**
 * A small HTTP load loop for end-to-end tests: `concurrency` client loops over keep-alive
 * connections (or fresh ones), each sending requests back to back, bounded by a request count
 * AND a wall-clock duration (whichever comes first), counting statuses and transport errors.
 *
 *   const { startLoad, runLoad, decideBody } = require('../support/load');
 *   const run = startLoad({ url: gw.url, concurrency: 16, count: 5000, durationMs: 4000,
 *     request: (i) => ({ method: 'POST', path: '/api/v1/routes/decide', headers, body }) });
 *   … later: run.stop(); const res = await run.done;
 *   res.statuses → { 200: 4711, 503: 3 }, res.errors, res.records (when record: true)
 *
 * Only 127.0.0.1 URLs are used by the tests; nothing here starts processes.
 */
const http = require('http');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A decide body (canonical shape) with a given request id and optional Router mode. */
function decideBody(requestId, mode, extra = {}) {
  const body = {
    version: '1',
    request_id: requestId,
    task: { type: 'chat', payload: { text: 'hi' } },
    ...extra,
  };
  if (mode) body.metadata = { ...(extra.metadata || {}), router_mode: mode };
  return JSON.stringify(body);
}

/**
 * One HTTP request on a given agent. Resolves {status, headers, body, json, ms, reused} or
 * {error, ms, reused}; never rejects.
 */
function send(agent, baseUrl, req, timeoutMs) {
  const u = new URL(req.path || '/', baseUrl);
  const t0 = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const finish = (v) => {
      if (!settled) {
        settled = true;
        resolve({ ...v, ms: performance.now() - t0 });
      }
    };
    const body = req.body === undefined ? undefined : Buffer.from(req.body);
    const headers = { ...(req.headers || {}) };
    if (body !== undefined) headers['content-length'] = String(body.length);
    const r = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: req.method || 'GET',
        headers,
        agent,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = JSON.parse(text);
          } catch (e) {
            json = undefined;
          }
          finish({ status: res.statusCode, headers: res.headers, body: text, json, reused: r.reusedSocket });
        });
        res.on('error', (e) => finish({ error: e, reused: r.reusedSocket }));
      },
    );
    r.on('error', (e) => finish({ error: e, reused: r.reusedSocket }));
    if (timeoutMs) r.setTimeout(timeoutMs, () => r.destroy(new Error(`client timeout after ${timeoutMs} ms`)));
    // a client that gives up early (req.abortMs): the connection is closed mid-request
    if (req.abortMs)
      setTimeout(() => {
        if (!settled) r.destroy(new Error(`aborted by the client after ${req.abortMs} ms`));
      }, req.abortMs);
    if (body !== undefined) r.write(body);
    r.end();
  });
}

/**
 * Starts a bounded load loop.
 *
 * @param {object} o
 * @param {string} o.url  base URL (http://127.0.0.1:port)
 * @param {(i: number) => {method?: string, path?: string, headers?: object, body?: string, abortMs?: number}} o.request
 *   builds request number i (0-based, unique across loops); `abortMs`: the client closes the
 *   connection that long after sending (a client abort, counted as an error)
 * @param {number} [o.concurrency=8]
 * @param {number} [o.count=1000]  stop after this many requests were started
 * @param {number} [o.durationMs=5000]  stop starting requests after this long
 * @param {boolean} [o.keepAlive=true]  keep-alive agent (one socket per loop) or a fresh connection each time
 * @param {number} [o.timeoutMs=15000]  client-side timeout per request (counts as an error)
 * @param {number} [o.pauseOnFailureMs=0]  a loop sleeps this long after a non-200 or an error
 *   (keeps a loop of instant failures from eating the CPU the servers need)
 * @param {boolean} [o.retryReusedReset=true]  retry ONCE, on a fresh connection, a request that
 *   failed with a reset / hang-up before any response on a REUSED keep-alive socket: the server
 *   closed the idle connection as the request went out (nginx does so to idle keep-alive
 *   connections of a worker that shuts down), the race Node's docs tell clients to retry; the
 *   request never reached the application. Counted in `retries`.
 * @param {boolean} [o.record=false]  keep {i, start, end, status|error, reused, retried} per
 *   request (times in ms from performance.now())
 * @param {boolean} [o.keepJson=false]  with `record`, also keep each parsed response body
 * @param {(res: object, i: number, req: object) => void} [o.onResponse]
 * @returns {{done: Promise<LoadResult>, stop: () => void, stats: LoadResult}}
 */
function startLoad(o) {
  const concurrency = o.concurrency || 8;
  const count = o.count === undefined ? 1000 : o.count;
  const durationMs = o.durationMs === undefined ? 5000 : o.durationMs;
  const keepAlive = o.keepAlive !== false;
  const retryReusedReset = o.retryReusedReset !== false;
  // no maxSockets: each loop has one request out, so a request never queues for a socket
  const agent = keepAlive ? new http.Agent({ keepAlive: true, maxFreeSockets: concurrency }) : false;
  const t0 = performance.now();
  const deadline = t0 + durationMs;
  let next = 0;
  let stopped = false;
  /** @type {LoadResult} */
  const stats = {
    started: 0,
    completed: 0,
    statuses: {},
    errors: 0,
    errorSamples: [],
    retries: 0,
    records: o.record ? [] : undefined,
    elapsedMs: 0,
    maxMs: 0,
  };

  async function loop() {
    for (;;) {
      if (stopped || next >= count || performance.now() >= deadline) return;
      const i = next++;
      stats.started++;
      const req = o.request(i);
      const start = performance.now();
      let res = await send(agent, o.url, req, o.timeoutMs || 15000);
      let retried = false;
      if (res.error && res.reused && retryReusedReset && (res.error.code === 'ECONNRESET' || /socket hang up/.test(res.error.message))) {
        // on a fresh connection: the other idle sockets of the pool may be closing too
        stats.retries++;
        retried = true;
        res = await send(false, o.url, req, o.timeoutMs || 15000);
      }
      const end = performance.now();
      stats.completed++;
      if (end - start > stats.maxMs) stats.maxMs = end - start;
      if (res.error) {
        stats.errors++;
        if (stats.errorSamples.length < 10)
          stats.errorSamples.push(
            `${res.error.message}${res.reused ? ' (reused socket)' : ''}${retried ? ' (on the retry)' : ''} at +${(end - t0).toFixed(0)} ms`,
          );
      } else {
        stats.statuses[res.status] = (stats.statuses[res.status] || 0) + 1;
      }
      if (stats.records)
        stats.records.push({
          i,
          start,
          end,
          status: res.error ? undefined : res.status,
          error: res.error ? res.error.message : undefined,
          reused: !!res.reused,
          retried,
          json: o.keepJson ? res.json : undefined,
        });
      if (o.onResponse) o.onResponse(res, i, req);
      if ((res.error || res.status !== 200) && o.pauseOnFailureMs) await sleep(o.pauseOnFailureMs);
    }
  }

  const loops = [];
  for (let k = 0; k < concurrency; k++) loops.push(loop());
  const done = Promise.all(loops).then(() => {
    stats.elapsedMs = performance.now() - t0;
    if (agent) agent.destroy();
    return stats;
  });
  return {
    done,
    stop() {
      stopped = true;
    },
    stats,
    t0,
  };
}

/**
 * An open-loop load: requests start at a fixed rate whatever the answers do (a slow answer does
 * not slow the next request down, unlike startLoad's closed loops), over a keep-alive pool that
 * grows as needed. Records every request like startLoad({record: true}).
 *
 * @param {object} o
 * @param {string} o.url
 * @param {(i: number) => object} o.request
 * @param {number} o.rps  requests started per second
 * @param {number} o.durationMs
 * @param {number} [o.timeoutMs=15000]
 * @returns {{done: Promise<LoadResult>, stop: () => void}}
 */
function startOpenLoad(o) {
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 1024 });
  const t0 = performance.now();
  const stats = { started: 0, completed: 0, statuses: {}, errors: 0, errorSamples: [], retries: 0, records: [], elapsedMs: 0, maxMs: 0 };
  const pending = [];
  let stopped = false;
  let timer;
  const fire = async (i) => {
    const req = o.request(i);
    const start = performance.now();
    const res = await send(agent, o.url, req, o.timeoutMs || 15000);
    const end = performance.now();
    stats.completed++;
    if (end - start > stats.maxMs) stats.maxMs = end - start;
    if (res.error) {
      stats.errors++;
      if (stats.errorSamples.length < 10) stats.errorSamples.push(res.error.message);
    } else {
      stats.statuses[res.status] = (stats.statuses[res.status] || 0) + 1;
    }
    stats.records.push({
      i,
      start,
      end,
      status: res.error ? undefined : res.status,
      error: res.error ? res.error.message : undefined,
      reused: !!res.reused,
      retried: false,
    });
  };
  const done = new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.floor(((now - t0) / 1000) * o.rps);
      while (!stopped && stats.started < due && now - t0 < o.durationMs) pending.push(fire(stats.started++));
      if (stopped || now - t0 >= o.durationMs) {
        clearInterval(timer);
        Promise.all(pending).then(() => {
          stats.elapsedMs = performance.now() - t0;
          agent.destroy();
          resolve(stats);
        });
      }
    };
    timer = setInterval(tick, 5);
  });
  return {
    done,
    stop() {
      stopped = true;
    },
    stats,
    t0,
  };
}

/** startLoad(o).done */
function runLoad(o) {
  return startLoad(o).done;
}

/** Count of responses with a status other than 200 plus transport errors. */
function failures(stats) {
  let n = stats.errors;
  for (const [s, c] of Object.entries(stats.statuses)) if (s !== '200') n += c;
  return n;
}

/**
 * @typedef {object} LoadResult
 * @property {number} started
 * @property {number} completed
 * @property {Object<string, number>} statuses  status → count
 * @property {number} errors  transport errors (after the optional single retry)
 * @property {string[]} errorSamples  the first few error messages
 * @property {number} retries  reused-socket resets retried once
 * @property {Array<{i: number, start: number, end: number, status?: number, error?: string,
 *   reused: boolean, retried: boolean, json?: object}>} [records]
 * @property {number} elapsedMs
 * @property {number} maxMs  slowest request
 */

module.exports = { startLoad, startOpenLoad, runLoad, send, decideBody, failures, sleep };
