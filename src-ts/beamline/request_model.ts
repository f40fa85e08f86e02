/**
 * beamline.request_model — validation and normalisation of decide bodies (CONTRACT §3, §10) and
 * the Router request built from them (§4). No ngx: plain data in, plain data out (ids are
 * generated through beamline.ids when the client sent none).
 *
 * Decisions not spelled out by the contract:
 * - JSON `null` is a value of the wrong type, never "absent" (`"trace_id": null` → 400).
 * - `task.type` and `task.payload_ref` must be non-empty strings.
 * - When both `task.payload` and `task.payload_ref` are valid, both are forwarded.
 * - Legacy bodies: only the fields listed in §3 are read (top-level `version`, `trace_id`,
 *   `request_id`... are ignored); `message.message_id` follows the request-id rule (1-128
 *   printable ASCII, no spaces) because it becomes `request_id`.
 */
import ids = require("./ids");
import json = require("./json");

const lower = string.lower;
const type_ = type;
// Localised: called many times per request.
const is_object = json.is_object;
const json_decode = json.decode;
const json_encode = json.encode;
const valid_tenant_id = ids.valid_tenant_id;
const valid_request_id = ids.valid_request_id;
const valid_tracestate = ids.valid_tracestate;
const normalize_trace_id = ids.normalize_trace_id;
const parse_traceparent = ids.parse_traceparent;
const new_trace_id = ids.new_trace_id;
const uuid4 = ids.uuid4;

/** Header values as read by the handler (`util.get_header`); nil when absent. */
export interface DecideHeaders {
    tenant_id?: string;
    trace_id?: string;
    request_id?: string;
    traceparent?: string;
    tracestate?: string;
    /**
     * Ids generated for this request where the client sent none, minted on first use and kept
     * here, so every error context, header, log line and NATS header of one request carries the
     * same ids however often they are asked for (one DecideHeaders per request).
     */
    generated_request_id?: string;
    generated_trace_id?: string;
}

/** This request's generated request id (the same one on every call for `hdr`). */
export function generated_request_id(hdr: DecideHeaders): string {
    let id = hdr.generated_request_id;
    if (id === undefined) {
        id = uuid4();
        hdr.generated_request_id = id;
    }
    return id;
}

/** This request's generated trace id (the same one on every call for `hdr`). */
export function generated_trace_id(hdr: DecideHeaders): string {
    let id = hdr.generated_trace_id;
    if (id === undefined) {
        id = new_trace_id();
        hdr.generated_trace_id = id;
    }
    return id;
}

export interface DecideErrorContext {
    request_id: string;
    trace_id: string;
    tenant_id: string;
}

/** A 400 ready for `util.error_response(e.status, e.code, e.message, e.details, e.context)`. */
export interface DecideError {
    status: 400;
    code: "invalid_request";
    message: string;
    /** `{field: path}` for body fields, `{header: name}` for headers, `{}` for a non-object body. */
    details: { field?: string; header?: string };
    /** Best-known ids for the error body and X-Trace-Id/X-Request-Id; a trace error gets a fresh id. */
    context: DecideErrorContext;
}

export type JsonObject = { [key: string]: unknown };

export interface NormalizedDecide {
    legacy: boolean;
    tenant_id: string;
    /** Effective request id: body (or legacy message.message_id), else X-Request-ID, else a UUIDv4. */
    request_id: string;
    /** Effective trace id (lower case): X-Trace-ID, else body, else traceparent, else generated. */
    trace_id: string;
    task_type: string;
    task_payload?: JsonObject;
    task_payload_ref?: string;
    run_id?: string;
    flow_id?: string;
    step_id?: string;
    policy_id?: string;
    idempotency_key?: string;
    message_id?: string;
    message_type?: string;
    payload?: JsonObject;
    metadata?: JsonObject;
    context?: JsonObject;
    constraints?: JsonObject;
    push_assignment?: boolean;
    /** The client's traceparent, only when valid (forwarded verbatim). */
    traceparent?: string;
    /** Only when valid and traceparent is valid. */
    tracestate?: string;
    /** Canonical body that sent message_id / message_type / payload / metadata: mirror as message{}. */
    mirror: boolean;
}

