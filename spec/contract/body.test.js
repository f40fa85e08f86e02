'use strict';
// CONTRACT §3 and §10: the decide body — canonical and legacy Nest shapes, type rules,
// details.field, the order of checks, tenant mismatch.
const {
  useGateway,
  describeRouterModes,
  post,
  echo,
  canonical,
  tenant,
  uid,
  hex32,
  expectGatewayError,
  UUID_V4,
  API_PATHS,
} = require('./support');

const t = useGateway();

const bad = (r, field, o = {}) => expectGatewayError(r, 400, 'invalid_request', { api: true, details: { field }, ...o });

describe('§3 body that is not a JSON object → 400 with details {}', () => {
  test.each([
    ['broken JSON', '{'],
    ['plain text', 'hello'],
    ['empty body', ''],
    ['whitespace only', '  \n'],
    ['trailing garbage', '{"version":"1"} x'],
    ['an array', '[]'],
    ['a string', '"text"'],
    ['a number', '1'],
    ['null', 'null'],
    ['true', 'true'],
  ])('%s → 400 invalid_request, details {}', async (_w, body) => {
    const tn = tenant();
    const r = await post(t, body, { tenantId: tn, headers: { 'Content-Type': 'application/json' } });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: {}, tenant: tn });
  });

  test('too deeply nested → 400 details {} (and no crash: the next request works)', async () => {
    const deep = `{"version":"1","task":{"type":"chat","payload":{"x":${'['.repeat(5000)}${']'.repeat(5000)}}}}`;
    const r = await post(t, deep);
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: {} });
    const ok = await post(t, canonical());
    expect(ok.status).toBe(200);
  });

  test('moderate nesting (depth 20) is fine', async () => {
    let v = { leaf: true };
    for (let i = 0; i < 18; i++) v = { v };
    const r = await post(t, canonical({ task: { type: 'chat', payload: v } }));
    expect(r.status).toBe(200);
  });

  test.each(API_PATHS)('the same rules on %s', async (p) => {
    const r = await post(t, '[1]', { path: p, headers: { 'Content-Type': 'application/json' } });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: {} });
  });
});

describe('§3 canonical body: required fields and types → 400 with details.field', () => {
  const noTask = { version: '1' };
  const cases = [
    ['version missing', { task: { type: 'chat', payload: {} } }, 'version'],
    ['version "2"', canonical({ version: '2' }), 'version'],
    ['version 1 (number)', canonical({ version: 1 }), 'version'],
    ['version null', canonical({ version: null }), 'version'],
    ['tenant_id a number', canonical({ tenant_id: 5 }), 'tenant_id'],
    ['tenant_id null', canonical({ tenant_id: null }), 'tenant_id'],
    ['request_id a number', canonical({ request_id: 5 }), 'request_id'],
    ['request_id empty', canonical({ request_id: '' }), 'request_id'],
    ['request_id 129 chars', canonical({ request_id: 'r'.repeat(129) }), 'request_id'],
    ['task missing', noTask, 'task'],
    ['task a string', { ...noTask, task: 'chat' }, 'task'],
    ['task an array', { ...noTask, task: [] }, 'task'],
    ['task null', { ...noTask, task: null }, 'task'],
    ['task.type missing', { ...noTask, task: { payload: {} } }, 'task.type'],
    ['task.type a number', { ...noTask, task: { type: 5, payload: {} } }, 'task.type'],
    ['task.type null', { ...noTask, task: { type: null, payload: {} } }, 'task.type'],
    ['task.payload missing (no payload_ref)', { ...noTask, task: { type: 'chat' } }, 'task.payload'],
    ['task.payload a string', { ...noTask, task: { type: 'chat', payload: 'x' } }, 'task.payload'],
    ['task.payload an array', { ...noTask, task: { type: 'chat', payload: [1] } }, 'task.payload'],
    ['task.payload null', { ...noTask, task: { type: 'chat', payload: null } }, 'task.payload'],
    ['task.payload_ref a number', { ...noTask, task: { type: 'chat', payload_ref: 5 } }, 'task.payload_ref'],
    ['trace_id a number', canonical({ trace_id: 5 }), 'trace_id'],
    ['trace_id not a trace id', canonical({ trace_id: 'abc' }), 'trace_id'],
  ];
  for (const f of ['run_id', 'flow_id', 'step_id', 'policy_id', 'idempotency_key', 'message_id', 'message_type']) {
    cases.push([`${f} a number`, canonical({ [f]: 5 }), f]);
    cases.push([`${f} an object`, canonical({ [f]: {} }), f]);
    cases.push([`${f} null`, canonical({ [f]: null }), f]);
  }
  for (const f of ['payload', 'metadata', 'context', 'constraints']) {
    cases.push([`${f} a string`, canonical({ [f]: 'x' }), f]);
    cases.push([`${f} an array`, canonical({ [f]: [1] }), f]);
    cases.push([`${f} null`, canonical({ [f]: null }), f]);
  }
  cases.push(['push_assignment "true"', canonical({ push_assignment: 'true' }), 'push_assignment']);
  cases.push(['push_assignment 1', canonical({ push_assignment: 1 }), 'push_assignment']);
  cases.push(['push_assignment null', canonical({ push_assignment: null }), 'push_assignment']);

  test.each(cases.map(([w, body, field]) => [w, field, body]))(
    '%s → details.field %s, and the message names it',
    async (_w, field, body) => {
      const tn = tenant();
      const r = await post(t, body, { tenantId: tn });
      bad(r, field, { tenant: tn });
      expect(r.json.error.message).toContain(field);
    },
  );

  test('body tenant_id ≠ X-Tenant-ID → 400 details.field tenant_id (§9: neither silently wins)', async () => {
    const tn = tenant();
    const r = await post(t, canonical({ tenant_id: tenant() }), { tenantId: tn });
    bad(r, 'tenant_id', { tenant: tn });
  });

  test('body tenant_id = X-Tenant-ID → 200', async () => {
    const tn = tenant();
    const r = await post(t, canonical({ tenant_id: tn }), { tenantId: tn });
    expect(r.status).toBe(200);
  });

  test('task.payload_ref instead of task.payload → 200', async () => {
    const r = await post(t, { version: '1', task: { type: 'chat', payload_ref: 's3://bucket/key' } });
    expect(r.status).toBe(200);
  });

  test('a 400 about a body field keeps the request id of the body in X-Request-Id and context', async () => {
    const id = uid();
    const r = await post(t, canonical({ request_id: id, version: '9' }));
    bad(r, 'version', { requestId: id });
  });

  test('a 400 from a valid-but-wrong body still carries a valid trace id from the body', async () => {
    const tr = hex32();
    const r = await post(t, canonical({ trace_id: tr, version: '9' }));
    bad(r, 'version', { traceId: tr });
  });
});

