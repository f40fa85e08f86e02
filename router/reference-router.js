#!/usr/bin/env node
'use strict';

/**
 * Reference Router responder for the Beamline HTTP gateway (CONTRACT.md §4).
 *
 * Answers NATS core request/reply on `beamline.router.v1.decide` (configurable) the way the
 * real Router does: minimal validation, weighted provider pick per policy, stickiness by
 * `context.user_id`, and the Router's success / error envelopes. For tests it also has
 * per-request "modes" (read from `metadata.router_mode` or `context.router_mode` of the
 * request) that force every error code, intake errors, delays, silence and malformed replies.
 * See docs/REFERENCE_ROUTER.md.
 *
 * Usable as a CLI (`node router/reference-router.js --nats nats://127.0.0.1:4222`) or
 * in-process (`const { startRouter } = require('./router/reference-router')`).
 */

const fs = require('fs');
const { connect, Events, DebugEvents } = require('nats');

const DEFAULT_SUBJECT = 'beamline.router.v1.decide';
/** The admin subjects (CONTRACT §12) are `<prefix>.<operation>`. */
const DEFAULT_ADMIN_PREFIX = 'beamline.router.v1.admin';
const DEFAULT_QUEUE = 'beamline-router';
const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** Router error codes of CONTRACT.md §4 with the message used when a mode forces them. */
const ERROR_MESSAGES = Object.freeze({
  invalid_request: 'Invalid request',
  unsupported_protocol_version: 'Unsupported protocol version',
  unauthorized: 'Unauthorized',
  validator_blocked: 'Request blocked by validator',
  policy_not_found: 'Policy not found',
  extension_not_found: 'Extension not found',
  rate_limit_exceeded: 'Rate limit exceeded',
  extension_unavailable: 'Extension unavailable',
  extension_timeout: 'Extension timed out',
  decision_failed: 'Decision failed',
  internal: 'Internal router error',
  post_processor_failed: 'Post-processor failed',
  extension_error: 'Extension error',
});

/** Intake error codes the Router can put in `error.intake_error_code`. */
const INTAKE_ERROR_CODES = Object.freeze([
  'SCHEMA_VALIDATION_FAILED',
  'VERSION_UNSUPPORTED',
  'CORRELATION_FIELDS_INVALID',
  'TENANT_FORBIDDEN',
  'IDEMPOTENCY_VIOLATION',
  'PAYLOAD_TOO_SMALL',
  'INTERNAL_VALIDATION_ERROR',
]);

/**
 * Built-in policies. `providers[].weight` drives the weighted pick; the other fields are
 * copied into the decision.
 */
const DEFAULT_POLICIES = Object.freeze({
  default_policy: 'default',
  policies: {
    default: {
      providers: [
        { id: 'openai', weight: 50, priority: 50, expected_latency_ms: 850, expected_cost: 0.002 },
        { id: 'anthropic', weight: 30, priority: 50, expected_latency_ms: 950, expected_cost: 0.003 },
        { id: 'local', weight: 20, priority: 10, expected_latency_ms: 120, expected_cost: 0 },
      ],
    },
    'cost-optimized': {
      providers: [
        { id: 'local', weight: 80, priority: 10, expected_latency_ms: 120, expected_cost: 0 },
        { id: 'openai', weight: 20, priority: 50, expected_latency_ms: 850, expected_cost: 0.002 },
      ],
    },
    'openai-only': {
      providers: [{ id: 'openai', weight: 1, priority: 50, expected_latency_ms: 850, expected_cost: 0.002 }],
    },
  },
});

/** The constant reply of `fast` mode / `--fast` (built once, sent as the same bytes). */
const FAST_REPLY_OBJECT = Object.freeze({
  ok: true,
  decision: {
    provider_id: 'openai',
    reason: 'fast',
    priority: 50,
    expected_latency_ms: 850,
    expected_cost: 0.002,
    metadata: {},
  },
  context: { request_id: 'fast', trace_id: 'fast' },
});
const FAST_REPLY = Buffer.from(JSON.stringify(FAST_REPLY_OBJECT));

const NON_JSON_REPLY = Buffer.from('<html>reference router: this reply is not JSON</html>\n');
const EMPTY_REPLY = new Uint8Array(0);

// ---------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} CompiledProvider
 * @property {string} id
 * @property {number} weight
 * @property {number} cumulative  upper bound (exclusive) of this provider in [0, total)
 * @property {number} priority
 * @property {number} expected_latency_ms
 * @property {number} expected_cost
 */

