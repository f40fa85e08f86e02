/**
 * The API routes (CONTRACT §1–§5): POST /api/v1/routes/decide, POST /api/v1/messages (the same
 * handler, C-GW semantics) and GET /api/v1/routes/decide/{id}.
 *
 * Check order of §5/§10: method (OPTIONS → CORS preflight when CORS is on) → auth (API key)
 * → headers (tenant when sent, X-Trace-ID, X-Request-ID, Idempotency-Key; the key's tenant) →
 * rate limit → body size → content type → JSON → (legacy: tenant from the body, then the rate
 * limit) → fields → idempotency → Router.
 *
 * For the access log and the metrics (log phase) the handler sets `$beamline_tenant_id` (with
 * the id headers), `$beamline_router_time` and `$beamline_router_code` (after a Router call).
 */
import * as config from "../config";
import * as util from "../util";
import * as ids from "../ids";
import * as json from "../json";
import * as model from "../request_model";
import * as router_client from "../router_client";
import * as router_reply from "../router_reply";
import * as decision_cache from "../decision_cache";
import * as auth from "../auth";
import * as cors from "../cors";
import * as rate_limit from "../rate_limit";
import * as idempotency from "../idempotency";
import * as metrics from "../metrics";
import * as traffic from "../traffic";
import * as log_line from "../log_line";
import * as streams from "../streams";
import * as tracing from "../tracing";
import * as log_fields from "../log_fields";

const get_header = util.get_header;
const sfind = string.find;
const slower = string.lower;
const ssub = string.sub;

type ApiRoute = "decide" | "messages";
export type Context = model.DecideErrorContext;

const RETRY_AFTER = { "Retry-After": "1" };
/** ngx.ctx key: the API key's tenant of a request admitted by the traffic switch's front door. */
const ADMITTED = "beamline_admitted";
const ADMITTED_ADMIN = "beamline_admitted_admin";
const WWW_AUTHENTICATE = { "WWW-Authenticate": "Bearer" };
/** `details.endpoint` of a 429: the route's path. */
const ENDPOINTS = { decide: "/api/v1/routes/decide", messages: "/api/v1/messages", decision_lookup: "/api/v1/routes/decide/{id}" };

/**
 * Sets the id headers every API response carries, errors included (CONTRACT §2), and the
 * tenant for the access log.
 */
export function set_id_headers(c: Context): void {
    ngx.header["X-Trace-Id"] = c.trace_id;
    ngx.header["X-Request-Id"] = c.request_id;
    log_fields.tenant(c.tenant_id);
}

/**
 * Sends a gateway error. When this request holds an Idempotency-Key, the error is its final
 * response: stored when < 500, the key released otherwise.
 */
export function fail(status: number, code: string, message: string, c: Context, details?: object, headers?: util.HeaderMap): never {
    set_id_headers(c);
    const body = util.error_body(code, message, details, c);
    idempotency.complete(status, body, c.request_id, c.trace_id);
    return util.json_response(status, body, headers);
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
export function read_headers(): LuaMultiReturn<[model.DecideHeaders, string | undefined]> {
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
        return fail(
            400,
            "invalid_request",
            "invalid Idempotency-Key header: must be 1-256 printable ASCII characters",
            model.error_context(undefined, hdr, false),
            { header: "Idempotency-Key" },
        );
    }
    return $multi(hdr, idem);
}

/**
 * The ids known before the headers are validated (for a 401): error_context validates each
 * value, so raw ones are safe to pass; a repeated header counts as absent.
 */
function raw_headers(): model.DecideHeaders {
    const [tenant] = get_header("x-tenant-id");
    const [trace] = get_header("x-trace-id");
    const [request] = get_header("x-request-id");
    const [tp] = get_header("traceparent");
    return { tenant_id: tenant, trace_id: trace, request_id: request, traceparent: tp };
}

/**
 * Auth step (§2): returns the API key's tenant (nil when auth is off) and whether it is an admin
 * key; ends the request with 401 when auth is on and the key is missing or unknown.
 */
