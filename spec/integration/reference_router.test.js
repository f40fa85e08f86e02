'use strict';

/**
 * Integration tests of the reference Router (router/reference-router.js) against a real
 * nats-server on 127.0.0.1, with the router running as a real child process.
 *
 * Run: cd /work/main && npx jest spec/integration/reference_router.test.js
 */

const { connect, headers: natsHeaders, ErrorCode } = require('nats');
const procs = require('../support/processes');
const {
  startRouter: startRouterInProcess,
  FAST_REPLY_OBJECT,
  INTAKE_ERROR_CODES,
  DEFAULT_POLICIES,
} = require('../../router/reference-router');

jest.setTimeout(60000);

const SUBJECT = 'beamline.router.v1.decide';
const ROUTER_ERROR_CODES = [
  'invalid_request',
  'unsupported_protocol_version',
  'unauthorized',
  'validator_blocked',
  'policy_not_found',
  'extension_not_found',
  'rate_limit_exceeded',
  'extension_unavailable',
  'extension_timeout',
  'decision_failed',
  'internal',
  'post_processor_failed',
  'extension_error',
  'some_code_the_gateway_does_not_know',
];

let nats;
let router;
let nc;
let seq = 0;

/** A valid decide request (the shape the gateway sends), with overrides. */
function body(over = {}) {
  seq += 1;
  return {
    version: '1',
    tenant_id: 'tenant-a',
    request_id: `req-${seq}`,
    trace_id: `trace-${seq}`,
    task: { type: 'chat', payload: { text: 'hi' } },
    ...over,
  };
}

const withMode = (mode, over = {}) => body({ metadata: { router_mode: mode }, ...over });

/** Sends a request; resolves to { raw, json } (json undefined when not JSON). */
async function ask(payload, { timeout = 2000, headers, subject = SUBJECT, conn = nc } = {}) {
  const data = Buffer.isBuffer(payload) || typeof payload === 'string' ? payload : JSON.stringify(payload);
  const m = await conn.request(subject, data, { timeout, headers });
  const raw = Buffer.from(m.data).toString('utf8');
  let json;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    json = undefined;
  }
  return { raw, json, msg: m };
}

beforeAll(async () => {
  nats = await procs.startNats();
  router = await procs.startRouter({ natsUrl: nats.url });
  nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
});

afterAll(async () => {
  if (nc && !nc.isClosed()) await nc.close();
  await procs.stopAll();
});