const OPTIONAL_STRINGS = ["run_id", "flow_id", "step_id", "policy_id", "idempotency_key", "message_id", "message_type"];
const OPTIONAL_OBJECTS = ["payload", "metadata", "context", "constraints"];
const MIRRORED = ["message_id", "message_type", "payload", "metadata"];
const FORWARDED = [
    "run_id",
    "flow_id",
    "step_id",
    "policy_id",
    "idempotency_key",
    "message_id",
    "message_type",
    "payload",
    "metadata",
    "context",
    "constraints",
    "push_assignment",
];
const LEGACY_TYPES: { [t: string]: boolean } = { chat: true, completion: true, embedding: true };
const TENANT_RULE = "1-128 characters of [A-Za-z0-9._:-]";
const REQUEST_ID_RULE = "1-128 printable ASCII characters without spaces";
const TRACE_RULE = "32 hex characters or a UUID";

/** True when the body uses the legacy Nest shape: an object `message` and no `task`. */
function is_legacy(body: JsonObject): boolean {
    return body["task"] === undefined && is_object(body["message"]);
}

function str_or_nil(v: unknown): string | undefined {
    return type_(v) === "string" ? (v as string) : undefined;
}

/**
 * Best-known ids for an error body and the X-Trace-Id / X-Request-Id headers; never echoes an
 * invalid value (a fresh trace id when `fresh_trace`, as after an invalid trace id).
 */
function error_context(body: unknown, hdr: DecideHeaders, fresh_trace: boolean): DecideErrorContext {
    const b = is_object(body) ? (body as JsonObject) : undefined;
    const m = b !== undefined && is_legacy(b) ? (b["message"] as JsonObject) : undefined;
    let tenant = valid_tenant_id(hdr.tenant_id) ? hdr.tenant_id : undefined;
    if (tenant === undefined && m !== undefined && valid_tenant_id(m["tenant_id"])) {
        tenant = m["tenant_id"] as string;
    }
    let trace: string | undefined;
    if (!fresh_trace) {
        trace = normalize_trace_id(hdr.trace_id);
        if (trace === undefined && b !== undefined) {
            trace = normalize_trace_id(m !== undefined ? m["trace_id"] : b["trace_id"]);
        }
        if (trace === undefined) {
            trace = parse_traceparent(hdr.traceparent);
        }
    }
    let request: string | undefined;
    if (b !== undefined) {
        const r = m !== undefined ? m["message_id"] : b["request_id"];
        if (valid_request_id(r)) {
            request = r as string;
        }
    }
    if (request === undefined && valid_request_id(hdr.request_id)) {
        request = hdr.request_id;
    }
    return {
        request_id: request !== undefined ? request : generated_request_id(hdr),
        trace_id: trace !== undefined ? trace : generated_trace_id(hdr),
        tenant_id: tenant !== undefined ? tenant : "",
    };
}

/** The 400 `invalid_request` of CONTRACT §5 with `details` (the field or header at fault). */
function invalid_request(
    body: unknown,
    hdr: DecideHeaders,
    details: { [key: string]: string },
    message: string,
    trace_error: boolean | undefined,
): LuaMultiReturn<[undefined, DecideError]> {
    return $multi(undefined, {
        status: 400,
        code: "invalid_request",
        message,
        details,
        context: error_context(body, hdr, trace_error === true),
    });
}

function field_error(
    body: unknown,
    hdr: DecideHeaders,
    field: string,
    message: string,
    trace_error?: boolean,
): LuaMultiReturn<[undefined, DecideError]> {
    return invalid_request(body, hdr, { field }, message, trace_error);
}

function header_error(
    body: unknown,
    hdr: DecideHeaders,
    header: string,
    message: string,
    trace_error?: boolean,
): LuaMultiReturn<[undefined, DecideError]> {
    return invalid_request(body, hdr, { header }, message, trace_error);
}

/**
 * The request's tenant, CONTRACT §2/§10: X-Tenant-ID when sent (validated), else a legacy
 * body's `message.tenant_id`. Returns `tenant, nil` or `nil, DecideError` ("missing X-Tenant-ID
 * header" with details.header when there is none). Call it before the rate limit; a mismatch
 * between header and body is reported later by `validate_decide`.
 */
function effective_tenant(body: unknown, hdr: DecideHeaders): LuaMultiReturn<[string, undefined] | [undefined, DecideError]> {
    const h = hdr.tenant_id;
    if (h !== undefined) {
        if (!valid_tenant_id(h)) {
            return header_error(body, hdr, "X-Tenant-ID", "invalid X-Tenant-ID header: must be " + TENANT_RULE);
        }
        return $multi(h, undefined);
    }
    if (is_object(body) && is_legacy(body as JsonObject)) {
        const t = ((body as JsonObject)["message"] as JsonObject)["tenant_id"];
        if (t !== undefined) {
            if (!valid_tenant_id(t)) {
                return field_error(body, hdr, "message.tenant_id", "message.tenant_id must be " + TENANT_RULE);
            }
            return $multi(t as string, undefined);
        }
    }
    return header_error(body, hdr, "X-Tenant-ID", "missing X-Tenant-ID header");
}