/**
 * @typedef {object} CompiledPolicy
 * @property {string} id
 * @property {CompiledProvider[]} providers
 * @property {number} total  sum of weights
 * @property {boolean} sticky
 */

/**
 * Normalises a policies document into `{ defaultPolicy, policies: Map<id, CompiledPolicy> }`.
 *
 * Accepted shapes (JSON file given with `--policies`):
 *  - `{ "default_policy": "default", "policies": { "<id>": { "providers": [...] } } }`
 *  - `{ "policies": [ { "id": "<id>", "providers": [...] } ] }`
 *  - `{ "<id>": { "providers": [...] } }` (a bare map)
 *  - `[ { "id": "<id>", "providers": [...] } ]`
 * A provider is `{ "id"|"provider_id", "weight", "priority"?, "expected_latency_ms"?,
 * "expected_cost"? }`; a policy may set `"sticky": false` to disable user stickiness.
 *
 * @param {any} doc
 * @returns {{ defaultPolicy: string, policies: Map<string, CompiledPolicy> }}
 */
function compilePolicies(doc) {
  let defaultPolicy = 'default';
  let entries;
  if (Array.isArray(doc)) {
    entries = doc.map((p) => [p && p.id, p]);
  } else if (doc && typeof doc === 'object') {
    if (typeof doc.default_policy === 'string') defaultPolicy = doc.default_policy;
    const src = doc.policies !== undefined ? doc.policies : doc;
    if (Array.isArray(src)) entries = src.map((p) => [p && (p.id || p.policy_id), p]);
    else if (src && typeof src === 'object') {
      entries = Object.entries(src).filter(([k]) => k !== 'default_policy');
    } else entries = [];
  } else {
    throw new Error('policies: expected a JSON object or array');
  }

  const policies = new Map();
  for (const [id, p] of entries) {
    if (typeof id !== 'string' || id === '') throw new Error('policies: every policy needs a string id');
    const list = p && Array.isArray(p.providers) ? p.providers : null;
    if (!list || list.length === 0) throw new Error(`policies: policy "${id}" needs a non-empty providers array`);
    let total = 0;
    const providers = list.map((pr, i) => {
      const pid = pr && (pr.id || pr.provider_id);
      if (typeof pid !== 'string' || pid === '') throw new Error(`policies: ${id}.providers[${i}] needs an id`);
      const weight = pr.weight === undefined ? 1 : Number(pr.weight);
      if (!Number.isFinite(weight) || weight < 0) throw new Error(`policies: ${id}.providers[${i}].weight must be >= 0`);
      total += weight;
      return {
        id: pid,
        weight,
        cumulative: total,
        priority: pr.priority === undefined ? 50 : Number(pr.priority),
        expected_latency_ms: pr.expected_latency_ms === undefined ? 500 : Number(pr.expected_latency_ms),
        expected_cost: pr.expected_cost === undefined ? 0 : Number(pr.expected_cost),
      };
    });
    if (!(total > 0)) throw new Error(`policies: policy "${id}" has a total weight of 0`);
    policies.set(id, { id, providers, total, sticky: !(p && p.sticky === false) });
  }
  if (!policies.has(defaultPolicy)) {
    throw new Error(`policies: default policy "${defaultPolicy}" is not defined`);
  }
  return { defaultPolicy, policies };
}

/**
 * FNV-1a 32-bit hash of a string (stable across processes and runs).
 * @param {string} s
 * @returns {number} unsigned 32-bit integer
 */
