'use strict';
// Small helpers for the API end-to-end tests: decide requests, Prometheus scrapes (parsed by the
// npm `parse-prometheus-text-format` parser) and fixed-window timing.
const crypto = require('crypto');
const parsePrometheus = require('parse-prometheus-text-format');
const { request } = require('./gateway');

const DECIDE = '/api/v1/routes/decide';
const MESSAGES = '/api/v1/messages';

/** A valid canonical decide body; `extra` is merged at the top level. */
function decideBody(extra = {}) {
  return JSON.stringify({ version: '1', task: { type: 'chat', payload: { text: 'hi' } }, ...extra });
}

/**
 * POST a decide-style request. `tenant: null` sends no X-Tenant-ID.
 * @returns {Promise<{status:number, headers:object, body:string, json:any}>}
 */
function post(url, { path = DECIDE, tenant = 't1', headers = {}, body = decideBody(), method = 'POST' } = {}) {
  const h = { 'content-type': 'application/json', ...headers };
  if (tenant !== null) h['x-tenant-id'] = tenant;
  return request(url, { method, path, headers: h, body });
}

const sha256 = (s) => crypto.createHash('sha256').update(s).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits, if needed, until at least `minLeft` seconds remain in the current epoch-aligned window
 * of `window` seconds, so a burst of requests cannot straddle a window boundary.
 */
async function freshWindow(window, minLeft) {
  const now = Date.now() / 1000;
  const left = window - (now % window);
  if (left < minLeft) await sleep(Math.ceil(left * 1000) + 50);
}

/**
 * Lets log phases of responses already received finish (they run right after the response is
 * sent), so metric deltas measured around a step count only that step's requests.
 */
const settle = () => sleep(150);

/** GET /metrics, parsed. Returns {text, families: Map name → family, headers, status}. */
async function scrape(url) {
  const r = await request(url, { path: '/metrics' });
  const families = new Map(parsePrometheus(r.body).map((f) => [f.name, f]));
  return { text: r.body, families, headers: r.headers, status: r.status };
}

/** Sum of the samples of a counter/gauge family whose labels include `labels`. */
function value(s, name, labels = {}) {
  const f = s.families.get(name);
  if (!f) return undefined;
  let sum = 0;
  for (const m of f.metrics) {
    const l = m.labels || {};
    if (Object.entries(labels).every(([k, v]) => l[k] === v)) sum += Number(m.value);
  }
  return sum;
}

/**
 * One series of a histogram with labels, read from the exposition lines (the npm parser merges
 * labelled histogram series): {buckets: {le: n}, order: [le in exposition order], sum, count}.
 */
function histogram(s, name, labels) {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',');
  const out = { buckets: {}, order: [], sum: 0, count: 0 };
  for (const line of s.text.split('\n')) {
    let m = line.match(new RegExp(`^${name}_bucket\\{${want},le="([^"]+)"\\} (\\S+)$`));
    if (m) {
      out.buckets[m[1]] = Number(m[2]);
      out.order.push(m[1]);
    }
    m = line.match(new RegExp(`^${name}_(sum|count)\\{${want}\\} (\\S+)$`));
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

module.exports = { DECIDE, MESSAGES, decideBody, post, sha256, sleep, settle, freshWindow, scrape, value, histogram };