/**
 * Header checks shared by both shapes, in §2 order (X-Tenant-ID when present, X-Trace-ID,
 * X-Request-ID): `nil, DecideError` or `nil, nil`. The handler runs them before the rate limit.
 */
function check_headers(body: unknown, hdr: DecideHeaders): LuaMultiReturn<[undefined, DecideError] | [undefined, undefined]> {
    if (hdr.tenant_id !== undefined && !valid_tenant_id(hdr.tenant_id)) {
        return header_error(body, hdr, "X-Tenant-ID", "invalid X-Tenant-ID header: must be " + TENANT_RULE);
    }
    if (hdr.trace_id !== undefined && normalize_trace_id(hdr.trace_id) === undefined) {
        return header_error(body, hdr, "X-Trace-ID", "invalid X-Trace-ID header: must be " + TRACE_RULE, true);
    }
    if (hdr.request_id !== undefined && !valid_request_id(hdr.request_id)) {
        return header_error(body, hdr, "X-Request-ID", "invalid X-Request-ID header: must be " + REQUEST_ID_RULE);
    }
    return $multi(undefined, undefined);
}

// Ids and trace context common to both shapes, once the body is valid.
function finish(
    n: NormalizedDecide,
    hdr: DecideHeaders,
    body_request_id: string | undefined,
    body_trace_id: string | undefined,
): NormalizedDecide {
    n.request_id =
        body_request_id !== undefined ? body_request_id : hdr.request_id !== undefined ? hdr.request_id : generated_request_id(hdr);
    const tp_trace = parse_traceparent(hdr.traceparent);
    let trace = normalize_trace_id(hdr.trace_id);
    if (trace === undefined) {
        trace = body_trace_id;
    }
    if (trace === undefined) {
        trace = tp_trace;
    }
    n.trace_id = trace !== undefined ? trace : generated_trace_id(hdr);
    if (tp_trace !== undefined) {
        n.traceparent = hdr.traceparent;
        if (valid_tracestate(hdr.tracestate)) {
            n.tracestate = hdr.tracestate;
        }
    }
    return n;
}

/** A tenant id in the body (`path`): optional, but a string equal to the request's tenant. */
function check_body_tenant(
    body: unknown,
    hdr: DecideHeaders,
    path: string,
    value: unknown,
    tenant: string,
): LuaMultiReturn<[undefined, DecideError] | [undefined, undefined]> {
    if (value === undefined) {
        return $multi(undefined, undefined);
    }
    if (type_(value) !== "string") {
        return field_error(body, hdr, path, path + " must be a string");
    }
    if (value !== tenant) {
        return field_error(body, hdr, path, path + " does not match the X-Tenant-ID header");
    }
    return $multi(undefined, undefined);
}

/**
 * A trace id given in the body (at `path`): normalised, or the 400 naming the field. Returns
 * (trace or nil, nil) or (nil, err).
 */
function check_body_trace(
    body: unknown,
    hdr: DecideHeaders,
    path: string,
    value: unknown,
): LuaMultiReturn<[string | undefined, undefined] | [undefined, DecideError]> {
    if (value === undefined) {
        return $multi(undefined, undefined);
    }
    const trace = normalize_trace_id(value);
    if (trace === undefined) {
        return field_error(body, hdr, path, path + " must be " + TRACE_RULE, true);
    }
    return $multi(trace, undefined);
}