function fnv1a32(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // final avalanche (murmur3 fmix32) so that similar keys spread well over small ranges
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Weighted pick: `point` is a number in [0, policy.total).
 * @param {CompiledPolicy} policy
 * @param {number} point
 * @returns {CompiledProvider}
 */
function pickAt(policy, point) {
  const ps = policy.providers;
  for (let i = 0; i < ps.length; i++) {
    if (point < ps[i].cumulative) return ps[i];
  }
  return ps[ps.length - 1];
}

/**
 * Chooses a provider. Sticky (same `context.user_id` → same provider for a policy) when the
 * request carries a user id and the policy is sticky; a random weighted pick otherwise.
 * The sticky pick is also weighted: users spread over providers in the weight proportions.
 *
 * @param {CompiledPolicy} policy
 * @param {string|undefined} userId
 * @returns {{ provider: CompiledProvider, reason: string }}
 */
function choose(policy, userId) {
  if (policy.sticky && typeof userId === 'string' && userId !== '') {
    const point = (fnv1a32(`${policy.id}\u0000${userId}`) / 4294967296) * policy.total;
    return { provider: pickAt(policy, point), reason: 'sticky' };
  }
  return { provider: pickAt(policy, Math.random() * policy.total), reason: 'weighted' };
}

// ---------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------

/**
 * @param {any} req  parsed request (may be anything)
 * @param {Record<string,string>|null} hdrs  request headers (first value per name) or null
 * @returns {{ request_id: any, trace_id?: any }}
 */
function replyContext(req, hdrs) {
  const obj = req && typeof req === 'object' && !Array.isArray(req) ? req : {};
  const ctx = {
    request_id: typeof obj.request_id === 'string' ? obj.request_id : (hdrs && hdrs.request_id) || null,
  };
  const traceId = typeof obj.trace_id === 'string' ? obj.trace_id : hdrs && hdrs.trace_id;
  if (traceId) ctx.trace_id = traceId;
  return ctx;
}

/**
 * Builds an `ok:false` reply.
 * @param {string} code
 * @param {string} message
 * @param {object} ctx
 * @param {{details?: object, intake?: string|null, omitOptional?: boolean}} [opt]
 * @returns {Buffer}
 */
function errorReply(code, message, ctx, opt = {}) {
  const error = { code, message };
  if (!opt.omitOptional) {
    error.details = opt.details || {};
    error.intake_error_code = opt.intake || null;
  }
  return Buffer.from(JSON.stringify({ ok: false, error, context: ctx }));
}

/**
 * Headers of a NATS message as a plain object: name → value (string), or name → string[]
 * when a header occurs more than once. Names are kept exactly as sent.
 * @param {import('nats').MsgHdrs|undefined} h
 * @returns {Record<string, string|string[]>}
 */
function headersToObject(h) {
  const out = {};
  if (!h) return out;
  for (const [k, vs] of h) out[k] = vs.length === 1 ? vs[0] : vs.slice();
  return out;
}

/**
 * First value of a few correlation headers, for the reply context when the body lacks them.
 * @param {import('nats').MsgHdrs|undefined} h
 */
function correlationHeaders(h) {
  if (!h) return null;
  return { request_id: h.get('request_id') || undefined, trace_id: h.get('trace_id') || undefined };
}

/**
 * Validates the fields the Router insists on. Returns the path of the first bad field or null.
 * @param {any} req
 * @returns {string|null}
 */
function firstInvalidField(req) {
  if (!req || typeof req !== 'object' || Array.isArray(req)) return '';
  if (req.version !== '1') return 'version';
  if (typeof req.tenant_id !== 'string' || req.tenant_id === '') return 'tenant_id';
  if (typeof req.request_id !== 'string' || req.request_id === '') return 'request_id';
  if (!req.task || typeof req.task !== 'object' || Array.isArray(req.task)) return 'task';
  if (typeof req.task.type !== 'string' || req.task.type === '') return 'task.type';
  return null;
}

/**
 * Reads the router mode of a request: `metadata.router_mode`, then `context.router_mode`.
 * @param {any} req
 * @returns {string|null}
 */
function requestMode(req) {
  if (!req || typeof req !== 'object') return null;
  const m = req.metadata;
  if (m && typeof m === 'object' && typeof m.router_mode === 'string' && m.router_mode !== '') return m.router_mode;
  const c = req.context;
  if (c && typeof c === 'object' && typeof c.router_mode === 'string' && c.router_mode !== '') return c.router_mode;
  return null;
}

/**
 * A mode split into `name` and `arg` (`error:<code>` → error, <code>), with `reply`: the reply of
 * the modes decide and the admin operations answer alike (`error:<code>`,
 * `error_no_details:<code>`, `non_json`, `empty`, `malformed_error`), undefined for the others.
 */
function commonMode(mode, ctx) {
  const colon = mode.indexOf(':');
  const name = colon === -1 ? mode : mode.slice(0, colon);
  const arg = colon === -1 ? '' : mode.slice(colon + 1);
  return { name, arg, reply: commonModeReply(name, arg, mode, ctx) };
}

function commonModeReply(name, arg, mode, ctx) {
  switch (name) {
    case 'error': {
      const code = arg || 'internal';
      return errorReply(code, ERROR_MESSAGES[code] || `Router error: ${code}`, ctx, {
        details: { router_mode: mode },
        intake: code === 'invalid_request' ? 'SCHEMA_VALIDATION_FAILED' : null,
      });
    }
    case 'error_no_details': {
      const code = arg || 'internal';
      return errorReply(code, ERROR_MESSAGES[code] || `Router error: ${code}`, ctx, { omitOptional: true });
    }
    case 'non_json':
      return NON_JSON_REPLY;
    case 'empty':
      return EMPTY_REPLY;
    case 'malformed_error':
      return Buffer.from(JSON.stringify({ ok: false, error: 'decision_failed: error is not an object', context: ctx }));
    default:
      return undefined;
  }
}

/** Every mode name (the part before ':'), for `--mode` validation and the docs. */
const MODE_NAMES = Object.freeze([
  'normal',
  'error',
  'error_no_details',
  'intake',
  'delay',
  'silence',
  'non_json',
  'empty',
  'no_ok',
  'string_ok',
  'json_array',
  'malformed_error',
  'echo',
  'fast',
]);

/**
 * Creates the message handler. Pure logic apart from timers; `respond(buf)` sends a reply.
 *
 * @param {{ policies: ReturnType<typeof compilePolicies>, defaultMode?: string|null }} cfg
 * @returns {(data: Uint8Array, headers: import('nats').MsgHdrs|undefined, meta: {subject: string, reply: string}, respond: (b: Uint8Array) => void) => void}
 */
function createHandler(cfg) {
  const { policies } = cfg;
  const defaultMode = cfg.defaultMode && cfg.defaultMode !== 'normal' ? cfg.defaultMode : null;

  /** Normal decision for a validated request. */
  function decide(req, ctx) {
    const policyId = typeof req.policy_id === 'string' && req.policy_id !== '' ? req.policy_id : policies.defaultPolicy;
    const policy = policies.policies.get(policyId);
    if (!policy) {
      return errorReply('policy_not_found', `Policy not found: ${policyId}`, ctx, {
        details: { policy_id: policyId },
      });
    }
    const c = req.context;
    const userId = c && typeof c === 'object' ? c.user_id : undefined;
    const { provider, reason } = choose(policy, typeof userId === 'string' ? userId : undefined);
    return Buffer.from(
      JSON.stringify({
        ok: true,
        decision: {
          provider_id: provider.id,
          reason,
          priority: provider.priority,
          expected_latency_ms: provider.expected_latency_ms,
          expected_cost: provider.expected_cost,
          metadata: { policy_id: policy.id },
        },
        context: ctx,
      }),
    );
  }

  function validatedDecide(req, ctx) {
    const bad = firstInvalidField(req);
    if (bad !== null) {
      return errorReply('invalid_request', bad ? `Invalid or missing field: ${bad}` : 'Request must be a JSON object', ctx, {
        details: { field: bad },
        intake: 'SCHEMA_VALIDATION_FAILED',
      });
    }
    return decide(req, ctx);
  }

  return function handle(data, headers, meta, respond) {
    let req;
    try {
      req = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
    } catch (e) {
      respond(
        errorReply('invalid_request', 'Request body is not valid JSON', replyContext(null, correlationHeaders(headers)), {
          details: { field: '' },
          intake: 'SCHEMA_VALIDATION_FAILED',
        }),
      );
      return;
    }
    const mode = requestMode(req) || defaultMode;
    if (mode === null || mode === 'normal') {
      respond(validatedDecide(req, replyContext(req, correlationHeaders(headers))));
      return;
    }
    if (mode === 'fast') {
      respond(FAST_REPLY);
      return;
    }
    const ctx = replyContext(req, correlationHeaders(headers));
    const { name, arg, reply: common } = commonMode(mode, ctx);
    if (common !== undefined) return respond(common);
    switch (name) {
      case 'silence':
        return; // never answer
      case 'intake': {
        const intake = arg || 'SCHEMA_VALIDATION_FAILED';
        respond(
          errorReply('invalid_request', `Intake validation failed: ${intake}`, ctx, {
            details: { router_mode: mode },
            intake,
          }),
        );
        return;
      }
      case 'delay': {
        const ms = Number(arg);
        if (!(ms >= 0) || !Number.isFinite(ms)) {
          respond(
            errorReply('invalid_request', `Bad router_mode delay value: ${arg}`, ctx, {
              details: { field: 'metadata.router_mode' },
              intake: 'SCHEMA_VALIDATION_FAILED',
            }),
          );
          return;
        }
        const reply = validatedDecide(req, ctx);
        setTimeout(() => respond(reply), ms);
        return;
      }
      case 'no_ok':
        respond(Buffer.from(JSON.stringify({ decision: { provider_id: 'openai' }, context: ctx })));
        return;
      case 'string_ok':
        respond(Buffer.from(JSON.stringify({ ok: 'true', decision: { provider_id: 'openai' }, context: ctx })));
        return;
      case 'json_array':
        respond(Buffer.from(JSON.stringify([{ ok: true }])));
        return;
      case 'echo':
        respond(
          Buffer.from(
            JSON.stringify({
              ok: true,
              decision: {
                provider_id: 'echo',
                reason: 'echo',
                priority: 0,
                expected_latency_ms: 0,
                expected_cost: 0,
                metadata: {
                  request: req,
                  headers: headersToObject(headers),
                  subject: meta.subject,
                  reply: meta.reply,
                },
              },
              context: ctx,
            }),
          ),
        );
        return;
      default:
        respond(
          errorReply('invalid_request', `Unknown router_mode: ${mode}`, ctx, {
            details: { field: 'metadata.router_mode', router_mode: mode },
            intake: 'SCHEMA_VALIDATION_FAILED',
          }),
        );
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Admin subjects (CONTRACT §12)
// ---------------------------------------------------------------------------------------------

/** The admin operations the reference Router answers (`<admin prefix>.<operation>`). */
const ADMIN_OPERATIONS = Object.freeze([
  'get_extension_health',
  'get_circuit_breaker_states',
  'dry_run_pipeline',
  'get_pipeline_complexity',
]);

/** The extensions the reference Router pretends to run (for health and circuit breakers). */
const EXTENSIONS = Object.freeze([
  { id: 'pii-validator', type: 'validator', status: 'healthy', success_rate: 0.998, p95_latency_ms: 12, state: 'closed', failures: 0 },
  { id: 'cost-estimator', type: 'pre_processor', status: 'healthy', success_rate: 1, p95_latency_ms: 4, state: 'closed', failures: 0 },
  { id: 'audit-log', type: 'post_processor', status: 'degraded', success_rate: 0.91, p95_latency_ms: 140, state: 'half_open', failures: 3 },
]);

/**
 * The mode of an admin request: `metadata.router_mode` / `context.router_mode` of the body (a
 * dry run), else the tenant when it is `router_mode:<mode>` (GET routes have no body, and the
 * gateway sends the tenant as the NATS header `tenant_id`). Same modes as decide.
 */
function adminMode(req, hdrs) {
  const m = requestMode(req);
  if (m) return m;
  const t = hdrs && hdrs.get('tenant_id');
  return t && t.startsWith('router_mode:') ? t.slice('router_mode:'.length) : null;
}

/**
 * Creates the admin handler: plausible documents for the four operations and, per request, the
 * decide modes (error:<code>, delay:<ms>, silence, non_json, empty, malformed_error, echo…).
 * @param {{ policies: ReturnType<typeof compilePolicies>, prefix: string }} cfg
 */
function createAdminHandler(cfg) {
  const { policies } = cfg;
  const now = () => new Date().toISOString();

  function policyOr404(id, ctx) {
    const policy = policies.policies.get(id);
    if (policy) return { policy };
    return { reply: errorReply('policy_not_found', `Policy not found: ${id}`, ctx, { details: { policy_id: id } }) };
  }

  /** The document of an operation (a Buffer), or an ok:false reply. */
  function answer(op, req, ctx, hdrs) {
    switch (op) {
      case 'get_extension_health':
        return {
          extensions: EXTENSIONS.map((e) => ({
            id: e.id,
            type: e.type,
            status: e.status,
            success_rate: e.success_rate,
            p95_latency_ms: e.p95_latency_ms,
            last_check: now(),
          })),
          checked_at: now(),
        };
      case 'get_circuit_breaker_states':
        return {
          circuit_breakers: EXTENSIONS.map((e) => ({
            extension_id: e.id,
            state: e.state,
            failure_count: e.failures,
            failure_threshold: 5,
            open_timeout_ms: 30000,
          })),
          checked_at: now(),
        };
      case 'dry_run_pipeline': {
        if (!req || typeof req !== 'object' || Array.isArray(req)) {
          return errorReply('invalid_request', 'Dry-run request must be a JSON object', ctx, { details: { field: '' } });
        }
        if (req.policy_id !== undefined && typeof req.policy_id !== 'string') {
          return errorReply('invalid_request', 'policy_id must be a string', ctx, { details: { field: 'policy_id' } });
        }
        const id = req.policy_id || policies.defaultPolicy;
        const { policy, reply } = policyOr404(id, ctx);
        if (reply) return reply;
        const c = req.context;
        const userId = c && typeof c === 'object' && typeof c.user_id === 'string' ? c.user_id : undefined;
        const { provider, reason } = choose(policy, userId);
        return {
          dry_run: true,
          policy_id: policy.id,
          steps: [
            ...EXTENSIONS.filter((e) => e.type !== 'post_processor').map((e) => ({ extension_id: e.id, type: e.type, outcome: 'passed' })),
            { step: 'provider_selection', outcome: 'selected', provider_id: provider.id, reason },
          ],
          decision: {
            provider_id: provider.id,
            reason,
            priority: provider.priority,
            expected_latency_ms: provider.expected_latency_ms,
            expected_cost: provider.expected_cost,
          },
        };
      }
      case 'get_pipeline_complexity': {
        const id = req && typeof req.policy_id === 'string' ? req.policy_id : '';
        const tenant = req && typeof req.tenant_id === 'string' ? req.tenant_id : hdrs && hdrs.get('tenant_id');
        const { policy, reply } = policyOr404(id, ctx);
        if (reply) return reply;
        const score = policy.providers.length * 2 + EXTENSIONS.length;
        return {
          tenant_id: tenant,
          policy_id: policy.id,
          complexity: {
            providers: policy.providers.length,
            extensions: EXTENSIONS.length,
            sticky: policy.sticky,
            score,
            level: score <= 6 ? 'low' : score <= 10 ? 'medium' : 'high',
          },
        };
      }
      default:
        return errorReply('invalid_request', `Unknown admin operation: ${op}`, ctx, { details: { field: 'subject' } });
    }
  }

  const encode = (doc) => (Buffer.isBuffer(doc) ? doc : Buffer.from(JSON.stringify(doc)));

  return function handleAdmin(data, headers, meta, respond) {
    const op = meta.subject.slice(cfg.prefix.length + 1);
    const ctx = replyContext(null, correlationHeaders(headers));
    let req;
    try {
      req = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
    } catch (e) {
      respond(errorReply('invalid_request', 'Request body is not valid JSON', ctx, { details: { field: '' } }));
      return;
    }
    const mode = adminMode(req, headers);
    if (mode === null || mode === 'normal') {
      respond(encode(answer(op, req, ctx, headers)));
      return;
    }
    const { name, arg, reply: common } = commonMode(mode, ctx);
    if (common !== undefined) return respond(common);
    switch (name) {
      case 'silence':
        return;
      case 'delay': {
        const reply = encode(answer(op, req, ctx, headers));
        setTimeout(() => respond(reply), Number(arg) >= 0 ? Number(arg) : 0);
        return;
      }
      case 'json_array':
        respond(Buffer.from(JSON.stringify([{ id: 'pii-validator' }])));
        return;
      case 'echo':
        respond(encode({ request: req, headers: headersToObject(headers), subject: meta.subject }));
        return;
      default:
        respond(errorReply('invalid_request', `Unknown router_mode: ${mode}`, ctx, { details: { router_mode: mode } }));
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Process / connection
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} RouterOptions
 * @property {string|string[]} [servers]  NATS URL(s); a comma-separated string is split.
 *   Alias: `natsUrl`. Default: env NATS_URL, then nats://127.0.0.1:4222.
 * @property {string} [natsUrl]
 * @property {string} [subject]  default env ROUTER_DECIDE_SUBJECT, then beamline.router.v1.decide
 * @property {string} [queue]  queue group; '' for none. Default beamline-router
 * @property {string|object} [policies]  path of a JSON file or a policies object
 * @property {string} [mode]  default mode for requests that do not pick one
 * @property {boolean} [fast]  answer every request with the precomputed fast reply, unparsed
 * @property {'callback'|'iterator'} [subscription]  subscription style (default callback)
 * @property {(line: string) => void} [log]  stdout logger (default: none in-process)
 * @property {(line: string) => void} [logError]  diagnostics logger (default: none in-process)
 * @property {number} [reconnectTimeWait]  ms, default 250
 * @property {string} [name]  NATS connection name
 */

/**
 * @typedef {object} RouterHandle
 * @property {import('nats').NatsConnection} nc
 * @property {string} subject
 * @property {string} server  the server the router is connected to at start
 * @property {() => Promise<void>} close  drains the subscription and the connection
 * @property {Promise<void|Error>} closed  resolves when the connection is closed
 */

/**
 * Connects to NATS and starts answering decide requests.
 * @param {RouterOptions} [opts]
 * @returns {Promise<RouterHandle>}
 */
async function startRouter(opts = {}) {
  const log = opts.log || (() => {});
  const logError = opts.logError || (() => {});
  let servers = opts.servers || opts.natsUrl || process.env.NATS_URL || DEFAULT_NATS_URL;
  if (typeof servers === 'string')
    servers = servers
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  const subject = opts.subject || process.env.ROUTER_DECIDE_SUBJECT || DEFAULT_SUBJECT;
  const queue = opts.queue === undefined ? DEFAULT_QUEUE : opts.queue;

  let policyDoc = DEFAULT_POLICIES;
  if (typeof opts.policies === 'string') policyDoc = JSON.parse(fs.readFileSync(opts.policies, 'utf8'));
  else if (opts.policies && typeof opts.policies === 'object') policyDoc = opts.policies;
  const policies = compilePolicies(policyDoc);

  if (opts.mode) {
    const name = opts.mode.split(':')[0];
    if (!MODE_NAMES.includes(name)) throw new Error(`unknown mode: ${opts.mode}`);
  }
  const handle = createHandler({ policies, defaultMode: opts.mode || null });

  const nc = await connect({
    servers,
    name: opts.name || 'beamline-reference-router',
    maxReconnectAttempts: -1,
    reconnectTimeWait: opts.reconnectTimeWait === undefined ? 250 : opts.reconnectTimeWait,
    reconnectJitter: 50,
    waitOnFirstConnect: true,
    pingInterval: 10000,
  });

  (async () => {
    for await (const s of nc.status()) {
      if (s.type === Events.Disconnect || s.type === Events.Reconnect || s.type === Events.Error) {
        logError(`reference router: nats ${s.type} ${typeof s.data === 'string' ? s.data : JSON.stringify(s.data)}`);
      } else if (s.type === DebugEvents.Reconnecting) {
        // noisy while the server is down; skip
      }
    }
  })().catch(() => {});

  const subOpts = queue ? { queue } : {};
  const style = opts.subscription || 'callback';
  let sub;
  if (opts.fast) {
    if (style === 'iterator') {
      sub = nc.subscribe(subject, subOpts);
      (async () => {
        for await (const m of sub) m.respond(FAST_REPLY);
      })().catch(() => {});
    } else {
      sub = nc.subscribe(subject, {
        ...subOpts,
        callback: (err, m) => {
          if (!err) m.respond(FAST_REPLY);
        },
      });
    }
  } else {
    const onMsg = (m) => {
      const respond = (buf) => {
        m.respond(buf);
      };
      try {
        handle(m.data, m.headers, { subject: m.subject, reply: m.reply }, respond);
      } catch (e) {
        logError(`reference router: handler failed: ${e && e.stack ? e.stack : e}`);
        m.respond(errorReply('internal', 'Reference router handler failed', { request_id: null }, { details: {} }));
      }
    };
    if (style === 'iterator') {
      sub = nc.subscribe(subject, subOpts);
      (async () => {
        for await (const m of sub) onMsg(m);
      })().catch(() => {});
    } else {
      sub = nc.subscribe(subject, {
        ...subOpts,
        callback: (err, m) => {
          if (!err) onMsg(m);
        },
      });
    }
  }
  // The admin operations (§12), on every style: they are not on the benchmark's hot path.
  const adminPrefix = opts.adminPrefix || DEFAULT_ADMIN_PREFIX;
  const handleAdmin = createAdminHandler({ policies, prefix: adminPrefix });
  const adminSub = nc.subscribe(`${adminPrefix}.*`, {
    ...subOpts,
    callback: (err, m) => {
      if (err) return;
      try {
        handleAdmin(m.data, m.headers, { subject: m.subject, reply: m.reply }, (buf) => m.respond(buf));
      } catch (e) {
        logError(`reference router: admin handler failed: ${e && e.stack ? e.stack : e}`);
        m.respond(errorReply('internal', 'Reference router handler failed', { request_id: null }, { details: {} }));
      }
    },
  });
  await nc.flush();
  const server = nc.getServer();
  log(`reference router listening on ${subject} via ${server}`);
  log(`reference router answering the admin operations on ${adminPrefix}.* (${ADMIN_OPERATIONS.join(', ')})`);

  let closing = null;
  return {
    nc,
    subject,
    adminPrefix,
    adminSub,
    server,
    closed: nc.closed(),
    close() {
      if (!closing) {
        closing = (async () => {
          if (nc.isClosed()) return;
          try {
            await nc.drain();
          } catch (e) {
            if (!nc.isClosed()) await nc.close();
          }
        })();
      }
      return closing;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

const USAGE = `usage: node router/reference-router.js [options]
  --nats URL[,URL...]   NATS server(s)              (env NATS_URL, default ${DEFAULT_NATS_URL})
  --subject SUBJECT     decide subject              (env ROUTER_DECIDE_SUBJECT, default ${DEFAULT_SUBJECT})
  --admin-prefix P      admin subjects P.<operation> (default ${DEFAULT_ADMIN_PREFIX}): ${ADMIN_OPERATIONS.join(', ')}
  --queue NAME          queue group, '' for none    (default ${DEFAULT_QUEUE})
  --policies FILE       policies JSON (default: built-in default/cost-optimized/openai-only)
  --mode MODE           default mode for requests without metadata.router_mode / context.router_mode
  --fast                answer every request with the precomputed fast reply (no parsing)
  --subscription STYLE  callback (default) | iterator
  -h, --help            this help
modes: normal, error:<code>, error_no_details:<code>, intake:<INTAKE_CODE>, delay:<ms>, silence,
       non_json, empty, no_ok, string_ok, json_array, malformed_error, echo, fast
see docs/REFERENCE_ROUTER.md`;

/**
 * Parses CLI arguments (`--flag value` and `--flag=value`).
 * @param {string[]} argv
 * @returns {RouterOptions & {help?: boolean}}
 */
function parseArgs(argv) {
  const out = {};
  const takesValue = {
    '--nats': 'servers',
    '--subject': 'subject',
    '--admin-prefix': 'adminPrefix',
    '--queue': 'queue',
    '--policies': 'policies',
    '--mode': 'mode',
    '--subscription': 'subscription',
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq !== -1) {
      v = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    if (a === '-h' || a === '--help') out.help = true;
    else if (a === '--fast') out.fast = true;
    else if (takesValue[a]) {
      if (v === undefined) {
        if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
        v = argv[++i];
      }
      out[takesValue[a]] = v;
    } else throw new Error(`unknown argument: ${a}`);
  }
  return out;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${e.message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let router = null;
  let stopping = false;
  const stop = async (sig) => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(0), 5000);
    force.unref();
    try {
      if (router) await router.close();
    } catch (e) {
      process.stderr.write(`reference router: drain on ${sig} failed: ${e.message}\n`);
    }
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    router = await startRouter({
      ...args,
      log: (l) => process.stdout.write(`${l}\n`),
      logError: (l) => process.stderr.write(`${l}\n`),
    });
  } catch (e) {
    if (stopping) return;
    process.stderr.write(`reference router: ${e && e.message ? e.message : e}\n`);
    process.exit(1);
  }
  if (stopping) {
    await router.close();
    process.exit(0);
  }
  router.closed.then((err) => {
    if (stopping) return;
    process.stderr.write(`reference router: connection closed${err ? `: ${err.message}` : ''}\n`);
    process.exit(1);
  });
}

module.exports = {
  startRouter,
  createHandler,
  createAdminHandler,
  compilePolicies,
  parseArgs,
  fnv1a32,
  DEFAULT_POLICIES,
  DEFAULT_SUBJECT,
  DEFAULT_ADMIN_PREFIX,
  ADMIN_OPERATIONS,
  DEFAULT_QUEUE,
  ERROR_MESSAGES,
  INTAKE_ERROR_CODES,
  MODE_NAMES,
  FAST_REPLY_OBJECT,
};

if (require.main === module) {
  main();
}
