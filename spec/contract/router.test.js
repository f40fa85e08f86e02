'use strict';
// CONTRACT §4 (and §10): what goes to the Router, and what comes back — forwarding (echo mode),
// the reply mapping for every Router error code, malformed replies (502), no responders (503),
// timeouts (504), NATS down (503), and the optional flat response format.
const { connect } = require('nats');
const {
  EXTERNAL,
  useGateway,
  describeRouterModes,
  describeOwnStack,
  call,
  post,
  echo,
  canonical,
  tenant,
  uid,
  hex32,
  expectGatewayError,
  expectJsonType,
  waitReady,
  sleep,
  HEX32,
} = require('./support');

const t = useGateway();

const ROUTER_CODES = [
  ['invalid_request', 400, 'Invalid request'],
  ['unsupported_protocol_version', 400, 'Unsupported protocol version'],
  ['unauthorized', 401, 'Unauthorized'],
  ['validator_blocked', 403, 'Request blocked by validator'],
  ['policy_not_found', 404, 'Policy not found'],
  ['extension_not_found', 404, 'Extension not found'],
  ['rate_limit_exceeded', 429, 'Rate limit exceeded'],
  ['extension_unavailable', 503, 'Extension unavailable'],
  ['extension_timeout', 504, 'Extension timed out'],
  ['decision_failed', 500, 'Decision failed'],
  ['internal', 500, 'Internal router error'],
  ['post_processor_failed', 500, 'Post-processor failed'],
  ['extension_error', 500, 'Extension error'],
  ['teapot', 500, 'Router error: teapot'],
];
const INTAKE = [
  'SCHEMA_VALIDATION_FAILED',
  'VERSION_UNSUPPORTED',
  'CORRELATION_FIELDS_INVALID',
  'TENANT_FORBIDDEN',
  'IDEMPOTENCY_VIOLATION',
  'PAYLOAD_TOO_SMALL',
  'INTERNAL_VALIDATION_ERROR',
];

/** A request whose ids are known in advance. */
function known() {
  return { tn: tenant(), rid: uid(), tr: hex32() };
}
function withMode(mode, k, extra = {}) {
  return post(t, canonical({ request_id: k.rid, trace_id: k.tr, metadata: { router_mode: mode }, ...extra }), { tenantId: k.tn });
}

