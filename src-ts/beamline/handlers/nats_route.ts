/**
 * The configured HTTP → NATS routes (CONTRACT §12, config `nats_routes`): the Router admin routes
 * by default, and any route an operator adds. One generic handler; each route is one NATS
 * request/reply on its subject over the worker's shared connection (the decide path's Router
 * call, handlers/api.ts `call_router`).
 *
 * Check order (§5): method (OPTIONS → CORS preflight when CORS is on; else 405 with Allow) →
 * auth (401) → headers (X-Tenant-ID required, X-Trace-ID, X-Request-ID, Idempotency-Key: 400) →
 * admin key (403) → the key's tenant (403) → path segments (400, `details.field` = the
 * parameter) → `{tenant_id}` = X-Tenant-ID (403) → rate limit (route's `rate_limit_route`) →
 * body (`forward`: size 413, content type 415, JSON object 400) → Router.
 *
 * Reply: a JSON object with `"ok":false` is mapped as §4 (status by code; 502 when its `error`
 * is malformed); any other JSON value is sent byte for byte with 200; not JSON → 502. NATS
 * failures as §4 (503 no responders / not connected, 504 timeout).
 *
 * nginx has one location per path (scripts/lib/nats-routes.js): routes on the same path with
 * different methods share it, and the location names its first route. `configure` builds the
 * same grouping here, in the master (init_by_lua).
 */
import type { GatewayConfig, NatsRouteConfig } from "../config";
import * as util from "../util";
import * as log_line from "../log_line";
import * as ids from "../ids";
import * as json from "../json";
import * as model from "../request_model";
import * as cors from "../cors";
import * as api from "./api";
import * as log_fields from "../log_fields";

const sfind = string.find;
const ssub = string.sub;
const sgsub = string.gsub;
const tonum = tonumber;
const valid_tenant_id = ids.valid_tenant_id;

const SEGMENT_RULE = "1-128 characters of [A-Za-z0-9._:-]";
const EMPTY_PAYLOAD = "{}";
const METHOD_ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

interface Route {
    cfg: NatsRouteConfig;
    /** Parameter name by segment position (1-based); undefined for literal segments. */
    params: (string | undefined)[];
    nsegments: number;
    has_params: boolean;
    timeout_ms: number;
}

interface Location {
    by_method: { [method: string]: Route | undefined };
    allow: string;
    allow_cors: string;
}

const locations: { [name: string]: Location | undefined } = {};

/** `/a/{x}/b` → `/a/{}/b`: routes of the same shape share one nginx location. */
function shape(path: string): string {
    const [s] = sgsub(path, "{[^}]*}", "{}");
    return s;
}

function parse(r: NatsRouteConfig, timeout_ms: number): Route {
    const params: (string | undefined)[] = [];
    let n = 0;
    let has_params = false;
    let pos = 2;
    for (;;) {
        const [slash] = sfind(r.path, "/", pos, true);
        const seg = ssub(r.path, pos, slash !== undefined ? slash - 1 : undefined);
        n++;
        if (ssub(seg, 1, 1) === "{") {
            params[n - 1] = ssub(seg, 2, -2);
            has_params = true;
        }
        if (slash === undefined) break;
        pos = slash + 1;
    }
    return { cfg: r, params, nsegments: n, has_params, timeout_ms: r.timeout_ms ?? timeout_ms };
}

/**
 * Builds the routes from the config (init_by_lua, inherited by the workers). Returns the
 * location names (the first route of each path) whose content handler is `serve(name)`.
 */
export function configure(cfg: GatewayConfig): string[] {
    const names: string[] = [];
    const by_shape: { [shape: string]: string | undefined } = {};
    const timeout = cfg.router.admin_timeout_ms ?? cfg.router.request_timeout_ms;
    for (const r of cfg.nats_routes) {
        const k = shape(r.path);
        let name = by_shape[k];
        if (name === undefined) {
            name = r.name;
            by_shape[k] = name;
            locations[name] = { by_method: {}, allow: "", allow_cors: "" };
            names.push(name);
        }
        (locations[name] as Location).by_method[r.method] = parse(r, timeout);
    }
    for (const name of names) {
        const loc = locations[name] as Location;
        const allowed: string[] = [];
        for (const m of METHOD_ORDER) {
            if (loc.by_method[m] !== undefined || (m === "HEAD" && loc.by_method["GET"] !== undefined)) allowed.push(m);
        }
        loc.allow = allowed.join(", ");
        loc.allow_cors = loc.allow + ", OPTIONS";
    }
    return names;
}

/**
 * The path parameters of the request URI (normalised and decoded by nginx; the location already
 * matched the literal segments and the segment count). Ends the request with 400 on a segment
 * outside the tenant alphabet, 403 when `{tenant_id}` is not the request's tenant.
 */