export function authenticate(): LuaMultiReturn<[string | undefined, boolean]> {
    // Already checked at the front door of the traffic switch (admit): not hashed twice.
    const admitted = ngx.ctx[ADMITTED] as string | undefined;
    if (admitted !== undefined) return $multi(admitted, ngx.ctx[ADMITTED_ADMIN] === true);
    const [tenant, off, admin] = auth.authenticate();
    if (off) return $multi(undefined, false);
    if (tenant === undefined) {
        return fail(
            401,
            "unauthorized",
            "missing or invalid API key",
            model.error_context(undefined, raw_headers(), false),
            undefined,
            WWW_AUTHENTICATE,
        );
    }
    return $multi(tenant, admin);
}

/** 403 when the API key belongs to another tenant than the request's. */
export function check_key_tenant(key_tenant: string | undefined, tenant: string, body: unknown, hdr: model.DecideHeaders): void {
    if (key_tenant !== undefined && key_tenant !== tenant) {
        return fail(403, "forbidden", "the API key is not valid for this tenant", model.error_context(body, hdr, false));
    }
}

/**
 * Rate-limit step (§5): counts the request on config route `limit_route`; ends it with 429 (or
 * 503 when the Redis backend is down and `fail_closed`). The headers stay on later responses.
 */
export function apply_rate_limit(
    limit_route: string,
    endpoint: string,
    tenant: string,
    body: unknown,
    hdr: model.DecideHeaders,
    front_door?: boolean,
): void {
    // Counted once: the front door of the traffic switch (admit) already counted this tenant.
    if (ngx.ctx[ADMITTED] === tenant) return;
    const [outcome, limit, window, retry] = rate_limit.check(limit_route, tenant);
    if (outcome === "allowed") return;
    if (front_door === true) cors.apply();
    const c = model.error_context(body, hdr, false);
    if (outcome === "unavailable") {
        return fail(503, "unavailable", "the rate limiter is unavailable", c, undefined, RETRY_AFTER);
    }
    return fail(
        429,
        "rate_limit_exceeded",
        "rate limit of " + limit + " requests per " + window + " s exceeded",
        c,
        { endpoint, limit, window_seconds: window, retry_after_seconds: retry },
        { "Retry-After": retry, "X-RateLimit-Remaining": 0 },
    );
}

/** Media type check of §10: absent, or exactly application/json (any parameters). */
export function content_type_ok(): boolean {
    const [ct, multiple] = get_header("content-type");
    if (multiple !== undefined) {
        return false;
    }
    if (ct === undefined || ct === "application/json") {
        return true;
    }
    const [semi] = sfind(ct, ";", 1, true);
    let media = semi !== undefined ? ssub(ct, 1, semi - 1) : ct;
    media = slower(media);
    // Trim optional whitespace around the media type.
    const [, , trimmed] = sfind(media, "^%s*(.-)%s*$");
    return trimmed === "application/json";
}

/**
 * A compressed body (Content-Encoding other than identity) is not decoded by the gateway: the
 * 415 says so instead of a confusing "not valid JSON". Returns the message, or undefined.
 */
export function content_encoding_error(): string | undefined {
    const [ce] = get_header("content-encoding");
    if (ce === undefined) {
        return undefined;
    }
    const [, , v] = sfind(slower(ce), "^%s*(.-)%s*$");
    if (v === "identity" || v === "") {
        return undefined;
    }
    return "Content-Encoding is not supported: send the body uncompressed";
}

