/**
 * The API routes (CONTRACT §1–§5): POST /api/v1/routes/decide, POST /api/v1/messages (the same
 * handler, C-GW semantics) and GET /api/v1/routes/decide/{id}.
 *
 * Check order of §5/§10: method → auth → headers (tenant when sent, X-Trace-ID, X-Request-ID,
 * Idempotency-Key) → rate limit → body size → content type → JSON → (legacy: tenant from the
 * body, then the rate limit) → fields → idempotency → Router. Rate limits, auth and
 * idempotency hook in at the marked places.
 */
import * as config from "../config";
import * as util from "../util";
import * as ids from "../ids";
import * as json from "../json";
import * as model from "../request_model";
import * as router_client from "../router_client";
import * as router_reply from "../router_reply";
import * as decision_cache from "../decision_cache";

const get_header = util.get_header;
const error_response = util.error_response;
const sfind = string.find;
const slower = string.lower;
const ssub = string.sub;

type ApiRoute = "decide" | "messages";
type Context = model.DecideErrorContext;

const RETRY_AFTER = { "Retry-After": "1" };

/** Sets the id headers every API response carries, errors included (CONTRACT §2). */
function set_id_headers(c: Context): void {
    ngx.header["X-Trace-Id"] = c.trace_id;
    ngx.header["X-Request-Id"] = c.request_id;
}

function fail(status: number, code: string, message: string, c: Context, details?: object, headers?: util.HeaderMap): never {
    set_id_headers(c);
    return error_response(status, code, message, details, c, headers);
}

function fail_with(e: model.DecideError): never {
    return fail(e.status, e.code, e.message, e.context, e.details);
}

/** Reads one single-valued header; a repeated one is a 400 about that header. */
function single_header(name: string, label: string, hdr: model.DecideHeaders): string | undefined {
    const [value, multiple] = get_header(name);
    if (multiple !== undefined) {
        const c = model.error_context(undefined, hdr, label === "X-Trace-ID");
        return fail(400, "invalid_request", label + " header must be sent once", c, { header: label });
    }
    return value;
}

/** The request headers the API uses, validated (§2, §10). Ends the request on a bad one. */
function read_headers(): LuaMultiReturn<[model.DecideHeaders, string | undefined]> {
    const hdr: model.DecideHeaders = {};
    hdr.tenant_id = single_header("x-tenant-id", "X-Tenant-ID", hdr);
    hdr.trace_id = single_header("x-trace-id", "X-Trace-ID", hdr);
    hdr.request_id = single_header("x-request-id", "X-Request-ID", hdr);
    // An invalid traceparent/tracestate is ignored, never an error; repeated ones likewise.
    const [tp] = get_header("traceparent");
    const [ts] = get_header("tracestate");
    hdr.traceparent = tp;
    hdr.tracestate = ts;
    const [, herr] = model.check_headers(undefined, hdr);
    if (herr !== undefined) {
        return fail_with(herr);
    }
    const idem = single_header("idempotency-key", "Idempotency-Key", hdr);
    if (idem !== undefined && !ids.valid_idempotency_key(idem)) {
        return fail(400, "invalid_request", "invalid Idempotency-Key header: must be 1-256 printable ASCII characters",
            model.error_context(undefined, hdr, false), { header: "Idempotency-Key" });
    }
    return $multi(hdr, idem);
}

/** Media type check of §10: absent, or exactly application/json (any parameters). */
function content_type_ok(): boolean {
    const [ct, multiple] = get_header("content-type");
    if (multiple !== undefined) {
        return false;
    }
    if (ct === undefined) {
        return true;
    }
    const [semi] = sfind(ct, ";", 1, true);
    let media = semi !== undefined ? ssub(ct, 1, semi - 1) : ct;
    media = slower(media);
    // Trim optional whitespace around the media type.
    const [, , trimmed] = sfind(media, "^%s*(.-)%s*$");
    return trimmed === "application/json";
}

/** The effective body limit: the configured one, capped by the NATS server's max_payload. */
function body_limit(): number {
    const configured = config.get().limits.body_bytes;
    const max_payload = router_client.max_payload();
    return max_payload < configured ? max_payload : configured;
}

/** A flat (Nest-style) 200 body: the decision's fields plus the ids (CONTRACT §4). */
function flat_body(reply: { [key: string]: unknown }, n: model.NormalizedDecide): string | undefined {
    const decision = reply["decision"];
    const out: { [key: string]: unknown } = {};
    if (json.is_object(decision)) {
        for (const [k, v] of pairs(decision as object)) {
            out[k as string] = v;
        }
    }
    out["request_id"] = n.request_id;
    out["trace_id"] = n.trace_id;
    if (n.message_id !== undefined) {
        out["message_id"] = n.message_id;
    }
    const [text] = json.encode(out);
    return text;
}

