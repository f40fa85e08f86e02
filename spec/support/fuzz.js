'use strict';
/**
 * A seeded HTTP fuzzer over raw sockets (issue 8). Case `i` of seed `s` is always the same bytes
 * (its own PRNG, seeded from s and i), so a failure is replayed with `caseFor(s, i)`; a failure
 * report prints the seed, the case number and the request.
 *
 * Categories: mutated JSON bodies (truncation, flipped/inserted bytes, wrong types, deep nesting,
 * huge numbers, invalid UTF-8, control characters), header abuse (CR/LF and control characters,
 * very long, many and duplicated headers, obs-fold, no colon), odd methods, odd request lines
 * and versions, encoded and odd paths (%2e%2e, %00, %ff, //, raw bytes, absolute URIs, long
 * URIs), and Content-Length / Transfer-Encoding combinations (both, bad chunk sizes, negative,
 * non-numeric, duplicated, too big, shorter or longer than the body).
 *
 * Every answer is checked (`checkResponse`): a status the contract allows for that input, the JSON
 * error shape with the code of its status for errors, JSON (never HTML) everywhere except the
 * Prometheus text of /metrics, and no leaked internals (Lua errors, file paths, nginx version).
 *
 *   const { runFuzz } = require('./fuzz');
 *   const r = await runFuzz({ port, seed: 1, count: 10000, concurrency: 24 });
 *   r.sent, r.byStatus, r.failures (each {seed, i, category, why, request}), r.ms
 */
const net = require('net');

// ------------------------------------------------------------------------------------------
// PRNG (Park–Miller), one per case
// ------------------------------------------------------------------------------------------

function rngFor(seed, i) {
  let state = ((((seed * 1000003) ^ (i * 7919)) >>> 0) % 2147483646) + 1;
  const next = () => {
    state = (state * 16807) % 2147483647;
    return state;
  };
  const int = (a, b) => a + (next() % (b - a + 1));
  return {
    next,
    int,
    chance: (p) => next() / 2147483647 < p,
    pick: (arr) => arr[int(0, arr.length - 1)],
  };
}

// ------------------------------------------------------------------------------------------
// Building blocks
// ------------------------------------------------------------------------------------------

const DECIDE = '/api/v1/routes/decide';
const CONTRACT_CODES = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limit_exceeded',
  500: 'internal',
  502: 'bad_gateway',
  503: 'unavailable',
  504: 'timeout',
};
// Internals that must never reach a client.
const LEAK =
  /nginx\/\d|openresty\/\d|\.lua\b|dist-lua|src-ts|\/work\/|\/usr\/|\/tmp\/|stack traceback|runtime error|attempt to (index|call|compare|perform)|bad argument #|<html|<center>/i;

function validBody(rng) {
  const body = { version: '1', task: { type: 'chat', payload: { text: 'hi' } } };
  if (rng.chance(0.3)) body.request_id = `fz-${rng.next()}`;
  if (rng.chance(0.2)) body.metadata = { k: 'v' };
  return JSON.stringify(body);
}

function nested(depth, open, close, inner) {
  return open.repeat(depth) + inner + close.repeat(depth);
}

const HUGE_NUMBERS = [
  '1e999999',
  '-1e999999',
  '123456789012345678901234567890123456789',
  '0.' + '0'.repeat(5000) + '1',
  '9'.repeat(20000),
  '-0',
  '1E+2147483648',
  '0x10',
  'NaN',
  'Infinity',
  '1.7976931348623157e309',
  '-',
  '1.',
  '.5',
  '01',
];
const BAD_UTF8 = ['\xff', '\xfe\xff', '\xc0\xaf', '\xe0\x80\xaf', '\xed\xa0\x80', '\xf4\x90\x80\x80', '\xc3', '\xe2\x82', '\x80\x80'];

