'use strict';
/**
 * A small OTLP/HTTP trace receiver for the tracing tests: `POST /v1/traces` with
 * `Content-Type: application/json` (the OTLP/HTTP JSON encoding), on a free loopback port.
 *
 * Every span received is checked against the official OpenTelemetry JS encoder
 * (@opentelemetry/otlp-transformer): the span is rebuilt as an SDK span, encoded by
 * `JsonTraceSerializer` (OTLP JSON: the proto field names, hex ids, nanosecond strings) and by
 * `ProtobufTraceSerializer` (the proto definitions; a malformed id or timestamp fails there), and
 * every field the gateway sent must equal the official encoding's field of the same name. A
 * mismatch is recorded in `errors` (the tests assert it stays empty).
 *
 * `mode`: 'ok' (200 `{}`), 'fail' (503), 'slow' (answers after `slowMs`).
 */
const http = require('http');
const { JsonTraceSerializer, ProtobufTraceSerializer } = require('@opentelemetry/otlp-transformer');

const HEX = (n) => new RegExp(`^[0-9a-f]{${n}}$`);

/** The OTLP AnyValue of an attribute as a JS value (what an SDK attribute holds). */
function anyValue(v) {
  if ('stringValue' in v) return v.stringValue;
  if ('intValue' in v) return Number(v.intValue);
  if ('doubleValue' in v) return v.doubleValue;
  if ('boolValue' in v) return v.boolValue;
  throw new Error(`unsupported AnyValue ${JSON.stringify(v)}`);
}

const attrsOf = (list = []) => Object.fromEntries(list.map((a) => [a.key, anyValue(a.value)]));

/** nanoseconds (decimal string) → HrTime [seconds, nanos] */
function hrTime(ns) {
  const n = BigInt(ns);
  return [Number(n / 1000000000n), Number(n % 1000000000n)];
}

/** The received span as an SDK ReadableSpan, for the official serializers. */
function sdkSpan(span, resource, scope) {
  return {
    name: span.name,
    kind: span.kind - 1,
    spanContext: () => ({ traceId: span.traceId, spanId: span.spanId, traceFlags: 1 }),
    parentSpanContext: span.parentSpanId ? { traceId: span.traceId, spanId: span.parentSpanId, traceFlags: 1, isRemote: false } : undefined,
    startTime: hrTime(span.startTimeUnixNano),
    endTime: hrTime(span.endTimeUnixNano),
    status: span.status ? { code: span.status.code, message: span.status.message } : { code: 0 },
    attributes: attrsOf(span.attributes),
    links: [],
    events: [],
    duration: [0, 0],
    ended: true,
    resource: { attributes: attrsOf(resource.attributes) },
    instrumentationScope: { name: scope.name, version: scope.version },
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

/** Problems of one received span (empty when it matches the official encoding). */
function checkSpan(span, resource, scope) {
  const problems = [];
  if (!HEX(32).test(span.traceId || '')) problems.push(`traceId ${span.traceId}`);
  if (!HEX(16).test(span.spanId || '')) problems.push(`spanId ${span.spanId}`);
  if (span.parentSpanId !== undefined && !HEX(16).test(span.parentSpanId)) problems.push(`parentSpanId ${span.parentSpanId}`);
  for (const k of ['name', 'kind', 'startTimeUnixNano', 'endTimeUnixNano', 'attributes']) {
    if (span[k] === undefined) problems.push(`missing ${k}`);
  }
  if (problems.length) return problems;
  const sdk = sdkSpan(span, resource, scope);
  const official = JSON.parse(Buffer.from(JsonTraceSerializer.serializeRequest([sdk])).toString('utf8'));
  const o = official.resourceSpans[0].scopeSpans[0].spans[0];
  for (const [k, v] of Object.entries(span)) {
    if (!(k in o)) problems.push(`field ${k} is not an OTLP span field`);
    else if (JSON.stringify(v) !== JSON.stringify(o[k])) problems.push(`${k}: sent ${JSON.stringify(v)}, OTLP ${JSON.stringify(o[k])}`);
  }
  const bytes = ProtobufTraceSerializer.serializeRequest([sdk]);
  if (!bytes || bytes.length === 0) problems.push('protobuf encoding failed');
  return problems;
}

async function startOtlpReceiver({ mode = 'ok', slowMs = 5000 } = {}) {
  const rx = { posts: [], spans: [], errors: [], mode, url: '' };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const post = { path: req.url, method: req.method, contentType: req.headers['content-type'], spans: [] };
      if (req.method !== 'POST' || req.url !== '/v1/traces') rx.errors.push(`${req.method} ${req.url}: not POST /v1/traces`);
      if (!/^application\/json/.test(post.contentType || '')) rx.errors.push(`content-type ${post.contentType}`);
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (e) {
        rx.errors.push(`not JSON: ${e.message}`);
      }
      for (const rs of (body && body.resourceSpans) || []) {
        const resource = attrsOf(rs.resource && rs.resource.attributes);
        for (const ss of rs.scopeSpans || []) {
          for (const span of ss.spans || []) {
            for (const p of checkSpan(span, rs.resource || {}, ss.scope || {})) rx.errors.push(`span ${span.name}: ${p}`);
            const s = { ...span, attrs: attrsOf(span.attributes), resource, scope: ss.scope };
            post.spans.push(s);
            if (rx.mode === 'ok') rx.spans.push(s);
          }
        }
      }
      rx.posts.push(post);
      const answer = () => {
        if (rx.mode === 'fail') {
          res.writeHead(503, { 'Content-Type': 'application/json' });
          res.end('{"code":14,"message":"unavailable"}');
        } else {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.end('{}');
        }
      };
      if (rx.mode === 'slow') setTimeout(answer, slowMs);
      else answer();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  rx.port = server.address().port;
  rx.url = `http://127.0.0.1:${rx.port}`;
  rx.stop = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  /** Resolves once `pred(rx)` holds; rejects after timeoutMs. */
  rx.waitFor = async (pred, timeoutMs = 10000) => {
    const deadline = Date.now() + timeoutMs;
    while (!pred(rx)) {
      if (Date.now() > deadline) throw new Error(`OTLP receiver: condition not met after ${timeoutMs} ms (${rx.spans.length} spans)`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  return rx;
}

module.exports = { startOtlpReceiver, checkSpan };