describe('§10 validation order: the first offending field of the §3 table answers', () => {
  const ORDER = [
    'version',
    'tenant_id',
    'request_id',
    'task',
    'task.type',
    'task.payload',
    'trace_id',
    'run_id',
    'flow_id',
    'step_id',
    'policy_id',
    'idempotency_key',
    'message_id',
    'message_type',
    'payload',
    'metadata',
    'context',
    'constraints',
    'push_assignment',
  ];
  const BAD = {
    version: 2,
    tenant_id: 5,
    request_id: 5,
    task: 'x',
    trace_id: 5,
    run_id: 5,
    flow_id: 5,
    step_id: 5,
    policy_id: 5,
    idempotency_key: 5,
    message_id: 5,
    message_type: 5,
    payload: 'x',
    metadata: 'x',
    context: 'x',
    constraints: 'x',
    push_assignment: 'x',
  };
  /** A body with every field from index i on broken (so field i must be reported). */
  function from(i) {
    const body = canonical();
    for (const f of ORDER.slice(i)) {
      if (f === 'task.type') body.task = { ...body.task, type: 5 };
      else if (f === 'task.payload') body.task = { ...body.task, payload: 'x' };
      else if (f !== 'task') body[f] = BAD[f];
    }
    // task itself broken only when reporting task (otherwise task.type/payload could not be reached)
    if (ORDER[i] === 'task') body.task = 'x';
    return body;
  }
  test.each(ORDER.map((f, i) => [f, i]))('%s is reported before everything after it', async (field, i) => {
    const r = await post(t, from(i));
    bad(r, field);
  });

  test('JSON syntax is checked before fields; fields after content type', async () => {
    const r = await post(t, '{"version":2', { headers: { 'Content-Type': 'application/json' } });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: {} });
  });

  test('no X-Tenant-ID + broken JSON → the JSON error (the tenant may still come from a legacy body)', async () => {
    const r = await post(t, '{', { tenantId: null, headers: { 'Content-Type': 'application/json' } });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: {} });
  });

  test('no X-Tenant-ID + text/plain → 415 (content type before tenant)', async () => {
    const r = await post(t, JSON.stringify(canonical()), { tenantId: null, headers: { 'Content-Type': 'text/plain' } });
    expectGatewayError(r, 415, 'unsupported_media_type', { api: true });
  });

  test('no X-Tenant-ID + a non-object body → 400 details {} (object check before tenant)', async () => {
    const r = await post(t, '[]', { tenantId: null, headers: { 'Content-Type': 'application/json' } });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: {} });
  });

  test('no X-Tenant-ID + canonical body with bad fields → the tenant error comes first', async () => {
    const r = await post(t, { version: 2 }, { tenantId: null });
    expectGatewayError(r, 400, 'invalid_request', { api: true, details: { header: 'X-Tenant-ID' }, message: 'missing X-Tenant-ID header' });
  });
});