function handle(route: ApiRoute): void {
    const cfg = config.get();
    // 1. method (OPTIONS / CORS preflight is answered before this when CORS is enabled).
    if (ngx.req.get_method() !== "POST") {
        const c = model.error_context(undefined, {}, false);
        set_id_headers(c);
        return util.method_not_allowed("POST", c);
    }
    // 2. auth: API keys hook in here.
    // 3. headers
    const [hdr, idempotency_key] = read_headers();
    // 4. rate limit: when the tenant is known from the header, it is counted here.
    // 5. body size (also enforced by nginx's client_max_body_size for the configured limit)
    const limit = body_limit();
    const cl = tonumber(ngx.var["http_content_length"]);
    if (cl !== undefined && cl > limit) {
        return fail(413, "payload_too_large", "request body larger than " + limit + " bytes", model.error_context(undefined, hdr, false), { limit_bytes: limit });
    }
    // 6. content type
    if (!content_type_ok()) {
        return fail(415, "unsupported_media_type", "Content-Type must be application/json", model.error_context(undefined, hdr, false));
    }
    // 7. JSON
    const [raw, body_err, body_msg] = util.read_body(limit);
    if (raw === undefined) {
        const c = model.error_context(undefined, hdr, false);
        if (body_err === "payload_too_large") {
            return fail(413, "payload_too_large", "request body larger than " + limit + " bytes", c, { limit_bytes: limit });
        }
        ngx.log(ngx.ERR, "beamline: cannot read request body: ", body_msg);
        return fail(500, "internal", "internal error", c);
    }
    const [body, json_err, json_msg] = util.decode_body_json(raw);
    if (body === undefined) {
        return fail(400, "invalid_request", json_err === "not_object" ? "request body must be a JSON object" : "request body is not valid JSON (" + json_msg + ")",
            model.error_context(undefined, hdr, false));
    }
    // 8. legacy bodies may carry the tenant; then the rate limit applies here.
    if (hdr.tenant_id === undefined) {
        const [, terr] = model.effective_tenant(body, hdr);
        if (terr !== undefined) {
            return fail_with(terr);
        }
    }
    // 9. fields
    const [n, verr] = model.validate_decide(body, hdr);
    if (n === undefined) {
        return fail_with(verr as model.DecideError);
    }
    const c: Context = { request_id: n.request_id, trace_id: n.trace_id, tenant_id: n.tenant_id };
    set_id_headers(c);
    // 10. idempotency hooks in here (idempotency_key, raw body).
    void idempotency_key;
    // 11. the Router
    const [payload, nats_headers] = model.build_router_request(n);
    if (payload === undefined) {
        return fail(400, "invalid_request", "request body holds a number that cannot be forwarded", c);
    }
    const route_cfg = cfg.routes[route];
    const timeout_ms = route_cfg.timeout_ms ?? cfg.router.request_timeout_ms;
    const [reply, failure] = router_client.decide(payload, nats_headers as string[], { subject: cfg.router.decide_subject, timeout_ms });
    if (reply === undefined) {
        if (failure === "timeout") {
            return fail(504, "timeout", "the Router did not answer within " + timeout_ms + " ms", c);
        }
        if (failure === "no_responders") {
            return fail(503, "unavailable", "no Router is listening on " + cfg.router.decide_subject, c, undefined, RETRY_AFTER);
        }
        if (failure === "not_connected") {
            return fail(503, "unavailable", "the gateway is not connected to NATS", c, undefined, RETRY_AFTER);
        }
        if (failure === "payload_too_large") {
            const max = router_client.max_payload();
            return fail(413, "payload_too_large", "the Router request would exceed the NATS max_payload of " + max + " bytes", c, { limit_bytes: max });
        }
        ngx.log(ngx.ERR, "beamline: router request failed: ", failure, " trace_id=", n.trace_id);
        return fail(500, "internal", "internal error", c);
    }
    const mapped = router_reply.map_reply(reply);
    if (mapped.body === undefined) {
        ngx.log(ngx.WARN, "beamline: malformed Router reply: ", mapped.problem, " trace_id=", n.trace_id);
        return fail(502, "bad_gateway", "the Router sent a malformed reply", c);
    }
    let out = mapped.body;
    if (mapped.status === 200) {
        if (cfg.response_format === "flat") {
            const flat = flat_body(mapped.decoded as { [key: string]: unknown }, n);
            if (flat === undefined) {
                return fail(502, "bad_gateway", "the Router sent a decision that cannot be re-encoded", c);
            }
            out = flat;
        }
        decision_cache.store(n.tenant_id, n.request_id, n.message_id, out);
    }
    util.json_response(mapped.status, out);
}

export function decide(): void {
    handle("decide");
}

export function messages(): void {
    handle("messages");
}

const LOOKUP_PREFIX_LEN = "/api/v1/routes/decide/".length;

/** GET /api/v1/routes/decide/{id}: the stored 200 body for this tenant, or 404. */
export function decision_lookup(): void {
    const method = ngx.req.get_method();
    if (method !== "GET" && method !== "HEAD") {
        const c = model.error_context(undefined, {}, false);
        set_id_headers(c);
        return util.method_not_allowed("GET, HEAD", c);
    }
    // auth hooks in here
    const [hdr] = read_headers();
    const c = model.error_context(undefined, hdr, false);
    if (hdr.tenant_id === undefined) {
        return fail(400, "invalid_request", "missing X-Tenant-ID header", c, { header: "X-Tenant-ID" });
    }
    // rate limit (decide route) hooks in here
    const id = ssub(ngx.var["uri"] as string, LOOKUP_PREFIX_LEN + 1);
    const stored = decision_cache.get(hdr.tenant_id, id);
    set_id_headers(c);
    if (stored === undefined) {
        return fail(404, "not_found", "no decision stored under this id", c);
    }
    util.json_response(200, stored);
}