describeRouterModes('[reference Router] §4 what the gateway sends to the Router', () => {
  test('a minimal body: exactly version, tenant_id, request_id, trace_id, task (+ the given context)', async () => {
    const tn = tenant();
    const { r, request, headers } = await echo(t, canonical(), { tenantId: tn });
    expect(request).toEqual({
      version: '1',
      tenant_id: tn,
      request_id: r.headers['x-request-id'],
      trace_id: r.headers['x-trace-id'],
      task: { type: 'chat', payload: { text: 'hello' } },
      context: { router_mode: 'echo' },
    });
    expect(headers).toEqual({ trace_id: r.headers['x-trace-id'], tenant_id: tn, request_id: r.headers['x-request-id'], version: '1' });
  });

  test('every optional §3 field is forwarded; message_id/message_type/payload/metadata are mirrored as message{}; unknown fields are dropped', async () => {
    const tn = tenant();
    const body = {
      version: '1',
      tenant_id: tn,
      request_id: uid(),
      trace_id: hex32(),
      task: { type: 'completion', payload: { prompt: 'a/b é "q"', list: [1, 2, { x: null }] } },
      run_id: 'run-1',
      flow_id: 'flow-1',
      step_id: 'step-1',
      policy_id: 'default',
      idempotency_key: 'idem-1',
      message_id: 'msg-1',
      message_type: 'chat',
      payload: { p: 1 },
      metadata: { m: 'x' },
      context: { router_mode: 'echo', user_id: 'u1' },
      constraints: { max_latency_ms: 100 },
      push_assignment: false,
      unknown_field: 'dropped',
      another: { deep: true },
    };
    const { request, headers } = await echo(t, body, { tenantId: tn });
    const expected = { ...body, message: { message_id: 'msg-1', message_type: 'chat', payload: { p: 1 }, metadata: { m: 'x' } } };
    delete expected.unknown_field;
    delete expected.another;
    expect(request).toEqual(expected);
    expect(headers).toEqual({ trace_id: body.trace_id, tenant_id: tn, request_id: body.request_id, version: '1' });
  });

  test.each([
    ['message_id', 'm-1'],
    ['message_type', 'chat'],
    ['payload', { a: 1 }],
    ['metadata', { b: 2 }],
  ])('only %s given → message{} mirrors only it', async (field, value) => {
    const { request } = await echo(t, canonical({ [field]: value }));
    expect(request.message).toEqual({ [field]: value });
    expect(request[field]).toEqual(value);
  });

  test('none of them given → no message{} at all', async () => {
    const { request } = await echo(t, canonical({ run_id: 'r', policy_id: 'default' }));
    expect(request).not.toHaveProperty('message');
  });

  test('task.payload_ref is forwarded without a payload', async () => {
    const { request } = await echo(t, { version: '1', task: { type: 'embedding', payload_ref: 'ref://x' } });
    expect(request.task).toEqual({ type: 'embedding', payload_ref: 'ref://x' });
  });

  test('the tenant_id sent to the Router is the header value', async () => {
    const tn = tenant();
    const { request, headers } = await echo(t, canonical(), { tenantId: tn });
    expect(request.tenant_id).toBe(tn);
    expect(headers.tenant_id).toBe(tn);
  });

  test('POST /api/v1/messages forwards exactly like decide (C-GW semantics)', async () => {
    const tn = tenant();
    const rid = uid();
    const { r, request } = await echo(t, canonical({ request_id: rid }), { tenantId: tn, path: '/api/v1/messages' });
    expect(r.status).toBe(200);
    expect(request).toEqual({
      version: '1',
      tenant_id: tn,
      request_id: rid,
      trace_id: r.headers['x-trace-id'],
      task: { type: 'chat', payload: { text: 'hello' } },
      context: { router_mode: 'echo' },
    });
  });

  test('each request gets its own reply inbox; the default subject is beamline.router.v1.decide', async () => {
    const a = await echo(t, canonical());
    const b = await echo(t, canonical());
    expect(typeof a.reply).toBe('string');
    expect(a.reply).not.toBe(b.reply);
    if (!EXTERNAL) expect(a.subject).toBe('beamline.router.v1.decide');
  });

  test('the success reply is passed through byte for byte (not re-encoded)', async () => {
    const { r } = await echo(t, canonical({ payload: { s: 'a/b', u: 'é', n: 1.5 } }));
    // The reference Router uses JSON.stringify: no escaped "/" and raw UTF-8. A re-encoding gateway
    // (cjson) would write "a\/b" or reorder keys.
    expect(r.body).toBe(JSON.stringify(r.json));
    expect(r.body).toContain('"s":"a/b"');
    expectJsonType(r);
  });
});