/** A mutated JSON body (a Buffer: raw bytes, invalid UTF-8 included). */
function mutatedBody(rng) {
  const kind = rng.int(0, 11);
  const base = Buffer.from(validBody(rng), 'latin1');
  switch (kind) {
    case 0:
      return base.subarray(0, rng.int(0, base.length - 1)); // truncated
    case 1: {
      // flipped bytes
      const b = Buffer.from(base);
      for (let k = rng.int(1, 4); k > 0; k--) b[rng.int(0, b.length - 1)] = rng.int(0, 255);
      return b;
    }
    case 2: {
      // inserted bytes
      const at = rng.int(0, base.length);
      const ins = Buffer.from(Array.from({ length: rng.int(1, 16) }, () => rng.int(0, 255)));
      return Buffer.concat([base.subarray(0, at), ins, base.subarray(at)]);
    }
    case 3: {
      // deep nesting, in a field or as the whole body
      const depth = rng.pick([100, 1000, 5000, 20000, 100000]);
      const n = rng.chance(0.5) ? nested(depth, '[', ']', '1') : nested(depth, '{"a":', '}', '1');
      return Buffer.from(rng.chance(0.5) ? n : `{"version":"1","task":{"type":"chat","payload":${n}}}`, 'latin1');
    }
    case 4: {
      // huge / odd numbers
      const num = rng.pick(HUGE_NUMBERS);
      const field = rng.pick(['version', 'task', 'request_id', 'push_assignment', 'x']);
      return Buffer.from(`{"version":"1","task":{"type":"chat","payload":{"n":${num}}},"${field}":${num}}`, 'latin1');
    }
    case 5: {
      // invalid UTF-8 in a string or a key
      const bad = rng.pick(BAD_UTF8);
      return Buffer.from(
        rng.chance(0.5)
          ? `{"version":"1","task":{"type":"chat${bad}","payload":{"t":"${bad}"}}}`
          : `{"version":"1","${bad}":1,"task":{"type":"chat","payload":{}}}`,
        'latin1',
      );
    }
    case 6: {
      // control characters, raw and escaped
      const c = String.fromCharCode(rng.int(0, 31));
      return Buffer.from(`{"version":"1","request_id":"a${c}b","task":{"type":"c${c}","payload":{"\\u0000":"\\ud800"}}}`, 'latin1');
    }
    case 7: {
      // wrong types
      const v = rng.pick(['null', 'true', '[]', '{}', '1', '"x"', '[1,2]', '""']);
      const f = rng.pick([
        'version',
        'task',
        'task.type',
        'task.payload',
        'tenant_id',
        'request_id',
        'metadata',
        'trace_id',
        'push_assignment',
      ]);
      const o = JSON.parse(validBody(rng));
      const parts = f.split('.');
      let t = o;
      for (const p of parts.slice(0, -1)) t = t[p];
      t[parts[parts.length - 1]] = JSON.parse(v);
      return Buffer.from(JSON.stringify(o), 'latin1');
    }
    case 8:
      return Buffer.from(
        rng.pick(['', 'null', '[]', '"str"', '1', 'true', '{', '}', '{"a":}', '{,}', '\ufeff{}', '{"version":"1"}{}', ' '.repeat(1000)]),
        'utf8',
      );
    case 9: {
      // duplicate keys and a long string
      return Buffer.from(
        `{"version":"1","version":"2","task":{"type":"chat","payload":{"s":"${'x'.repeat(rng.int(1, 200000))}"}}}`,
        'latin1',
      );
    }
    case 10: {
      // legacy shape with odd values
      return Buffer.from(
        JSON.stringify({
          message: {
            message_id: rng.chance(0.5) ? 1 : 'm',
            tenant_id: rng.pick(['t1', '', 'x y', 1]),
            message_type: rng.pick(['chat', 'CHAT', 'nope', 5]),
            payload: rng.pick(['{"a":1}', 'not json', '', 7, {}]),
          },
        }),
        'latin1',
      );
    }
    default:
      return Buffer.from(validBody(rng), 'latin1');
  }
}

function headerLines(headers) {
  return headers.map(([k, v]) => `${k}: ${v}\r\n`).join('');
}