/** The effective body limit: the configured one, capped by the NATS server's max_payload. */
export function body_limit(): number {
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

/**
 * The Router call (§4) of an API route: sets `$beamline_router_time` / `$beamline_router_code`
 * for the access log and the metrics, and returns the reply bytes; a failure ends the request
 * with its gateway error (504, 503, 413 or 500).
 */
export function call_router(payload: string, nats_headers: string[], subject: string, timeout_ms: number, c: Context): string {
    ngx.update_time();
    const t0 = ngx.now();
    const [reply, failure] = router_client.decide(payload, nats_headers, subject, timeout_ms);
    if (failure !== "payload_too_large" && failure !== "invalid_request") {
        if (failure !== undefined && tracing.enabled()) tracing.router_done(failure);
        // Router time and outcome of every attempted call (§8 access log, §7 metrics); a request
        // refused before publishing (too large, unencodable) has none.
        log_fields.router_time(ngx.now() - t0);
        if (failure !== undefined) {
            log_fields.router_code(failure);
        }
    }
    if (reply === undefined) {
        if (failure === "timeout") {
            return fail(504, "timeout", "the Router did not answer within " + timeout_ms + " ms", c);
        }
        if (failure === "no_responders") {
            return fail(503, "unavailable", "no Router is listening", c, undefined, RETRY_AFTER);
        }
        if (failure === "not_connected") {
            return fail(503, "unavailable", "the gateway is not connected to NATS", c, undefined, RETRY_AFTER);
        }
        if (failure === "payload_too_large") {
            const max = router_client.max_payload();
            return fail(413, "payload_too_large", "the Router request would exceed the NATS max_payload of " + max + " bytes", c, {
                limit_bytes: max,
            });
        }
        log_line.write(ngx.ERR, "beamline: router request failed: ", failure, " trace_id=", c.trace_id);
        return fail(500, "internal", "internal error", c);
    }
    return reply;
}

/**
 * A Router reply mapped as §4 (`router_reply.map_reply`), its outcome set for the access log;
 * a malformed reply ends the request with 502.
 */
export function map_router_reply(reply: string, c: Context): router_reply.MappedReply {
    const mapped = router_reply.map_reply(reply);
    const outcome = mapped.body === undefined ? "malformed" : mapped.status === 200 ? "ok" : metrics.code_label(mapped.code as string);
    log_fields.router_code(outcome);
    if (tracing.enabled()) tracing.router_done(outcome);
    if (mapped.body === undefined) {
        log_line.write(ngx.WARN, "beamline: malformed Router reply: ", mapped.problem, " trace_id=", c.trace_id);
        return fail(502, "bad_gateway", "the Router sent a malformed reply", c);
    }
    return mapped;
}

function handle(route: ApiRoute): void {
    const cfg = config.get();
    // 1. method; OPTIONS is the CORS preflight when CORS is on.
    const method = ngx.req.get_method();
    if (method !== "POST") {
        if (method === "OPTIONS" && cors.is_enabled()) {
            return cors.preflight("POST, OPTIONS");
        }
        cors.apply();
        const c = model.error_context(undefined, {}, false);
        set_id_headers(c);
        return util.method_not_allowed(cors.is_enabled() ? "POST, OPTIONS" : "POST", c);
    }
    cors.apply();
    // 2. auth (API keys)
    const [key_tenant] = authenticate();
    // 3. headers
    const [hdr, idempotency_key] = read_headers();
    // 4. rate limit: when the tenant is known from the header, it is counted here.
    if (hdr.tenant_id !== undefined) {
        const tenant = hdr.tenant_id;
        check_key_tenant(key_tenant, tenant, undefined, hdr);
        apply_rate_limit(route, ENDPOINTS[route], tenant, undefined, hdr);
    }
    // 5. body size (also enforced by nginx's client_max_body_size for the configured limit)
    const limit = body_limit();
    // From the headers read once (a repeated Content-Length is refused by nginx itself).
    const [cl_header] = get_header("content-length");
    const cl = tonumber(cl_header);
    if (cl !== undefined && cl > limit) {
        return fail(413, "payload_too_large", "request body larger than " + limit + " bytes", model.error_context(undefined, hdr, false), {
            limit_bytes: limit,
        });
    }
    if (cl === undefined) {
        // nginx itself refuses a chunked body over client_max_body_size (its JSON 413, an
        // error_page): give that answer this request's ids, like every API error (§2).
        const c = model.error_context(undefined, hdr, false);
        set_id_headers(c);
        const [ctx] = json.encode(c);
        if (ctx !== undefined) ngx.var["beamline_error_ctx"] = ctx;
    }
    // 6. content type. Size comes first (§5): a body without Content-Length (chunked) is read
    // up to the limit before a bad media type is reported.
    const media_error = content_type_ok() ? content_encoding_error() : "Content-Type must be application/json";
    if (media_error !== undefined) {
        if (cl === undefined) {
            const [, berr] = util.read_body(limit);
            if (berr === "payload_too_large") {
                return fail(
                    413,
                    "payload_too_large",
                    "request body larger than " + limit + " bytes",
                    model.error_context(undefined, hdr, false),
                    { limit_bytes: limit },
                );
            }
        }
        return fail(415, "unsupported_media_type", media_error, model.error_context(undefined, hdr, false));
    }
    // 7. JSON
    const [raw, body_err, body_msg] = util.read_body(limit);
    if (raw === undefined) {
        const c = model.error_context(undefined, hdr, false);
        if (body_err === "payload_too_large") {
            return fail(413, "payload_too_large", "request body larger than " + limit + " bytes", c, { limit_bytes: limit });
        }
        log_line.write(ngx.ERR, "beamline: cannot read request body: ", body_msg);
        return fail(500, "internal", "internal error", c);
    }
    const [body, , json_msg] = util.decode_body_json(raw);
    if (body === undefined) {
        return fail(400, "invalid_request", json_msg as string, model.error_context(undefined, hdr, false));
    }
    // 8. legacy bodies may carry the tenant; then the rate limit applies here.
    if (hdr.tenant_id === undefined) {
        const [tenant, terr] = model.effective_tenant(body, hdr);
        if (terr !== undefined) {
            return fail_with(terr);
        }
        check_key_tenant(key_tenant, tenant as string, body, hdr);
        apply_rate_limit(route, ENDPOINTS[route], tenant as string, body, hdr);
    }
    // 9. fields
    const [n, verr] = model.validate_decide(body, hdr);
    if (n === undefined) {
        return fail_with(verr as model.DecideError);
    }
    const c: Context = { request_id: n.request_id, trace_id: n.trace_id, tenant_id: n.tenant_id };
    set_id_headers(c);
    const route_cfg = cfg.routes[route];
    const timeout_ms = route_cfg.timeout_ms ?? cfg.router.request_timeout_ms;
    // 10. idempotency: claim (tenant, route, key), or answer from / about the stored entry.
    // (A shadow request, mirrored by the traffic switch, claims and stores nothing.)
    if (idempotency_key !== undefined && idempotency.is_enabled() && !traffic.is_shadow_request()) {
        const [state, status, stored, rid, tid] = idempotency.begin(n.tenant_id, route, idempotency_key, raw, timeout_ms);
        if (state === "replay") {
            metrics.idempotency_replay();
            set_id_headers({ request_id: rid, trace_id: tid, tenant_id: n.tenant_id });
            return util.json_response(status, stored, { "Idempotent-Replayed": "true" });
        }
        if (state === "in_flight") {
            return fail(409, "conflict", "a request with this Idempotency-Key is still in progress", c);
        }
        if (state === "mismatch") {
            return fail(409, "conflict", "this Idempotency-Key was used with a different request body", c);
        }
        if (state === "unavailable") {
            return fail(503, "unavailable", "the idempotency store is unavailable", c, undefined, RETRY_AFTER);
        }
        if (state === "full") {
            return fail(503, "unavailable", "the Idempotency-Key store is full; retry later", c, undefined, RETRY_AFTER);
        }
    }
    // 11. the Router. With tracing on, the Router gets the client span's context as traceparent.
    const subject = cfg.router.decide_subject;
    if (tracing.enabled()) {
        n.traceparent = tracing.router_traceparent(n.traceparent, n.trace_id, subject, n.tenant_id, n.request_id);
    }
    const [payload, nats_headers] = model.build_router_request(n);
    if (payload === undefined) {
        return fail(400, "invalid_request", "request body holds a number that cannot be forwarded", c);
    }
    const reply = call_router(payload, nats_headers as string[], subject, timeout_ms, c);
    const mapped = map_router_reply(reply, c);
    let out = mapped.body as string;
    if (mapped.status === 200) {
        if (cfg.response_format === "flat") {
            const decoded = mapped.decoded ?? json.decode(out)[0];
            const flat = flat_body(decoded as { [key: string]: unknown }, n);
            if (flat === undefined) {
                return fail(502, "bad_gateway", "the Router sent a decision that cannot be re-encoded", c);
            }
            out = flat;
        }
    }
    // The decision is stored (with the Idempotency-Key outcome) before the answer is sent, so a
    // lookup on any instance finds it as soon as the client has the answer (§13).
    const dtenant = mapped.status === 200 && !traffic.is_shadow_request() ? n.tenant_id : undefined;
    if (!idempotency.complete(mapped.status, out, n.request_id, n.trace_id, dtenant, n.message_id)) {
        return fail(503, "unavailable", "the decision store is unavailable", c, undefined, RETRY_AFTER);
    }
    if (dtenant !== undefined) {
        // message_created for the tenant's streams (§11.1), only for a 200 the client gets: queued, never waits
        streams.publish_decision(route, n.tenant_id, n.request_id, n.message_id, n.trace_id, out);
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
        if (method === "OPTIONS" && cors.is_enabled()) {
            return cors.preflight("GET, HEAD, OPTIONS");
        }
        cors.apply();
        const c = model.error_context(undefined, {}, false);
        set_id_headers(c);
        return util.method_not_allowed(cors.is_enabled() ? "GET, HEAD, OPTIONS" : "GET, HEAD", c);
    }
    cors.apply();
    const [key_tenant] = authenticate();
    const [hdr] = read_headers();
    const c = model.error_context(undefined, hdr, false);
    if (hdr.tenant_id === undefined) {
        return fail(400, "invalid_request", "missing X-Tenant-ID header", c, { header: "X-Tenant-ID" });
    }
    check_key_tenant(key_tenant, hdr.tenant_id, undefined, hdr);
    // The lookup counts against the decide route's limit (§10).
    apply_rate_limit("decide", ENDPOINTS.decision_lookup, hdr.tenant_id, undefined, hdr);
    const id = ssub(ngx.var["uri"] as string, LOOKUP_PREFIX_LEN + 1);
    const [stored, unavailable] = decision_cache.get(hdr.tenant_id, id);
    set_id_headers(c);
    if (unavailable !== undefined) {
        return fail(503, "unavailable", "the decision store is unavailable", c, undefined, RETRY_AFTER);
    }
    if (stored === undefined) {
        return fail(404, "not_found", "no decision stored under this id", c);
    }
    util.json_response(200, stored);
}

/**
 * nginx's own 413 (a body over client_max_body_size, conf.d/20-gateway.conf error_page): the JSON
 * error with the request's ids (CONTRACT §14). For a chunked body the handler had already chosen
 * them (`$beamline_error_ctx`); for a Content-Length over the limit nginx answers before any Lua
 * runs, so they come from the headers here (generated where absent or invalid).
 */
export function nginx_413(): void {
    let c: Context | undefined;
    const ctx = ngx.var["beamline_error_ctx"];
    if (ctx !== undefined && ctx !== "") {
        const [decoded] = json.decode(ctx);
        if (json.is_object(decoded)) c = decoded as Context;
    }
    if (c === undefined) c = model.error_context(undefined, raw_headers(), false);
    set_id_headers(c);
    const limit = config.get().limits.body_bytes;
    util.json_response(413, util.error_body("payload_too_large", "request body too large", { limit_bytes: limit }, c));
}

/**
 * The front door of the traffic switch (beamline.traffic.dispatch), with auth on: runs before the
 * split, for both sides. The API key (401), the key's tenant against the request's (X-Tenant-ID,
 * else the legacy body's; 403) and the tenant's rate limit (429) are checked here, so the old
 * gateway only ever receives requests this gateway would have let in. Returns the key's tenant,
 * or nil for a request that is not an API call (another method, a CORS preflight): the switch
 * then answers it here (405 / 204), never on the old side.
 */
export function admit(route: string): string | undefined {
    const method = ngx.req.get_method();
    if (route === "decision_lookup" ? method !== "GET" && method !== "HEAD" : method !== "POST") return undefined;
    const [key_tenant, key_admin] = auth.authenticate();
    if (key_tenant === undefined) {
        cors.apply();
        const [t] = authenticate(); // the 401, with the ids of the new path
        return t;
    }
    const hdr: model.DecideHeaders = {};
    let tenant = single_header("x-tenant-id", "X-Tenant-ID", hdr);
    if (tenant === undefined && route !== "decision_lookup") {
        const [raw] = util.read_body(body_limit());
        if (raw !== undefined && raw !== "") tenant = traffic.tenant_from_body(raw);
    }
    if (tenant !== undefined && tenant !== "" && tenant !== key_tenant) {
        cors.apply();
        check_key_tenant(key_tenant, tenant, undefined, raw_headers());
    }
    // The lookup counts against the decide route's limit (§10), as on the new path.
    const limit_route: ApiRoute = route === "messages" ? "messages" : "decide";
    apply_rate_limit(limit_route, ENDPOINTS[route as ApiRoute | "decision_lookup"], key_tenant, undefined, raw_headers(), true);
    ngx.ctx[ADMITTED] = key_tenant;
    ngx.ctx[ADMITTED_ADMIN] = key_admin;
    return key_tenant;
}