describeRouterModes('[reference Router] §4 reply mapping', () => {
  test('a normal decision → 200 with the Router envelope', async () => {
    const k = known();
    const r = await post(t, canonical({ request_id: k.rid, trace_id: k.tr }), { tenantId: k.tn });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      ok: true,
      decision: {
        provider_id: expect.any(String),
        reason: 'weighted',
        priority: expect.any(Number),
        expected_latency_ms: expect.any(Number),
        expected_cost: expect.any(Number),
        metadata: { policy_id: 'default' },
      },
      context: { request_id: k.rid, trace_id: k.tr },
    });
    expect(r.headers['x-request-id']).toBe(k.rid);
    expect(r.headers['x-trace-id']).toBe(k.tr);
  });

  test.each(ROUTER_CODES)('Router error %s → HTTP %i, the Router body unchanged', async (code, status, message) => {
    const k = known();
    const r = await withMode(`error:${code}`, k);
    expect(r.status).toBe(status);
    expectJsonType(r);
    expect(r.body).toBe(
      JSON.stringify({
        ok: false,
        error: {
          code,
          message,
          details: { router_mode: `error:${code}` },
          intake_error_code: code === 'invalid_request' ? 'SCHEMA_VALIDATION_FAILED' : null,
        },
        context: { request_id: k.rid, trace_id: k.tr },
      }),
    );
    expect(r.headers['x-trace-id']).toBe(k.tr);
    expect(r.headers['x-request-id']).toBe(k.rid);
  });

  test.each(ROUTER_CODES)(
    'Router error %s without details/intake_error_code → HTTP %i, completed with {} and null',
    async (code, status, message) => {
      const k = known();
      const r = await withMode(`error_no_details:${code}`, k);
      expect(r.status).toBe(status);
      expect(r.json).toEqual({
        ok: false,
        error: { code, message, details: {}, intake_error_code: null },
        context: { request_id: k.rid, trace_id: k.tr },
      });
    },
  );

  test.each(INTAKE)('Router intake error %s → 400 with intake_error_code kept', async (ic) => {
    const k = known();
    const r = await withMode(`intake:${ic}`, k);
    expect(r.status).toBe(400);
    expect(r.json).toEqual({
      ok: false,
      error: {
        code: 'invalid_request',
        message: `Intake validation failed: ${ic}`,
        details: { router_mode: `intake:${ic}` },
        intake_error_code: ic,
      },
      context: { request_id: k.rid, trace_id: k.tr },
    });
  });

  test('policy_not_found from a real decision (unknown policy_id) → 404 with the Router details', async () => {
    const k = known();
    const r = await post(t, canonical({ request_id: k.rid, trace_id: k.tr, policy_id: 'nope' }), { tenantId: k.tn });
    expect(r.status).toBe(404);
    expect(r.json).toEqual({
      ok: false,
      error: { code: 'policy_not_found', message: 'Policy not found: nope', details: { policy_id: 'nope' }, intake_error_code: null },
      context: { request_id: k.rid, trace_id: k.tr },
    });
  });

  test.each([
    ['non_json', 'not JSON'],
    ['empty', 'zero bytes'],
    ['no_ok', 'no ok field'],
    ['string_ok', 'ok is a string'],
    ['json_array', 'a JSON array'],
    ['malformed_error', 'ok:false with a non-object error'],
  ])('malformed reply %s (%s) → 502 bad_gateway in the gateway shape', async (mode) => {
    const k = known();
    const r = await withMode(mode, k);
    expectGatewayError(r, 502, 'bad_gateway', { api: true, tenant: k.tn, requestId: k.rid, traceId: k.tr });
  });

  test('a late reply is dropped: the next request gets its own answer', async () => {
    // delay:200 stays within the default timeout; the point is that concurrent replies never cross.
    const ks = [known(), known(), known(), known()];
    const rs = await Promise.all(ks.map((k, i) => withMode(i % 2 ? 'delay:150' : 'echo', k)));
    rs.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(r.json.context).toEqual({ request_id: ks[i].rid, trace_id: ks[i].tr });
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Own stacks: a short Router timeout, and the ability to stop the Router and NATS.

describeOwnStack('[own stack: router.request_timeout_ms 600] timeouts, no responders, NATS down', () => {
  const f = useGateway({
    own: true,
    configure: (raw) => {
      raw.router = { ...(raw.router || {}), request_timeout_ms: 600 };
    },
  });
  const send = (mode, k = known(), extra = {}) =>
    post(f, canonical({ request_id: k.rid, trace_id: k.tr, ...(mode ? { metadata: { router_mode: mode } } : {}), ...extra }), {
      tenantId: k.tn,
    });

  test('silence → 504 timeout after the configured 600 ms, not before', async () => {
    const k = known();
    const t0 = Date.now();
    const r = await send('silence', k);
    const took = Date.now() - t0;
    expectGatewayError(r, 504, 'timeout', { api: true, tenant: k.tn, requestId: k.rid, traceId: k.tr });
    expect(took).toBeGreaterThanOrEqual(550);
    expect(took).toBeLessThan(3000);
  });

  test('a reply after the timeout is dropped; later requests get their own replies', async () => {
    const late = await send('delay:900');
    expect(late.status).toBe(504);
    await sleep(500); // the late reply arrives now
    for (let i = 0; i < 3; i++) {
      const k = known();
      const r = await send(null, k);
      expect(r.status).toBe(200);
      expect(r.json.context).toEqual({ request_id: k.rid, trace_id: k.tr });
    }
  });

  test('no Router listening (NATS no-responders) → 503 unavailable + Retry-After: 1, at once', async () => {
    await f.router.stop();
    try {
      const k = known();
      const t0 = Date.now();
      const r = await send(null, k);
      expectGatewayError(r, 503, 'unavailable', { api: true, tenant: k.tn, requestId: k.rid, traceId: k.tr });
      expect(r.headers['retry-after']).toBe('1');
      expect(Date.now() - t0).toBeLessThan(550); // not a timeout
    } finally {
      await f.router.restart();
    }
    // The Router is back: decisions flow again.
    const deadline = Date.now() + 10000;
    let r;
    do {
      r = await send(null);
      if (r.status !== 200) await sleep(100);
    } while (r.status !== 200 && Date.now() < deadline);
    expect(r.status).toBe(200);
  });

  test('NATS down → 503 unavailable + Retry-After: 1; health degraded; readiness 503; liveness 200; then recovery', async () => {
    await f.nats.stop();
    try {
      // The gateway notices the closed connection (reader sees EOF).
      const deadline = Date.now() + 5000;
      let h;
      do {
        h = await call(f, { path: '/health' });
        if (h.json.nats.connected) await sleep(50);
      } while (h.json.nats.connected && Date.now() < deadline);
      expect(h.status).toBe(200);
      expect(h.json).toEqual({
        status: 'degraded',
        service: 'beamline-gateway',
        version: expect.any(String),
        timestamp: expect.any(String),
        timestamp_ms: expect.any(Number),
        nats: { connected: false, server: null, subscriptions: expect.any(Number) },
      });
      const k = known();
      const r = await send(null, k);
      expectGatewayError(r, 503, 'unavailable', { api: true, tenant: k.tn, requestId: k.rid, traceId: k.tr });
      expect(r.headers['retry-after']).toBe('1');
      for (const p of ['/readyz', '/health/ready']) {
        const rd = await call(f, { path: p });
        expect(rd.status).toBe(503);
        expectJsonType(rd);
        expect(rd.json).toEqual({ status: 'unready', reason: 'nats_disconnected' });
      }
      const lz = await call(f, { path: '/healthz' });
      expect(lz.status).toBe(200);
      expect(lz.json).toEqual({ status: 'ok' });
      const live = await call(f, { path: '/health/live' });
      expect(live.json).toEqual({ status: 'alive' });
    } finally {
      await f.nats.restart();
    }
    await waitReady(f.url, 15000);
    const deadline = Date.now() + 10000;
    let r;
    do {
      r = await send(null);
      if (r.status !== 200) await sleep(100);
    } while (r.status !== 200 && Date.now() < deadline);
    expect(r.status).toBe(200);
    const h = await call(f, { path: '/health' });
    expect(h.json.status).toBe('healthy');
    expect(h.json.nats).toEqual({ connected: true, server: `127.0.0.1:${f.nats.port}`, subscriptions: expect.any(Number) });
  }, 40000);

  test('requests in flight when the NATS connection drops get 503 at once, not after their timeout', async () => {
    const k = known();
    const pending = send('delay:550', k);
    await sleep(150);
    const t0 = Date.now();
    await f.nats.stop();
    let r;
    try {
      r = await pending;
    } finally {
      await f.nats.restart();
    }
    const waited = Date.now() - t0;
    expectGatewayError(r, 503, 'unavailable', { api: true, tenant: k.tn, requestId: k.rid, traceId: k.tr });
    expect(r.headers['retry-after']).toBe('1');
    expect(waited).toBeLessThan(400);
    await waitReady(f.url, 15000);
  }, 30000);
});

describeOwnStack('[own stack: a scripted Router in this test process] malformed replies, byte pass-through, no retry', () => {
  const SUBJECT = 'contract.scripted.decide';
  const s = useGateway({
    own: true,
    router: false,
    configure: (raw) => {
      raw.router = { decide_subject: SUBJECT, request_timeout_ms: 500 };
    },
  });
  let nc;
  const script = new Map(); // request_id → {reply: string|null}
  const seen = new Map(); // request_id → deliveries
  beforeAll(async () => {
    nc = await connect({ servers: s.nats.url });
    nc.subscribe(SUBJECT, {
      callback: (err, msg) => {
        if (err) return;
        let rid = '';
        try {
          rid = JSON.parse(Buffer.from(msg.data).toString('utf8')).request_id;
        } catch (e) {
          /* ignore */
        }
        seen.set(rid, (seen.get(rid) || 0) + 1);
        const sc = script.get(rid);
        if (sc && sc.reply === null) return; // silence
        msg.respond(
          Buffer.from(sc ? sc.reply : JSON.stringify({ ok: true, decision: { provider_id: 'scripted' }, context: { request_id: rid } })),
        );
      },
    });
    await nc.flush();
  });
  afterAll(async () => {
    if (nc) await nc.close();
  });

  async function reply(text) {
    const k = known();
    script.set(k.rid, { reply: text });
    const r = await post(s, canonical({ request_id: k.rid, trace_id: k.tr }), { tenantId: k.tn });
    return { r, k };
  }

  test.each([
    ['ok:false without error', '{"ok":false}'],
    ['ok:false with error null', '{"ok":false,"error":null}'],
    ['ok:false with error a string', '{"ok":false,"error":"boom"}'],
    ['ok:false with error an array', '{"ok":false,"error":[1]}'],
    ['ok:false with error.code missing', '{"ok":false,"error":{"message":"m"}}'],
    ['ok:false with error.code a number', '{"ok":false,"error":{"code":5}}'],
    ['ok:false with error.code null', '{"ok":false,"error":{"code":null}}'],
    ['ok null', '{"ok":null}'],
    ['ok 1', '{"ok":1,"decision":{}}'],
    ['truncated JSON', '{"ok":true,"decision":'],
    ['JSON null', 'null'],
    ['a JSON string', '"ok"'],
  ])('%s → 502 bad_gateway', async (_w, text) => {
    const { r, k } = await reply(text);
    expectGatewayError(r, 502, 'bad_gateway', { api: true, tenant: k.tn, requestId: k.rid, traceId: k.tr });
  });

  test('a success reply with odd formatting is passed through byte for byte', async () => {
    const text = '{ "decision" : {"provider_id":"x\\/y","z":1.50},\n "ok" : true, "extra":[] , "u":"\\u00e9"}';
    const { r } = await reply(text);
    expect(r.status).toBe(200);
    expect(r.body).toBe(text);
  });

  test('an error reply that has details and intake_error_code is passed through byte for byte', async () => {
    const text =
      '{"ok":false, "error":{"code":"validator_blocked","message":"no","details":{"a":[]},"intake_error_code":"X","extra":1},"context":{}}';
    const { r } = await reply(text);
    expect(r.status).toBe(403);
    expect(r.body).toBe(text);
  });

  test('an error reply without them is completed and keeps every other field', async () => {
    const { r } = await reply(
      '{"ok":false,"error":{"code":"extension_timeout","message":"slow","hint":"h"},"context":{"request_id":"x"},"extra":true}',
    );
    expect(r.status).toBe(504);
    expect(r.json).toEqual({
      ok: false,
      error: { code: 'extension_timeout', message: 'slow', hint: 'h', intake_error_code: null, details: {} },
      context: { request_id: 'x' },
      extra: true,
    });
  });

  test('details present but intake_error_code absent → only intake_error_code is added', async () => {
    const { r } = await reply('{"ok":false,"error":{"code":"unauthorized","message":"m","details":{"k":"v"}}}');
    expect(r.status).toBe(401);
    expect(r.json).toEqual({ ok: false, error: { code: 'unauthorized', message: 'm', details: { k: 'v' }, intake_error_code: null } });
  });

  test('a timeout is not retried: the Router saw the request exactly once', async () => {
    const { r, k } = await reply(null);
    expectGatewayError(r, 504, 'timeout', { api: true, tenant: k.tn, requestId: k.rid, traceId: k.tr });
    await sleep(700);
    expect(seen.get(k.rid)).toBe(1);
  });

  test('the request reaches the configured subject with the NATS headers of §10, exactly', async () => {
    const k = known();
    let got;
    const sub = nc.subscribe(SUBJECT, {
      max: 1,
      callback: (err, msg) => {
        got = msg;
      },
    });
    await nc.flush();
    const r = await post(s, canonical({ request_id: k.rid, trace_id: k.tr }), {
      tenantId: k.tn,
      headers: { traceparent: `00-${k.tr}-00f067aa0ba902b7-01`, tracestate: 'a=b' },
    });
    expect(r.status).toBe(200);
    sub.unsubscribe();
    expect(got).toBeDefined();
    const h = {};
    for (const [name, values] of got.headers) h[name] = values;
    expect(h).toEqual({
      trace_id: [k.tr],
      tenant_id: [k.tn],
      request_id: [k.rid],
      version: ['1'],
      traceparent: [`00-${k.tr}-00f067aa0ba902b7-01`],
      tracestate: ['a=b'],
    });
    expect(got.reply).toMatch(/\S/);
  });
});

describeOwnStack('[own stack: response_format flat] §4 flat responses', () => {
  const fl = useGateway({
    own: true,
    configure: (raw) => {
      raw.response_format = 'flat';
    },
  });

  test('200 → the decision fields plus request_id and trace_id (and message_id when given)', async () => {
    const k = known();
    const r = await post(fl, canonical({ request_id: k.rid, trace_id: k.tr, message_id: 'msg-9', context: { router_mode: 'echo' } }), {
      tenantId: k.tn,
    });
    expect(r.status).toBe(200);
    expectJsonType(r);
    expect(r.json).toEqual({
      provider_id: 'echo',
      reason: 'echo',
      priority: 0,
      expected_latency_ms: 0,
      expected_cost: 0,
      metadata: expect.objectContaining({ request: expect.any(Object) }),
      request_id: k.rid,
      trace_id: k.tr,
      message_id: 'msg-9',
    });
    expect(r.headers['x-request-id']).toBe(k.rid);
  });

  test('without message_id there is no message_id key', async () => {
    const r = await post(fl, canonical());
    expect(r.status).toBe(200);
    expect(Object.keys(r.json).sort()).toEqual(
      ['expected_cost', 'expected_latency_ms', 'metadata', 'priority', 'provider_id', 'reason', 'request_id', 'trace_id'].sort(),
    );
    expect(r.json.trace_id).toBe(r.headers['x-trace-id']);
    expect(r.json.trace_id).toMatch(HEX32);
  });

  test('Router errors keep the error body', async () => {
    const k = known();
    const r = await post(fl, canonical({ request_id: k.rid, trace_id: k.tr, metadata: { router_mode: 'error:validator_blocked' } }), {
      tenantId: k.tn,
    });
    expect(r.status).toBe(403);
    expect(r.json).toEqual({
      ok: false,
      error: {
        code: 'validator_blocked',
        message: 'Request blocked by validator',
        details: { router_mode: 'error:validator_blocked' },
        intake_error_code: null,
      },
      context: { request_id: k.rid, trace_id: k.tr },
    });
  });

  test('gateway errors keep the gateway error body', async () => {
    const r = await post(fl, canonical({ version: '3' }));
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { field: 'version' } });
  });

  test('the decision lookup returns the flat body, byte for byte', async () => {
    const k = known();
    const r = await post(fl, canonical({ request_id: k.rid }), { tenantId: k.tn });
    expect(r.status).toBe(200);
    const g = await call(fl, { path: `/api/v1/routes/decide/${k.rid}`, headers: { 'X-Tenant-ID': k.tn } });
    expect(g.status).toBe(200);
    expect(g.body).toBe(r.body);
  });
});