describe('reference router: decisions', () => {
  test('logs its listening line', () => {
    expect(router.tail()).toMatch(
      new RegExp(`reference router listening on ${SUBJECT.replace(/\./g, '\\.')} via 127\\.0\\.0\\.1:${nats.port}`),
    );
  });

  test('success envelope shape', async () => {
    const req = body();
    const { json } = await ask(req);
    expect(json).toEqual({
      ok: true,
      decision: {
        provider_id: expect.any(String),
        reason: 'weighted',
        priority: expect.any(Number),
        expected_latency_ms: expect.any(Number),
        expected_cost: expect.any(Number),
        metadata: { policy_id: 'default' },
      },
      context: { request_id: req.request_id, trace_id: req.trace_id },
    });
    expect(['openai', 'anthropic', 'local']).toContain(json.decision.provider_id);
  });

  test('trace_id is omitted from the context when the request has none', async () => {
    const req = body();
    delete req.trace_id;
    const { json } = await ask(req);
    expect(json.ok).toBe(true);
    expect(json.context).toEqual({ request_id: req.request_id });
  });

  test('weighted pick follows the policy weights over 2000 requests', async () => {
    const N = 2000;
    const counts = {};
    for (let i = 0; i < N; i += 200) {
      const batch = await Promise.all(Array.from({ length: 200 }, () => ask(body())));
      for (const { json } of batch) counts[json.decision.provider_id] = (counts[json.decision.provider_id] || 0) + 1;
    }
    const providers = DEFAULT_POLICIES.policies.default.providers;
    const total = providers.reduce((s, p) => s + p.weight, 0);
    expect(Object.keys(counts).sort()).toEqual(providers.map((p) => p.id).sort());
    for (const p of providers) {
      const share = counts[p.id] / N;
      // binomial sd at N=2000 is <= 1.2 points; 5 points is > 4 sd
      expect(Math.abs(share - p.weight / total)).toBeLessThan(0.05);
    }
  });

  test('sticky by context.user_id: same user → same provider, users spread over providers', async () => {
    const seen = new Set();
    for (let u = 0; u < 40; u++) {
      const replies = await Promise.all(Array.from({ length: 5 }, () => ask(body({ context: { user_id: `user-${u}` } }))));
      const ids = new Set(replies.map((r) => r.json.decision.provider_id));
      expect(ids.size).toBe(1);
      expect(replies[0].json.decision.reason).toBe('sticky');
      seen.add(replies[0].json.decision.provider_id);
    }
    expect(seen.size).toBeGreaterThan(1);
  });

  test('stickiness is stable across router processes (stable hash)', async () => {
    const before = (await ask(body({ context: { user_id: 'stable-user' } }))).json.decision.provider_id;
    await router.restart();
    const after = (await ask(body({ context: { user_id: 'stable-user' } }))).json.decision.provider_id;
    expect(after).toBe(before);
  });

  test('policy_id selects a policy', async () => {
    for (let i = 0; i < 20; i++) {
      const { json } = await ask(body({ policy_id: 'openai-only' }));
      expect(json.decision.provider_id).toBe('openai');
      expect(json.decision.metadata).toEqual({ policy_id: 'openai-only' });
    }
  });

  test('unknown policy_id → policy_not_found', async () => {
    const req = body({ policy_id: 'no-such-policy' });
    const { json } = await ask(req);
    expect(json).toEqual({
      ok: false,
      error: {
        code: 'policy_not_found',
        message: expect.stringContaining('no-such-policy'),
        details: { policy_id: 'no-such-policy' },
        intake_error_code: null,
      },
      context: { request_id: req.request_id, trace_id: req.trace_id },
    });
  });

  test.each([
    ['version', { version: '2' }],
    ['tenant_id', { tenant_id: undefined }],
    ['request_id', { request_id: 42 }],
    ['task', { task: undefined }],
    ['task.type', { task: { payload: {} } }],
  ])('minimal validation: bad %s → invalid_request / SCHEMA_VALIDATION_FAILED', async (field, over) => {
    const { json } = await ask(body(over));
    expect(json.ok).toBe(false);
    expect(json.error).toMatchObject({
      code: 'invalid_request',
      intake_error_code: 'SCHEMA_VALIDATION_FAILED',
      details: { field },
    });
  });

  test('a request that is not JSON → invalid_request, correlation from headers', async () => {
    const h = natsHeaders();
    h.set('request_id', 'hdr-req');
    h.set('trace_id', 'hdr-trace');
    const { json } = await ask('{not json', { headers: h });
    expect(json).toMatchObject({
      ok: false,
      error: { code: 'invalid_request', intake_error_code: 'SCHEMA_VALIDATION_FAILED' },
      context: { request_id: 'hdr-req', trace_id: 'hdr-trace' },
    });
  });
});