function legacy(m = {}, top = {}) {
  return { message: { message_id: uid('m'), message_type: 'chat', payload: '{"text":"hi"}', ...m }, ...top };
}

describe('§3/§10 legacy Nest body', () => {
  test('with X-Tenant-ID and a matching message.tenant_id → 200; message_id becomes the request id', async () => {
    const tn = tenant();
    const b = legacy({ tenant_id: tn });
    const r = await post(t, b, { tenantId: tn });
    expect(r.status).toBe(200);
    expect(r.headers['x-request-id']).toBe(b.message.message_id);
  });

  test('without X-Tenant-ID the tenant comes from message.tenant_id → 200', async () => {
    const tn = tenant();
    const r = await post(t, legacy({ tenant_id: tn }), { tenantId: null });
    expect(r.status).toBe(200);
  });

  test('without X-Tenant-ID and without message.tenant_id → 400 "missing X-Tenant-ID header"', async () => {
    const r = await post(t, legacy(), { tenantId: null });
    expectGatewayError(r, 400, 'invalid_request', {
      api: true,
      details: { header: 'X-Tenant-ID' },
      tenant: '',
      message: 'missing X-Tenant-ID header',
    });
  });

  test('message.tenant_id ≠ X-Tenant-ID → 400 details.field message.tenant_id', async () => {
    const tn = tenant();
    const r = await post(t, legacy({ tenant_id: tenant() }), { tenantId: tn });
    bad(r, 'message.tenant_id', { tenant: tn });
  });

  test.each(['chat', 'completion', 'embedding', 'CHAT', 'Completion', 'eMbEdDiNg'])('message_type %s is accepted', async (mt) => {
    const r = await post(t, legacy({ message_type: mt }));
    expect(r.status).toBe(200);
  });

  const LEGACY_BAD = [
    ['message_type missing', legacy({ message_type: undefined }), 'message.message_type'],
    ['message_type unknown', legacy({ message_type: 'image' }), 'message.message_type'],
    ['message_type a number', legacy({ message_type: 5 }), 'message.message_type'],
    ['message_type null', legacy({ message_type: null }), 'message.message_type'],
    ['payload missing', legacy({ payload: undefined }), 'message.payload'],
    ['payload a number', legacy({ payload: 5 }), 'message.payload'],
    ['payload null', legacy({ payload: null }), 'message.payload'],
    ['tenant_id a number', legacy({ tenant_id: 5 }), 'message.tenant_id'],
    ['trace_id invalid', legacy({ trace_id: 'nope' }), 'message.trace_id'],
    ['message_id a number', legacy({ message_id: 5 }), 'message.message_id'],
    ['metadata a string', legacy({ metadata: 'x' }), 'message.metadata'],
    ['top-level metadata a string', legacy({}, { metadata: 'x' }), 'metadata'],
    ['policy_id a number', legacy({}, { policy_id: 5 }), 'policy_id'],
    ['context an array', legacy({}, { context: [] }), 'context'],
    ['constraints a string', legacy({}, { constraints: 'x' }), 'constraints'],
    ['push_assignment a string', legacy({}, { push_assignment: 'yes' }), 'push_assignment'],
  ];
  test.each(LEGACY_BAD.map(([w, body, field]) => [w, field, body]))('%s → 400 details.field %s', async (_w, field, body) => {
    const r = await post(t, JSON.parse(JSON.stringify(body)));
    bad(r, field);
  });

  test('an invalid message.trace_id gets a fresh trace id, never the raw value', async () => {
    const r = await post(t, legacy({ trace_id: 'NOT-A-TRACE' }));
    bad(r, 'message.trace_id');
    expect(r.headers['x-trace-id']).toMatch(/^[0-9a-f]{32}$/);
  });

  test('message_id missing → request id from X-Request-ID', async () => {
    const id = uid();
    const r = await post(t, legacy({ message_id: undefined }), { headers: { 'X-Request-ID': id } });
    expect(r.status).toBe(200);
    expect(r.headers['x-request-id']).toBe(id);
  });

  test('message_id missing and no X-Request-ID → a generated UUIDv4', async () => {
    const r = await post(t, legacy({ message_id: undefined }));
    expect(r.status).toBe(200);
    expect(r.headers['x-request-id']).toMatch(UUID_V4);
  });

  test('a valid message.trace_id is used (lower-cased)', async () => {
    const tr = hex32();
    const r = await post(t, legacy({ trace_id: tr.toUpperCase() }));
    expect(r.status).toBe(200);
    expect(r.headers['x-trace-id']).toBe(tr);
  });

  test('a body whose message is not an object is canonical (so it needs task)', async () => {
    const r = await post(t, { version: '1', message: 'hello' });
    bad(r, 'task');
  });

  test('a body with both message{} and task is canonical', async () => {
    const r = await post(t, canonical({ message: { message_type: 'nonsense' } }));
    expect(r.status).toBe(200);
  });

  test.each(API_PATHS)('legacy bodies are accepted on %s', async (p) => {
    const r = await post(t, legacy(), { path: p });
    expect(r.status).toBe(200);
  });
});