function validate_canonical(
    body: JsonObject,
    hdr: DecideHeaders,
    tenant: string,
): LuaMultiReturn<[NormalizedDecide, undefined] | [undefined, DecideError]> {
    const version = body["version"];
    if (version === undefined) {
        return field_error(body, hdr, "version", "missing required field version");
    }
    if (version !== "1") {
        return field_error(body, hdr, "version", 'version must be the string "1"');
    }
    const [, terr] = check_body_tenant(body, hdr, "tenant_id", body["tenant_id"], tenant);
    if (terr !== undefined) {
        return $multi(undefined, terr);
    }
    const request_id = body["request_id"];
    if (request_id !== undefined && !valid_request_id(request_id)) {
        return field_error(body, hdr, "request_id", "request_id must be " + REQUEST_ID_RULE);
    }
    const task = body["task"];
    if (task === undefined) {
        return field_error(body, hdr, "task", "missing required field task");
    }
    if (!is_object(task)) {
        return field_error(body, hdr, "task", "task must be an object");
    }
    const t = task as JsonObject;
    const task_type = t["type"];
    if (task_type === undefined) {
        return field_error(body, hdr, "task.type", "missing required field task.type");
    }
    if (type_(task_type) !== "string" || task_type === "") {
        return field_error(body, hdr, "task.type", "task.type must be a non-empty string");
    }
    const payload = t["payload"];
    const payload_ref = t["payload_ref"];
    if (payload !== undefined && !is_object(payload)) {
        return field_error(body, hdr, "task.payload", "task.payload must be an object");
    }
    if (payload_ref !== undefined && (type_(payload_ref) !== "string" || payload_ref === "")) {
        return field_error(body, hdr, "task.payload_ref", "task.payload_ref must be a non-empty string");
    }
    if (payload === undefined && payload_ref === undefined) {
        return field_error(body, hdr, "task.payload", "missing required field task.payload (or task.payload_ref)");
    }
    const [body_trace, trerr] = check_body_trace(body, hdr, "trace_id", body["trace_id"]);
    if (trerr !== undefined) {
        return $multi(undefined, trerr);
    }
    const n: NormalizedDecide = {
        legacy: false,
        tenant_id: tenant,
        request_id: "",
        trace_id: "",
        task_type: task_type as string,
        task_payload: payload as JsonObject | undefined,
        task_payload_ref: payload_ref as string | undefined,
        mirror: false,
    };
    const nn = n as unknown as JsonObject;
    for (const name of OPTIONAL_STRINGS) {
        const v = body[name];
        if (v !== undefined) {
            if (type_(v) !== "string") {
                return field_error(body, hdr, name, name + " must be a string");
            }
            nn[name] = v;
        }
    }
    for (const name of OPTIONAL_OBJECTS) {
        const v = body[name];
        if (v !== undefined) {
            if (!is_object(v)) {
                return field_error(body, hdr, name, name + " must be an object");
            }
            nn[name] = v;
        }
    }
    const push = body["push_assignment"];
    if (push !== undefined) {
        if (type_(push) !== "boolean") {
            return field_error(body, hdr, "push_assignment", "push_assignment must be a boolean");
        }
        n.push_assignment = push as boolean;
    }
    for (const name of MIRRORED) {
        if (nn[name] !== undefined) {
            n.mirror = true;
            break;
        }
    }
    return $multi(finish(n, hdr, request_id as string | undefined, body_trace), undefined);
}

function validate_legacy(
    body: JsonObject,
    hdr: DecideHeaders,
    tenant: string,
): LuaMultiReturn<[NormalizedDecide, undefined] | [undefined, DecideError]> {
    const m = body["message"] as JsonObject;
    const [, terr] = check_body_tenant(body, hdr, "message.tenant_id", m["tenant_id"], tenant);
    if (terr !== undefined) {
        return $multi(undefined, terr);
    }
    const mid = m["message_id"];
    if (mid !== undefined && !valid_request_id(mid)) {
        return field_error(body, hdr, "message.message_id", "message.message_id must be " + REQUEST_ID_RULE);
    }
    const mtype = m["message_type"];
    if (mtype === undefined) {
        return field_error(body, hdr, "message.message_type", "missing required field message.message_type");
    }
    const task_type = type_(mtype) === "string" ? lower(mtype as string) : undefined;
    if (task_type === undefined || LEGACY_TYPES[task_type] !== true) {
        return field_error(body, hdr, "message.message_type", "message.message_type must be one of chat, completion, embedding");
    }
    const mp = m["payload"];
    let task_payload: JsonObject;
    if (mp === undefined) {
        return field_error(body, hdr, "message.payload", "missing required field message.payload");
    }
    if (type_(mp) === "string") {
        // Text holding a JSON object becomes the payload; any other text is wrapped.
        const [decoded, , top_is_object] = json_decode(mp as string);
        task_payload = top_is_object === true ? (decoded as JsonObject) : { raw: mp };
    } else if (is_object(mp)) {
        task_payload = mp as JsonObject;
    } else {
        return field_error(body, hdr, "message.payload", "message.payload must be a string or an object");
    }
    const [body_trace, trerr] = check_body_trace(body, hdr, "message.trace_id", m["trace_id"]);
    if (trerr !== undefined) {
        return $multi(undefined, trerr);
    }
    const n: NormalizedDecide = {
        legacy: true,
        tenant_id: tenant,
        request_id: "",
        trace_id: "",
        task_type,
        task_payload,
        mirror: false,
    };
    const policy_id = body["policy_id"];
    if (policy_id !== undefined) {
        if (type_(policy_id) !== "string") {
            return field_error(body, hdr, "policy_id", "policy_id must be a string");
        }
        n.policy_id = policy_id as string;
    }
    if (mid !== undefined) {
        n.message_id = mid as string;
    }
    const metadata = body["metadata"];
    if (metadata !== undefined && !is_object(metadata)) {
        return field_error(body, hdr, "metadata", "metadata must be an object");
    }
    const m_metadata = m["metadata"];
    if (m_metadata !== undefined && !is_object(m_metadata)) {
        return field_error(body, hdr, "message.metadata", "message.metadata must be an object");
    }
    // Top-level metadata wins over message.metadata (§10).
    const md = metadata !== undefined ? metadata : m_metadata;
    if (md !== undefined) {
        n.metadata = md as JsonObject;
    }
    const context = body["context"];
    if (context !== undefined) {
        if (!is_object(context)) {
            return field_error(body, hdr, "context", "context must be an object");
        }
        n.context = context as JsonObject;
    }
    const constraints = body["constraints"];
    if (constraints !== undefined) {
        if (!is_object(constraints)) {
            return field_error(body, hdr, "constraints", "constraints must be an object");
        }
        n.constraints = constraints as JsonObject;
    }
    const push = body["push_assignment"];
    if (push !== undefined) {
        if (type_(push) !== "boolean") {
            return field_error(body, hdr, "push_assignment", "push_assignment must be a boolean");
        }
        n.push_assignment = push as boolean;
    }
    return $multi(finish(n, hdr, str_or_nil(mid), body_trace), undefined);
}