describe('reference router: admin operations (CONTRACT §12)', () => {
  const ADMIN = 'beamline.router.v1.admin';
  const adminAsk = (op, payload, tenant = 'tenant-a', opts = {}) => {
    const h = natsHeaders();
    h.set('tenant_id', tenant);
    h.set('request_id', `adm-${++seq}`);
    h.set('trace_id', `trace-adm-${seq}`);
    return ask(payload, { subject: `${ADMIN}.${op}`, headers: h, ...opts });
  };

  test('get_extension_health: a document per extension', async () => {
    const { json } = await adminAsk('get_extension_health', {});
    expect(json.extensions.length).toBeGreaterThanOrEqual(2);
    for (const e of json.extensions) {
      expect(e).toEqual({
        id: expect.any(String),
        type: expect.any(String),
        status: expect.stringMatching(/^(healthy|degraded|unhealthy)$/),
        success_rate: expect.any(Number),
        p95_latency_ms: expect.any(Number),
        last_check: expect.any(String),
      });
    }
  });

  test('get_circuit_breaker_states: one breaker per extension', async () => {
    const { json } = await adminAsk('get_circuit_breaker_states', {});
    expect(json.circuit_breakers.map((b) => b.state)).toEqual(expect.arrayContaining(['closed', 'half_open']));
  });

  test('dry_run_pipeline: the decision of the policy without side effects; unknown policy → policy_not_found', async () => {
    const { json } = await adminAsk('dry_run_pipeline', { policy_id: 'openai-only' });
    expect(json).toMatchObject({ dry_run: true, policy_id: 'openai-only', decision: { provider_id: 'openai' } });
    expect(json.steps[json.steps.length - 1]).toMatchObject({ step: 'provider_selection', provider_id: 'openai' });
    const nf = await adminAsk('dry_run_pipeline', { policy_id: 'nope' });
    expect(nf.json).toMatchObject({ ok: false, error: { code: 'policy_not_found', details: { policy_id: 'nope' } } });
    const bad = await adminAsk('dry_run_pipeline', { policy_id: 7 });
    expect(bad.json).toMatchObject({ ok: false, error: { code: 'invalid_request', details: { field: 'policy_id' } } });
  });

  test('get_pipeline_complexity: the policy of the tenant; unknown policy → policy_not_found', async () => {
    const { json } = await adminAsk('get_pipeline_complexity', { tenant_id: 'tenant-a', policy_id: 'default' });
    expect(json).toMatchObject({ tenant_id: 'tenant-a', policy_id: 'default', complexity: { providers: 3, level: expect.any(String) } });
    const nf = await adminAsk('get_pipeline_complexity', { tenant_id: 'tenant-a', policy_id: 'zzz' });
    expect(nf.json.error.code).toBe('policy_not_found');
  });

  test('error modes through the tenant (router_mode:<mode>) or the body: error, delay, silence, non_json, echo', async () => {
    const e = await adminAsk('get_extension_health', {}, 'router_mode:error:extension_unavailable');
    expect(e.json).toMatchObject({ ok: false, error: { code: 'extension_unavailable', intake_error_code: null } });
    const t0 = Date.now();
    const d = await adminAsk('get_circuit_breaker_states', {}, 'router_mode:delay:150');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(d.json.circuit_breakers).toBeDefined();
    await expect(adminAsk('get_extension_health', {}, 'router_mode:silence', { timeout: 300 })).rejects.toMatchObject({
      code: ErrorCode.Timeout,
    });
    expect((await adminAsk('get_extension_health', {}, 'router_mode:non_json')).json).toBeUndefined();
    const body = await adminAsk('dry_run_pipeline', { metadata: { router_mode: 'error:validator_blocked' } });
    expect(body.json.error.code).toBe('validator_blocked');
    const echo = await adminAsk('get_pipeline_complexity', { tenant_id: 'x', policy_id: 'y' }, 'router_mode:echo');
    expect(echo.json).toMatchObject({
      request: { tenant_id: 'x', policy_id: 'y' },
      headers: { tenant_id: 'router_mode:echo' },
      subject: `${ADMIN}.get_pipeline_complexity`,
    });
  });

  test('an unknown operation is an invalid_request', async () => {
    const { json } = await adminAsk('drop_all_tables', {});
    expect(json).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
  });
});