function build({ method = 'POST', target = DECIDE, version = 'HTTP/1.1', headers, body, rawHead }) {
  const b = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body, 'latin1');
  const head = rawHead !== undefined ? rawHead : `${method} ${target} ${version}\r\n${headerLines(headers)}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), b]);
}

function stdHeaders(body, extra = []) {
  return [
    ['Host', '127.0.0.1'],
    ['Content-Type', 'application/json'],
    ['X-Tenant-ID', 't-fuzz'],
    ['Content-Length', String(body.length)],
    ['Connection', 'close'],
    ...extra,
  ];
}

// Statuses allowed per category (besides a connection the server closes without answering,
// allowed only where `mayClose`).
const S = {
  body: [200, 400, 413],
  header: [200, 400, 404, 405, 409, 413, 415],
  method: [400, 404, 405],
  path: [200, 400, 404, 405],
  framing: [200, 400, 411, 413, 415],
  line: [200, 400, 404, 405],
};

/** Case `i` of `seed`: {category, request: Buffer, allowed: number[], mayClose?, head?, http09?}. */
function caseFor(seed, i) {
  const rng = rngFor(seed, i);
  const category = rng.pick(['body', 'body', 'body', 'header', 'header', 'method', 'path', 'path', 'framing', 'framing', 'line']);
  if (category === 'body') {
    const body = mutatedBody(rng);
    const target = rng.pick([DECIDE, DECIDE, '/api/v1/messages']);
    return { category, request: build({ target, headers: stdHeaders(body), body }), allowed: S.body };
  }
  if (category === 'header') {
    const body = Buffer.from(validBody(rng));
    const hs = stdHeaders(body);
    const k = rng.int(0, 13);
    const ctl = String.fromCharCode(rng.pick([0, 1, 8, 9, 11, 12, 13, 27, 31, 127]));
    if (k === 0)
      hs.push(['X-Trace-ID', `a\r${rng.pick(['', 'b'])}`]); // bare CR
    else if (k === 1)
      hs.push(['X-Request-ID', `a\nInjected: 1`]); // bare LF (a new header line)
    else if (k === 2) hs.push([`X-Bad${ctl}Name`, 'v']);
    else if (k === 3) hs[2] = ['X-Tenant-ID', `t${ctl}x`];
    else if (k === 4) hs.push(['X-Long', 'a'.repeat(rng.pick([1000, 8000, 16000, 70000]))]);
    else if (k === 5) for (let n = rng.int(50, 400); n > 0; n--) hs.push([`X-H${n}`, 'v'.repeat(rng.int(1, 200))]);
    else if (k === 6)
      hs.push(['X-Tenant-ID', rng.pick(['t-fuzz', 'other', ''])]); // duplicated tenant
    else if (k === 7)
      hs.push(['Host', 'evil.example']); // duplicated Host
    else if (k === 8) hs.push(['Idempotency-Key', rng.pick(['k1', 'k1', '\x7f', 'x'.repeat(300), ' '])]);
    else if (k === 9)
      hs.push(['X-Folded', 'a'], [' continued', 'b']); // obs-fold line
    else if (k === 10) {
      // a header line without a colon
      return {
        category,
        request: build({ rawHead: `POST ${DECIDE} HTTP/1.1\r\n${headerLines(hs)}NoColonHere\r\n\r\n`, body }),
        allowed: S.header,
      };
    } else if (k === 11)
      hs.push([
        'Content-Type',
        rng.pick(['text/plain', 'application/json; charset=\xff', 'application/json\x00', 'application/x+json', '']),
      ]);
    else if (k === 12)
      hs.push(['X-API-Key', `k${ctl}`], ['Authorization', rng.pick(['Bearer', 'Bearer ' + 'x'.repeat(5000), 'Basic Og=='])]);
    else
      hs.push(
        ['traceparent', rng.pick(['00-' + '0'.repeat(32) + '-' + '0'.repeat(16) + '-01', 'ff-x', '00-zz', 'x'.repeat(600)])],
        ['tracestate', '\x01'.repeat(10)],
      );
    return { category, request: build({ headers: hs, body }), allowed: S.header };
  }
  if (category === 'method') {
    const method = rng.pick([
      'FOO',
      'get',
      'Post',
      'TRACE',
      'CONNECT',
      'PATCH',
      'DELETE',
      'PUT',
      'OPTIONS',
      'PROPFIND',
      'M'.repeat(rng.int(20, 5000)),
      'GE\x00T',
      'G T',
      'PRI',
      '123',
      'HEAD',
    ]);
    const target = rng.pick([DECIDE, '/healthz', '/api/v1/routes/decide/abc', '/nope', '/metrics', '/readyz']);
    const body = rng.chance(0.5) ? Buffer.from(validBody(rng)) : Buffer.alloc(0);
    return {
      category,
      request: build({ method, target, headers: stdHeaders(body), body }),
      allowed: S.method.concat(method === 'HEAD' || method === 'OPTIONS' ? [200, 204] : []),
      head: method === 'HEAD',
    };
  }
  if (category === 'path') {
    const target = rng.pick([
      '/api/v1/routes/%2e%2e/decide',
      '/%2e%2e/%2e%2e/etc/passwd',
      '/api/v1/routes/decide%00',
      '/healthz%00.json',
      '//api/v1//routes/decide',
      '/api/v1/routes/decide/..%2f..%2f',
      '/api/v1/routes/decide/%ff',
      '/api/v1/routes/decide/%',
      '/api/v1/routes/decide/%zz',
      '/api/v1/routes/decide/\xff\xfe',
      '/api/v1/routes/decide/a b',
      '/./healthz',
      '/healthz/.',
      '/api/v1/routes/decide/../../../healthz',
      'http://127.0.0.1/healthz',
      'http://evil.example/api/v1/routes/decide',
      '*',
      '/' + 'a'.repeat(rng.pick([100, 5000, 9000, 20000])),
      '/api/v1/routes/decide?' + 'q=1&'.repeat(rng.int(1, 3000)),
      '/api/v1/routes/decide/%2e%2e%2f%2e%2e%2fhealthz',
      '/metrics/../healthz',
      '/api/v1/routes/decide/\x01',
      'healthz',
      '/api/v1/routes/decide#frag',
      '/%68%65%61%6c%74%68%7a',
    ]);
    const method = rng.pick(['GET', 'POST']);
    const body = method === 'POST' ? Buffer.from(validBody(rng)) : Buffer.alloc(0);
    return { category, request: build({ method, target, headers: stdHeaders(body), body }), allowed: S.path };
  }
  if (category === 'framing') {
    const body = Buffer.from(validBody(rng));
    const base = [
      ['Host', '127.0.0.1'],
      ['Content-Type', 'application/json'],
      ['X-Tenant-ID', 't-fuzz'],
      ['Connection', 'close'],
    ];
    const chunked = (b, size) =>
      Buffer.from(`${size === undefined ? b.length.toString(16) : size}\r\n${b.toString('latin1')}\r\n0\r\n\r\n`, 'latin1');
    const k = rng.int(0, 12);
    let headers;
    let payload = body;
    let mayClose = false;
    if (k === 0) {
      headers = [...base, ['Content-Length', String(body.length)], ['Transfer-Encoding', 'chunked']];
      payload = chunked(body);
    } else if (k === 1) {
      headers = [...base, ['Transfer-Encoding', 'chunked']];
      payload = chunked(body, rng.pick(['zz', '-1', 'ffffffffffffffffff', '1;ext=1', ' 5', '0x10', '7fffffffffffffff']));
      mayClose = true;
    } else if (k === 2) {
      headers = [
        ...base,
        ['Transfer-Encoding', rng.pick(['gzip', 'chunked, chunked', 'identity', 'chunked, gzip', 'xchunked', ' chunked', 'CHUNKED'])],
      ];
      payload = chunked(body);
      mayClose = true;
    } else if (k === 3)
      headers = [...base, ['Content-Length', rng.pick(['-1', 'abc', '+10', '1e3', '0x10', '99999999999999999999', '', ' ', '10, 10'])]];
    else if (k === 4) headers = [...base, ['Content-Length', String(body.length)], ['Content-Length', String(body.length + rng.int(0, 1))]];
    else if (k === 5)
      headers = [...base, ['Content-Length', String(rng.pick([2000000, 1048577, 67108864]))]]; // bigger than the limit
    else if (k === 6) {
      headers = [...base, ['Content-Length', String(rng.int(0, body.length - 1))]];
    } // shorter: leftover bytes
    else if (k === 7) {
      headers = [...base, ['Content-Length', String(body.length + rng.int(1, 50))]];
      mayClose = true;
    } // longer: the server waits, times out
    else if (k === 8) {
      headers = [...base, ['Transfer-Encoding', 'chunked']];
      payload = Buffer.from(`${'1\r\na\r\n'.repeat(rng.int(1, 2000))}0\r\n\r\n`, 'latin1');
    } else if (k === 9) {
      headers = [...base, ['Transfer-Encoding', 'chunked']];
      payload = Buffer.from('100000\r\n' + 'x'.repeat(100) + '\r\n0\r\n\r\n', 'latin1');
      mayClose = true;
    } else if (k === 10) {
      headers = [...base, ['Content-Length', String(body.length)]];
      payload = Buffer.concat([body, Buffer.from('GARBAGE / HTTP/1.1\r\n\r\n')]);
    } else if (k === 11) {
      headers = [...base, ['Transfer-Encoding', 'chunked']];
      payload = Buffer.from('5\r\nab', 'latin1');
      mayClose = true;
    } // truncated chunk
    else {
      headers = [...base, ['Expect', rng.pick(['100-continue', 'nope'])], ['Content-Length', String(body.length)]];
    }
    return { category, request: build({ headers, body: payload }), allowed: S.framing, mayClose };
  }
  // request line and version oddities
  const k = rng.int(0, 9);
  const tail = 'Host: 127.0.0.1\r\nConnection: close\r\n\r\n';
  if (k === 0) return { category, request: Buffer.from(`GET /healthz HTTP/1.0\r\n\r\n`), allowed: S.line };
  if (k === 1)
    return {
      category,
      request: Buffer.from(
        `GET /healthz ${rng.pick(['HTTP/2.0', 'HTTP/9.9', 'HTTP/1.1x', 'HTTPS/1.1', 'http/1.1', 'HTTP/1', 'HTTP/01.1'])}\r\n${tail}`,
      ),
      allowed: S.line.concat([505]).filter((s) => s !== 505),
      mayClose: true,
    };
  if (k === 2) return { category, request: Buffer.from(`GET /healthz\r\n\r\n`), allowed: S.line, http09: true };
  if (k === 3) return { category, request: Buffer.from(`GET  /healthz  HTTP/1.1\r\n${tail}`), allowed: S.line };
  if (k === 4) return { category, request: Buffer.from(`\r\n\r\nGET /healthz HTTP/1.1\r\n${tail}`), allowed: S.line };
  if (k === 5) return { category, request: Buffer.from(`GET /healthz HTTP/1.1\n${tail.replace(/\r\n/g, '\n')}`), allowed: S.line };
  if (k === 6) return { category, request: Buffer.from(`GET /healthz HTTP/1.1\r\n\r\n`), allowed: S.line }; // no Host
  if (k === 7)
    return {
      category,
      request: Buffer.from(`\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03${'\x00'.repeat(40)}\r\n\r\n`, 'latin1'),
      allowed: S.line,
      mayClose: true,
    }; // TLS hello
  if (k === 8) return { category, request: Buffer.from(`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`), allowed: S.line, mayClose: true };
  return {
    category,
    request: Buffer.from(
      `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${'X: y\r\n'.repeat(rng.int(1, 3))}\r\n${'\x00'.repeat(rng.int(0, 10))}`,
    ),
    allowed: S.line,
  };
}

// ------------------------------------------------------------------------------------------
// Sending and reading one response over a raw socket
// ------------------------------------------------------------------------------------------

/** Parses the first HTTP response in `buf` (complete when `ended`). */
function parseResponse(buf, ended, isHead) {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return ended ? { incomplete: true } : null;
  const head = buf.subarray(0, headEnd).toString('latin1');
  const lines = head.split('\r\n');
  const m = lines[0].match(/^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/);
  if (!m) return { bad: `bad status line ${JSON.stringify(lines[0].slice(0, 100))}` };
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) {
      const k = l.slice(0, i).toLowerCase();
      headers[k] = headers[k] !== undefined ? `${headers[k]}, ${l.slice(i + 1).trim()}` : l.slice(i + 1).trim();
    }
  }
  const status = Number(m[2]);
  const rest = buf.subarray(headEnd + 4);
  // an interim response (100 Continue): the real one follows
  if (status >= 100 && status < 200) return parseResponse(rest, ended, isHead);
  if (isHead || status === 204 || status === 304) return { status, headers, body: Buffer.alloc(0), head };
  if (headers['transfer-encoding'] && /chunked/i.test(headers['transfer-encoding'])) {
    const out = [];
    let p = 0;
    for (;;) {
      const e = rest.indexOf('\r\n', p);
      if (e < 0) return ended ? { incomplete: true } : null;
      const size = parseInt(rest.subarray(p, e).toString('latin1'), 16);
      if (Number.isNaN(size)) return { bad: 'bad chunk size in the response' };
      if (size === 0) return { status, headers, body: Buffer.concat(out), head };
      if (rest.length < e + 2 + size + 2) return ended ? { incomplete: true } : null;
      out.push(rest.subarray(e + 2, e + 2 + size));
      p = e + 2 + size + 2;
    }
  }
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (rest.length < n) return ended ? { incomplete: true } : null;
    return { status, headers, body: rest.subarray(0, n), head };
  }
  return ended ? { status, headers, body: rest, head } : null;
}

/** Sends `request` on a fresh connection; resolves {res?, closed?, error?, timedOut?}. */
function exchange(port, c, timeoutMs) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    const chunks = [];
    let done = false;
    const finish = (v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish({ timedOut: true }), timeoutMs);
    const buf = () => Buffer.concat(chunks);
    sock.on('connect', () => sock.write(c.request));
    sock.on('data', (d) => {
      chunks.push(d);
      if (c.http09) return; // no framing: read to the end
      const r = parseResponse(buf(), false, c.head);
      if (r) finish({ res: r });
    });
    sock.on('error', (e) => {
      const b = buf();
      if (b.length) {
        finish(c.http09 ? { res09: b } : { res: parseResponse(b, true, c.head) || { incomplete: true }, error: e.code });
      } else finish({ closed: true, error: e.code });
    });
    sock.on('end', () => {
      const b = buf();
      if (!b.length) finish({ closed: true });
      else if (c.http09) finish({ res09: b });
      else finish({ res: parseResponse(b, true, c.head) || { incomplete: true } });
    });
  });
}

/** Why an answer breaks the contract, or null. */
function checkResponse(c, out, target) {
  if (out.timedOut) return 'no answer within the client timeout';
  if (out.closed) return c.mayClose ? null : `closed without a response${out.error ? ` (${out.error})` : ''}`;
  if (out.res09) {
    const text = out.res09.toString('latin1');
    if (LEAK.test(text)) return `leaked internals: ${text.slice(0, 200)}`;
    try {
      JSON.parse(text);
    } catch (e) {
      return `HTTP/0.9 answer is not JSON: ${text.slice(0, 100)}`;
    }
    return null;
  }
  const r = out.res;
  if (!r || r.incomplete) return c.mayClose ? null : 'incomplete response';
  if (r.bad) return r.bad;
  const text = r.body.toString('latin1');
  if (LEAK.test(r.head) || LEAK.test(text)) return `leaked internals: ${(r.head + '\n' + text).match(LEAK)[0]}`;
  if (r.headers.server && r.headers.server !== 'nginx') return `Server header ${r.headers.server}`;
  if (!c.allowed.includes(r.status)) return `status ${r.status} not allowed for a ${c.category} case (allowed ${c.allowed.join(',')})`;
  const isMetrics = /^\/metrics\b/.test(target || '') && r.status === 200;
  const ct = r.headers['content-type'] || '';
  if (!isMetrics && r.body.length && !/^application\/json\b/.test(ct)) return `content-type ${JSON.stringify(ct)} (not JSON)`;
  if (c.head || r.status === 204) return null;
  if (isMetrics) return null;
  let j;
  try {
    j = JSON.parse(text);
  } catch (e) {
    return `body is not JSON: ${text.slice(0, 120)}`;
  }
  if (r.status >= 400) {
    if (!j || j.ok !== false || !j.error || typeof j.error !== 'object') return `error body without the §5 shape: ${text.slice(0, 200)}`;
    if (j.error.code !== CONTRACT_CODES[r.status]) return `status ${r.status} with code ${j.error.code}`;
    if (typeof j.error.message !== 'string') return 'error.message is not a string';
    if (!('intake_error_code' in j.error) || typeof j.error.details !== 'object' || j.error.details === null)
      return 'error body lacks intake_error_code/details';
    if (!j.context || typeof j.context !== 'object') return 'error body lacks context';
  }
  return null;
}

function targetOf(request) {
  const line = request.subarray(0, Math.min(request.length, 30000)).toString('latin1').split('\r\n')[0];
  return line.split(' ')[1] || '';
}

/** Printable form of a request for a failure report (escaped, capped). */
function showRequest(buf, max = 1500) {
  const s = JSON.stringify(buf.subarray(0, max).toString('latin1'));
  return buf.length > max ? `${s}…(+${buf.length - max} bytes)` : s;
}

/**
 * Runs `count` cases of `seed` against 127.0.0.1:port, `concurrency` at a time.
 * @returns {Promise<{seed: number, sent: number, ms: number, byStatus: object, byCategory: object,
 *   closedByServer: number, failures: Array<{seed, i, category, why, request}>}>}
 */
async function runFuzz({ port, seed, count, concurrency = 24, timeoutMs = 8000, onProgress }) {
  const t0 = Date.now();
  const byStatus = {};
  const byCategory = {};
  const failures = [];
  let closedByServer = 0;
  let next = 0;
  let sent = 0;
  async function worker() {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      const c = caseFor(seed, i);
      const out = await exchange(port, c, timeoutMs);
      sent++;
      byCategory[c.category] = (byCategory[c.category] || 0) + 1;
      if (out.res && out.res.status) byStatus[out.res.status] = (byStatus[out.res.status] || 0) + 1;
      else if (out.res09) byStatus['http/0.9'] = (byStatus['http/0.9'] || 0) + 1;
      else {
        closedByServer++;
        byStatus.closed = (byStatus.closed || 0) + 1;
      }
      const why = checkResponse(c, out, targetOf(c.request));
      if (why) failures.push({ seed, i, category: c.category, why, request: showRequest(c.request) });
      if (onProgress && sent % 1000 === 0) onProgress(sent, count);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { seed, sent, ms: Date.now() - t0, byStatus, byCategory, closedByServer, failures };
}

/** Error-log lines that mean a worker died or Lua failed (none may appear under fuzzing). */
const WORKER_TROUBLE = /exited on signal|\[alert\]|\[emerg\]|runtime error|entry thread aborted|lua entry thread aborted|\[crit\]/;

module.exports = { runFuzz, caseFor, checkResponse, exchange, WORKER_TROUBLE, CONTRACT_CODES, LEAK };