/**
 * Validates a decoded decide body plus the already-read headers, in CONTRACT §10 order:
 * headers (X-Tenant-ID, X-Trace-ID, X-Request-ID), body is an object, tenant (header or legacy
 * `message.tenant_id`), then the fields of the canonical or legacy shape.
 * Returns `normalized, nil` or `nil, DecideError` (always status 400, code invalid_request).
 */
function validate_decide(body: unknown, hdr: DecideHeaders): LuaMultiReturn<[NormalizedDecide, undefined] | [undefined, DecideError]> {
    const [, herr] = check_headers(body, hdr);
    if (herr !== undefined) {
        return $multi(undefined, herr);
    }
    if (!is_object(body)) {
        return $multi(undefined, {
            status: 400,
            code: "invalid_request",
            message: "request body must be a JSON object",
            details: {},
            context: error_context(undefined, hdr, false),
        });
    }
    const b = body as JsonObject;
    const [tenant, terr] = effective_tenant(b, hdr);
    if (tenant === undefined) {
        return $multi(undefined, terr as DecideError);
    }
    if (is_legacy(b)) {
        return validate_legacy(b, hdr, tenant);
    }
    return validate_canonical(b, hdr, tenant);
}

/**
 * The Router request for a normalized decide (CONTRACT §4).
 * Returns `payload_json, nats_headers` or `nil, err` (encoding failed: only numbers outside the
 * double range such as 1e400 can cause it; answer 400 invalid_request).
 * `nats_headers` is a flat array of name/value pairs in this order: trace_id, tenant_id,
 * request_id, version, then traceparent and tracestate when valid.
 */
function build_router_request(n: NormalizedDecide): LuaMultiReturn<[string, string[]] | [undefined, string]> {
    const task: JsonObject = { type: n.task_type };
    if (n.task_payload !== undefined) {
        task["payload"] = n.task_payload;
    }
    if (n.task_payload_ref !== undefined) {
        task["payload_ref"] = n.task_payload_ref;
    }
    const p: JsonObject = {
        version: "1",
        tenant_id: n.tenant_id,
        request_id: n.request_id,
        trace_id: n.trace_id,
        task,
    };
    const nn = n as unknown as JsonObject;
    for (const name of FORWARDED) {
        const v = nn[name];
        if (v !== undefined) {
            p[name] = v;
        }
    }
    if (n.mirror && !n.legacy) {
        const m: JsonObject = {};
        for (const name of MIRRORED) {
            const v = nn[name];
            if (v !== undefined) {
                m[name] = v;
            }
        }
        p["message"] = m;
    }
    const [text, err] = json_encode(p);
    if (text === undefined) {
        return $multi(undefined, err as string);
    }
    const headers = ["trace_id", n.trace_id, "tenant_id", n.tenant_id, "request_id", n.request_id, "version", "1"];
    if (n.traceparent !== undefined) {
        headers.push("traceparent");
        headers.push(n.traceparent);
        if (n.tracestate !== undefined) {
            headers.push("tracestate");
            headers.push(n.tracestate);
        }
    }
    return $multi(text, headers);
}

export { is_legacy, check_headers, error_context, effective_tenant, validate_decide, build_router_request };