describe('reference router: modes', () => {
  test.each(ROUTER_ERROR_CODES)('error:%s', async (code) => {
    const req = withMode(`error:${code}`);
    const { json } = await ask(req);
    expect(json).toEqual({
      ok: false,
      error: {
        code,
        message: expect.any(String),
        details: { router_mode: `error:${code}` },
        intake_error_code: code === 'invalid_request' ? 'SCHEMA_VALIDATION_FAILED' : null,
      },
      context: { request_id: req.request_id, trace_id: req.trace_id },
    });
  });

  test.each(ROUTER_ERROR_CODES)('error_no_details:%s has neither details nor intake_error_code', async (code) => {
    const { json } = await ask(withMode(`error_no_details:${code}`));
    expect(json.ok).toBe(false);
    expect(json.error).toEqual({ code, message: expect.any(String) });
  });

  test.each(INTAKE_ERROR_CODES)('intake:%s', async (intake) => {
    const { json } = await ask(withMode(`intake:${intake}`));
    expect(json.ok).toBe(false);
    expect(json.error).toMatchObject({ code: 'invalid_request', intake_error_code: intake });
  });

  test('the mode can also come from context.router_mode', async () => {
    const { json } = await ask(body({ context: { router_mode: 'error:unauthorized', user_id: 'u' } }));
    expect(json.error.code).toBe('unauthorized');
  });

  test('metadata.router_mode wins over context.router_mode', async () => {
    const { json } = await ask(body({ metadata: { router_mode: 'error:internal' }, context: { router_mode: 'error:unauthorized' } }));
    expect(json.error.code).toBe('internal');
  });

  test('echo returns the received payload and NATS headers', async () => {
    const req = withMode('echo', {
      policy_id: 'default',
      message: { message_id: 'm-1', payload: { x: 1 } },
      context: { user_id: 'u-9' },
    });
    const h = natsHeaders();
    h.set('trace_id', req.trace_id);
    h.set('tenant_id', req.tenant_id);
    h.set('request_id', req.request_id);
    h.set('version', '1');
    h.set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    h.set('tracestate', 'vendor=x');
    const { json, msg } = await ask(req, { headers: h });
    expect(msg.headers).toBeUndefined(); // the router replies without headers
    expect(json.ok).toBe(true);
    expect(json.decision.provider_id).toBe('echo');
    expect(json.decision.metadata.request).toEqual(req);
    expect(json.decision.metadata.headers).toEqual({
      trace_id: req.trace_id,
      tenant_id: req.tenant_id,
      request_id: req.request_id,
      version: '1',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: 'vendor=x',
    });
    expect(json.decision.metadata.subject).toBe(SUBJECT);
    expect(json.decision.metadata.reply).toMatch(/^_INBOX\./);
  });

  test('echo without headers reports an empty headers object', async () => {
    const { json } = await ask(withMode('echo'));
    expect(json.decision.metadata.headers).toEqual({});
  });

  test('delay:<ms> answers normally after the delay', async () => {
    const t0 = Date.now();
    const { json } = await ask(withMode('delay:300'), { timeout: 3000 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(json.ok).toBe(true);
    expect(json.decision.reason).toBe('weighted');
  });

  test('delay longer than the timeout → the request times out', async () => {
    await expect(ask(withMode('delay:800'), { timeout: 200 })).rejects.toMatchObject({ code: ErrorCode.Timeout });
  });

  test('silence → the request times out', async () => {
    const t0 = Date.now();
    await expect(ask(withMode('silence'), { timeout: 300 })).rejects.toMatchObject({ code: ErrorCode.Timeout });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });

  test('non_json replies bytes that are not JSON', async () => {
    const { raw, json } = await ask(withMode('non_json'));
    expect(raw.length).toBeGreaterThan(0);
    expect(json).toBeUndefined();
  });

  test('empty replies zero bytes (without a 503 status)', async () => {
    const { raw, msg } = await ask(withMode('empty'));
    expect(raw).toBe('');
    expect(msg.headers).toBeUndefined();
  });

  test('no_ok replies JSON without an ok field', async () => {
    const { json } = await ask(withMode('no_ok'));
    expect(json).toEqual(expect.any(Object));
    expect('ok' in json).toBe(false);
  });

  test('string_ok replies ok as a string', async () => {
    const { json } = await ask(withMode('string_ok'));
    expect(json.ok).toBe('true');
  });

  test('json_array replies a JSON array', async () => {
    const { json } = await ask(withMode('json_array'));
    expect(Array.isArray(json)).toBe(true);
  });

  test('malformed_error replies ok:false with a non-object error', async () => {
    const { json } = await ask(withMode('malformed_error'));
    expect(json.ok).toBe(false);
    expect(typeof json.error).toBe('string');
  });

  test('fast replies the constant precomputed envelope', async () => {
    const { json } = await ask(withMode('fast'));
    expect(json).toEqual(FAST_REPLY_OBJECT);
  });

  test('an unknown mode → invalid_request naming the field', async () => {
    const { json } = await ask(withMode('bogus-mode'));
    expect(json.error).toMatchObject({ code: 'invalid_request', details: { field: 'metadata.router_mode' } });
  });
});

describe('reference router: CLI flags and in-process use', () => {
  test('--fast answers everything with the precomputed reply, even invalid requests', async () => {
    const subject = 'test.fast.decide';
    await procs.startRouter({ natsUrl: nats.url, subject, args: ['--fast'] });
    expect((await ask(body(), { subject })).json).toEqual(FAST_REPLY_OBJECT);
    expect((await ask('not json', { subject })).json).toEqual(FAST_REPLY_OBJECT);
  });

  test('--mode sets the default mode; a request mode still wins', async () => {
    const subject = 'test.mode.decide';
    await procs.startRouter({ natsUrl: nats.url, args: ['--subject', subject, '--mode', 'error:rate_limit_exceeded'] });
    expect((await ask(body(), { subject })).json.error.code).toBe('rate_limit_exceeded');
    expect((await ask(withMode('normal'), { subject })).json.ok).toBe(true);
  });

  test('ROUTER_DECIDE_SUBJECT env and --policies FILE', async () => {
    const fs = require('fs');
    const path = require('path');
    const file = path.join(procs.tmpRoot(), 'policies.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        default_policy: 'p1',
        policies: { p1: { providers: [{ id: 'only-one', weight: 3, priority: 7, expected_latency_ms: 11, expected_cost: 0.5 }] } },
      }),
    );
    const subject = 'test.env.decide';
    await procs.startRouter({ natsUrl: nats.url, env: { ROUTER_DECIDE_SUBJECT: subject }, args: ['--policies', file] });
    const { json } = await ask(body(), { subject });
    expect(json.decision).toEqual({
      provider_id: 'only-one',
      reason: 'weighted',
      priority: 7,
      expected_latency_ms: 11,
      expected_cost: 0.5,
      metadata: { policy_id: 'p1' },
    });
    expect((await ask(body({ policy_id: 'default' }), { subject })).json.error.code).toBe('policy_not_found');
  });

  test('bad arguments exit with code 2', async () => {
    await expect(procs.startRouter({ natsUrl: nats.url, args: ['--no-such-flag'], readyTimeoutMs: 5000, quiet: true })).rejects.toThrow(
      /exited with code 2/,
    );
  });

  test('startRouter() in-process; queue group delivers each request to one router', async () => {
    const subject = 'test.inproc.decide';
    const a = await startRouterInProcess({ servers: nats.url, subject, mode: 'echo' });
    const b = await startRouterInProcess({ natsUrl: nats.url, subject, mode: 'echo' });
    try {
      // count replies on a hand-made inbox: with the queue group each request gets exactly one
      const inbox = `_INBOX.test.${Date.now()}`;
      let replies = 0;
      const sub = nc.subscribe(inbox, {
        callback: () => {
          replies += 1;
        },
      });
      for (let i = 0; i < 20; i++) nc.publish(subject, JSON.stringify(body()), { reply: inbox });
      await nc.flush();
      const deadline = Date.now() + 2000;
      while (replies < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200));
      sub.unsubscribe();
      expect(replies).toBe(20);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('reference router: process lifecycle', () => {
  test('reconnects after nats-server restarts and answers again', async () => {
    await nats.restart();
    const deadline = Date.now() + 15000;
    let last;
    for (;;) {
      try {
        last = await ask(body(), { timeout: 500 });
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    expect(last.json.ok).toBe(true);
  });

  test('exits 0 on SIGTERM', async () => {
    const r = await procs.startRouter({ natsUrl: nats.url, subject: 'test.sigterm.decide' });
    r.kill('SIGTERM');
    await expect(r.waitExit(5000)).resolves.toMatchObject({ code: 0 });
    await r.stop();
  });

  test('exits 0 on SIGINT', async () => {
    const r = await procs.startRouter({ natsUrl: nats.url, subject: 'test.sigint.decide' });
    r.kill('SIGINT');
    await expect(r.waitExit(5000)).resolves.toMatchObject({ code: 0 });
    await r.stop();
  });

  test('no responders when the router is stopped', async () => {
    await router.stop();
    await expect(ask(body(), { timeout: 2000 })).rejects.toMatchObject({ code: ErrorCode.NoResponders });
  });
});