function path_params(r: Route, tenant: string, c: api.Context): { [name: string]: string } {
    const uri = ngx.var["uri"] as string;
    const out: { [name: string]: string } = {};
    let pos = 2;
    for (let i = 0; i < r.nsegments; i++) {
        const [slash] = sfind(uri, "/", pos, true);
        const name = r.params[i];
        if (name !== undefined) {
            const seg = ssub(uri, pos, slash !== undefined ? slash - 1 : undefined);
            if (!valid_tenant_id(seg)) {
                return api.fail(400, "invalid_request", "path segment {" + name + "} must be " + SEGMENT_RULE, c, { field: name });
            }
            out[name] = seg;
        }
        if (slash === undefined) break;
        pos = slash + 1;
    }
    const t = out["tenant_id"];
    if (t !== undefined && t !== tenant) {
        return api.fail(403, "forbidden", "the path's tenant_id is not the X-Tenant-ID tenant", c);
    }
    return out;
}

/** The client's JSON object (`forward`): §5 size → content type → JSON, as the decide body. */
function forward_body(c: api.Context): string {
    const limit = api.body_limit();
    const cl = tonum(ngx.var["http_content_length"]);
    if (cl !== undefined && cl > limit) {
        return api.fail(413, "payload_too_large", "request body larger than " + limit + " bytes", c, { limit_bytes: limit });
    }
    if (cl === undefined) {
        // A chunked body over client_max_body_size gets nginx's 413: with these ids (§14).
        const [ctx] = json.encode(c);
        if (ctx !== undefined) ngx.var["beamline_error_ctx"] = ctx;
    }
    const [raw, body_err, body_msg] = util.read_body(limit);
    if (raw === undefined) {
        if (body_err === "payload_too_large") {
            return api.fail(413, "payload_too_large", "request body larger than " + limit + " bytes", c, { limit_bytes: limit });
        }
        log_line.write(ngx.ERR, "beamline: cannot read request body: ", body_msg);
        return api.fail(500, "internal", "internal error", c);
    }
    const media_error = api.content_type_ok() ? api.content_encoding_error() : "Content-Type must be application/json";
    if (media_error !== undefined) {
        return api.fail(415, "unsupported_media_type", media_error, c);
    }
    const [body, , json_msg] = util.decode_body_json(raw);
    if (body === undefined) {
        return api.fail(400, "invalid_request", json_msg as string, c);
    }
    return raw;
}

/** NATS headers of §4: the ids, version, and the client's trace context when valid. */
function nats_headers(c: api.Context, hdr: model.DecideHeaders): string[] {
    const h = ["trace_id", c.trace_id, "tenant_id", c.tenant_id, "request_id", c.request_id, "version", "1"];
    if (ids.parse_traceparent(hdr.traceparent) !== undefined) {
        h.push("traceparent");
        h.push(hdr.traceparent as string);
        if (ids.valid_tracestate(hdr.tracestate)) {
            h.push("tracestate");
            h.push(hdr.tracestate as string);
        }
    }
    return h;
}

/** content_by_lua of the location named `name` (see the module comment). */
export function serve(name: string): void {
    const loc = locations[name] as Location;
    const method = ngx.req.get_method();
    let r = loc.by_method[method];
    if (r === undefined && method === "HEAD") r = loc.by_method["GET"];
    if (r === undefined) {
        if (method === "OPTIONS" && cors.is_enabled()) {
            return cors.preflight(loc.allow_cors);
        }
        cors.apply();
        const c405 = model.error_context(undefined, {}, false);
        api.set_id_headers(c405);
        return util.method_not_allowed(cors.is_enabled() ? loc.allow_cors : loc.allow, c405);
    }
    const cfg = r.cfg;
    ngx.var["beamline_route"] = cfg.name;
    cors.apply();
    const [key_tenant, admin] = api.authenticate();
    const [hdr] = api.read_headers();
    const c = model.error_context(undefined, hdr, false);
    api.set_id_headers(c);
    const tenant = hdr.tenant_id;
    if (tenant === undefined) {
        return api.fail(400, "invalid_request", "missing X-Tenant-ID header", c, { header: "X-Tenant-ID" });
    }
    if (key_tenant !== undefined && cfg.admin && !admin) {
        return api.fail(403, "forbidden", "this route needs an admin API key", c);
    }
    api.check_key_tenant(key_tenant, tenant, undefined, hdr);
    const params = r.has_params ? path_params(r, tenant, c) : undefined;
    api.apply_rate_limit(cfg.rate_limit_route, cfg.path, tenant, undefined, hdr);
    let payload = EMPTY_PAYLOAD;
    if (cfg.body === "forward") {
        payload = forward_body(c);
    } else if (cfg.body === "path_params" && params !== undefined) {
        const [text] = json.encode(params);
        payload = text as string;
    }
    const reply = api.call_router(payload, nats_headers(c, hdr), cfg.subject, r.timeout_ms, c);
    const [decoded, derr] = json.decode(reply, json.MAX_DEPTH_CAP);
    if (derr !== undefined) {
        log_fields.router_code("malformed");
        log_line.write(ngx.WARN, "beamline: Router reply on ", cfg.subject, " is not JSON, trace_id=", c.trace_id);
        return api.fail(502, "bad_gateway", "the Router sent a malformed reply", c);
    }
    if (json.is_object(decoded) && (decoded as { [k: string]: unknown })["ok"] === false) {
        const mapped = api.map_router_reply(reply, c);
        return util.json_response(mapped.status, mapped.body);
    }
    log_fields.router_code("ok");
    util.json_response(200, reply);
}