describeRouterModes('[reference Router] what a legacy body becomes towards the Router', () => {
  test('message fields map to the canonical request; nothing is mirrored into message{}', async () => {
    const tn = tenant();
    const mid = uid('m');
    const tr = hex32();
    const { request, headers } = await echo(
      t,
      legacy(
        { message_id: mid, tenant_id: tn, message_type: 'Completion', payload: '{"prompt":"a/b","n":2}', trace_id: tr },
        { policy_id: 'default', constraints: { max_cost: 1 }, push_assignment: true },
      ),
      { tenantId: null },
    );
    expect(request).toEqual({
      version: '1',
      tenant_id: tn,
      request_id: mid,
      message_id: mid,
      trace_id: tr,
      task: { type: 'completion', payload: { prompt: 'a/b', n: 2 } },
      policy_id: 'default',
      context: { router_mode: 'echo' },
      constraints: { max_cost: 1 },
      push_assignment: true,
    });
    expect(headers).toEqual({ trace_id: tr, tenant_id: tn, request_id: mid, version: '1' });
  });

  test.each([
    ['plain text', 'hello there', { raw: 'hello there' }],
    ['a JSON array', '[1,2]', { raw: '[1,2]' }],
    ['a JSON string', '"x"', { raw: '"x"' }],
    ['an empty string', '', { raw: '' }],
  ])('message.payload text that is not a JSON object (%s) becomes {"raw": text}', async (_w, text, expected) => {
    const { request } = await echo(t, legacy({ payload: text }));
    expect(request.task.payload).toEqual(expected);
  });

  test('message.payload given as an object is taken as task.payload', async () => {
    const { request } = await echo(t, legacy({ payload: { q: 1 } }));
    expect(request.task.payload).toEqual({ q: 1 });
  });

  test('top-level metadata wins over message.metadata', async () => {
    const { request } = await echo(t, legacy({ metadata: { from: 'message' } }, { metadata: { from: 'top' } }));
    expect(request.metadata).toEqual({ from: 'top' });
    expect(request.message).toBeUndefined();
  });

  test('message.metadata alone is forwarded as metadata', async () => {
    const { request } = await echo(t, legacy({ metadata: { from: 'message' } }));
    expect(request.metadata).toEqual({ from: 'message' });
    expect(request.message).toBeUndefined();
  });

  test('legacy metadata.router_mode selects the Router mode too (metadata is forwarded)', async () => {
    const r = await post(t, legacy({}, { metadata: { router_mode: 'error:validator_blocked' } }));
    expect(r.status).toBe(403);
  });
});

describeRouterModes('[reference Router] numbers reach the Router exactly', () => {
  test('client numbers are forwarded without rounding (cjson alone would write 14 digits)', async () => {
    // The raw text of each value, in the form JSON.stringify writes it (the reference Router
    // re-serialises what it received with JSON.stringify, so its echo shows that form).
    const values = {
      id: '1234567890123456',
      ts: '1795665762407123',
      x: '3.141592653589793',
      p: '0.30000000000000004',
      big: '12345678901234567000',
      tiny: '1.2345678901234566e-7',
      neg: '-0.5',
      small: '0.1',
      n: '7',
    };
    const payload = Object.entries(values)
      .map(([k, v]) => `"${k}":${v}`)
      .join(',');
    const body = `{"version":"1","task":{"type":"chat","payload":{${payload},"list":[1795665762407123,3.141592653589793]}},"metadata":{"router_mode":"echo"}}`;
    const r = await post(t, body, { contentType: 'application/json' });
    expect(r.status).toBe(200);
    const request = r.json.decision.metadata.request;
    expect(request.task.payload.id).toBe(1234567890123456);
    expect(request.task.payload.ts).toBe(1795665762407123);
    expect(request.task.payload.x).toBe(3.141592653589793);
    expect(request.task.payload.list).toEqual([1795665762407123, 3.141592653589793]);
    // Compare the text too: a JS number hides differences beyond what it can hold.
    const echoed = r.body.slice(r.body.indexOf('"payload":{'));
    for (const [k, v] of Object.entries(values)) {
      const m = echoed.match(new RegExp(`"${k}":(-?[0-9.eE+-]+)`));
      expect([k, m && m[1]]).toEqual([k, v]);
    }
    expect(echoed).toContain('"list":[1795665762407123,3.141592653589793]');
  });
});
