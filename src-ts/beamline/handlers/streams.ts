/**
 * The realtime stream routes (CONTRACT §11): GET /api/v1/messages/stream and
 * GET /api/v1/results/stream, Server-Sent Events.
 *
 * Checks before the stream starts, first failing answers (a §5 JSON error): method (OPTIONS →
 * CORS preflight when CORS is on) → auth (header key, else the `api_key` query parameter) →
 * id headers (X-Tenant-ID, X-Trace-ID, X-Request-ID) → tenant (header or `tenant_id` query) →
 * the stream's query parameters → the key's tenant (403) → rate limit of route `streams` (429)
 * → draining / per-worker cap (503) → per-tenant cap (429). Then: 200 with the SSE headers and
 * `retry: 3000\n: connected\n\n` flushed at once, and the loop of beamline.streams.
 *
 * The loop sleeps on the stream's semaphore until an event, its heartbeat, `close_after_ms`, the
 * client leaving (ngx.on_abort, `lua_check_client_abort on` in the location) or the worker's exit
 * timer. Writes never block: ngx.print + ngx.flush(false); what the client has not taken yet is
 * the printed byte count minus `$bytes_sent` (read only when that difference could pass the
 * limit: each read of the variable allocates from the request pool). Past
 * `streams.max_buffered_bytes` the connection is closed (slow client).
 */
import * as config from "../config";
import * as util from "../util";
import * as log_line from "../log_line";
import * as model from "../request_model";
import * as ids from "../ids";
import * as auth from "../auth";
import * as cors from "../cors";
import * as rate_limit from "../rate_limit";
import * as streams from "../streams";
import * as log_fields from "../log_fields";

const get_header = util.get_header;
const sfind = string.find;
const gmatch = string.gmatch;
const ltype = type;
const tonum = tonumber;
const floor = math.floor;

type Context = model.DecideErrorContext;
type Args = { [name: string]: string | boolean | (string | boolean)[] | undefined };

const PRELUDE = "retry: 3000\n: connected\n\n";
const HEARTBEAT_COMMENT = ": heartbeat\n\n";
const RETRY_AFTER = { "Retry-After": "1" };
const WWW_AUTHENTICATE = { "WWW-Authenticate": "Bearer" };
const ENDPOINTS = { messages: "/api/v1/messages/stream", results: "/api/v1/results/stream" };
const TENANT_DICT = "beamline_streams";

function set_id_headers(c: Context): void {
    ngx.header["X-Trace-Id"] = c.trace_id;
    ngx.header["X-Request-Id"] = c.request_id;
    log_fields.tenant(c.tenant_id);
}

function fail(status: number, code: string, message: string, c: Context, details?: object, headers?: util.HeaderMap): never {
    set_id_headers(c);
    return util.error_response(status, code, message, details, c, headers);
}

function bad_param(name: string, rule: string, c: Context): never {
    return fail(400, "invalid_request", "invalid query parameter " + name + ": " + rule, c, { field: name });
}

/** A query parameter sent at most once with a value; a repeated or value-less one is a 400. */
function param(args: Args, name: string, c: Context): string | undefined {
    const v = args[name];
    if (v === undefined) return undefined;
    if (ltype(v) !== "string") return bad_param(name, "must be sent once, with a value", c);
    return v as string;
}

/** An integer parameter in [min, max], or the default. */
function int_param(args: Args, name: string, min: number, max: number, dflt: number | undefined, c: Context): number | undefined {
    const v = param(args, name, c);
    if (v === undefined) return dflt;
    if (v.length > 10 || sfind(v, "^%d+$")[0] === undefined) return bad_param(name, "must be an integer from " + min + " to " + max, c);
    const n = tonum(v) as number;
    if (n < min || n > max) return bad_param(name, "must be an integer from " + min + " to " + max, c);
    return n;
}

/** 1-128 printable ASCII characters. */
function id_param(args: Args, name: string, c: Context): string | undefined {
    const v = param(args, name, c);
    if (v === undefined) return undefined;
    if (v === "" || v.length > 128 || sfind(v, "[^ -~]")[0] !== undefined)
        return bad_param(name, "must be 1-128 printable ASCII characters", c);
    return v;
}

/** The ids headers (validated) and the ids context of every answer. */
function read_headers(): model.DecideHeaders {
    const hdr: model.DecideHeaders = {};
    for (const [name, label] of [
        ["x-tenant-id", "X-Tenant-ID"],
        ["x-trace-id", "X-Trace-ID"],
        ["x-request-id", "X-Request-ID"],
    ]) {
        const [value, multiple] = get_header(name);
        if (multiple !== undefined) {
            const c = model.error_context(undefined, hdr, label === "X-Trace-ID");
            return fail(400, "invalid_request", label + " header must be sent once", c, { header: label });
        }
        if (label === "X-Tenant-ID") hdr.tenant_id = value;
        else if (label === "X-Trace-ID") hdr.trace_id = value;
        else hdr.request_id = value;
    }
    const [tp] = get_header("traceparent");
    hdr.traceparent = tp;
    const [, herr] = model.check_headers(undefined, hdr);
    if (herr !== undefined) return fail(herr.status, herr.code, herr.message, herr.context, herr.details);
    return hdr;
}

/** Auth (§2 and §11): a header key, else `api_key` from the query. Nil when auth is off. */
function authenticate(args: Args): string | undefined {
    const [tenant, off] = auth.authenticate();
    if (off || tenant !== undefined) return tenant;
    const q = args["api_key"];
    if (ltype(q) === "string" && q !== "") {
        const [t] = auth.tenant_for_key(q as string);
        if (t !== undefined) return t;
    }
    const [trace] = get_header("x-trace-id");
    const [request] = get_header("x-request-id");
    const [tid] = get_header("x-tenant-id");
    const c = model.error_context(undefined, { tenant_id: tid, trace_id: trace, request_id: request }, false);
    return fail(401, "unauthorized", "missing or invalid API key", c, undefined, WWW_AUTHENTICATE);
}

/** The stream's tenant: X-Tenant-ID or the `tenant_id` query parameter (equal when both). */
function stream_tenant(args: Args, hdr: model.DecideHeaders, c: Context): string {
    const q = param(args, "tenant_id", c);
    if (q !== undefined && !ids.valid_tenant_id(q)) return bad_param("tenant_id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -", c);
    if (hdr.tenant_id !== undefined) {
        if (q !== undefined && q !== hdr.tenant_id) {
            return fail(400, "invalid_request", "tenant_id query parameter differs from the X-Tenant-ID header", c, { field: "tenant_id" });
        }
        return hdr.tenant_id;
    }
    if (q === undefined) return fail(400, "invalid_request", "missing X-Tenant-ID header", c, { header: "X-Tenant-ID" });
    c.tenant_id = q;
    return q;
}

function shared_dict(): NgxSharedDict | undefined {
    return ngx.shared[TENANT_DICT];
}

/** The results stream's query (§11.2), into `s`; returns close_after_ms (or nil). */
function results_query(args: Args, s: streams.Stream, c: Context): number | undefined {
    s.request_id = id_param(args, "request_id", c);
    s.assignment_id = id_param(args, "assignment_id", c);
    if (s.request_id === undefined && s.assignment_id === undefined) {
        return fail(400, "invalid_request", "request_id or assignment_id query parameter is required", c, { field: "request_id" });
    }
    s.provider_id = id_param(args, "provider_id", c);
    const ex = param(args, "provider_exclude", c);
    if (ex !== undefined) {
        if (ex.length > 4096 || sfind(ex, "[^ -~]")[0] !== undefined)
            return bad_param("provider_exclude", "must be a comma-separated list of provider ids", c);
        const set: { [p: string]: boolean } = {};
        for (const [p] of gmatch(ex, "[^,]+")) set[p] = true;
        s.exclude = set;
    }
    const once = param(args, "once", c);
    if (once !== undefined && once !== "true" && once !== "false") return bad_param("once", "must be true or false", c);
    s.once = once === "true" || args["once"] === true;
    return int_param(args, "close_after_ms", 100, 3600000, undefined, c);
}

/**
 * The SSE loop: returns the reason the stream ended. `slow_client` means the connection must
 * be closed without waiting for the unsent output.
 */
function run(s: streams.Stream, heartbeat_s: number, close_after_s: number | undefined, max_buffered: number): string {
    const hb_frame = s.kind === "results" ? undefined : HEARTBEAT_COMMENT;
    ngx.update_time();
    const start = ngx.now();
    const deadline = close_after_s !== undefined ? start + close_after_s : undefined;
    let next_hb = start + heartbeat_s;
    // printed bytes, and the `$bytes_sent` offset measured after the prelude was flushed
    let printed = PRELUDE.length;
    const offset = (tonum(ngx.var["bytes_sent"]) as number) - printed;
    let known_sent = printed;
    while (true) {
        if (s.closed !== undefined) return s.closed;
        let out: string[] | string | undefined;
        let nbytes = 0;
        let nev = 0;
        if (s.qn > 0) {
            const [q, n] = streams.take(s);
            if (s.once && n > 1) {
                for (let i = 1; i < n; i++) q[i] = undefined as unknown as string;
            }
            nev = s.once ? 1 : n;
            for (let i = 0; i < nev; i++) nbytes += q[i].length;
            out = q;
        } else {
            ngx.update_time();
            const now = ngx.now();
            if (deadline !== undefined && now >= deadline) return "close_after";
            if (now >= next_hb) {
                out = hb_frame !== undefined ? hb_frame : 'data: {"heartbeat":true,"ts":' + floor(now * 1000) + "}\n\n";
                nbytes = out.length;
                next_hb = now + heartbeat_s;
            } else {
                let wait = next_hb - now;
                if (deadline !== undefined && deadline - now < wait) wait = deadline - now;
                s.sema.wait(wait);
                continue;
            }
        }
        const [ok] = ngx.print(out);
        if (ok === undefined) return "client";
        ngx.flush(false);
        printed += nbytes;
        if (nev > 0) streams.count_events(s.kind, nev);
        if (s.once && nev > 0) return "once";
        if (printed - known_sent > max_buffered) {
            // what the client has not taken: only read $bytes_sent when it could be too much
            known_sent = (tonum(ngx.var["bytes_sent"]) as number) - offset;
            if (printed - known_sent > max_buffered) return "slow_client";
        }
    }
}

function serve(kind: streams.Kind): void {
    const cfg = config.get();
    const scfg = cfg.streams;
    const method = ngx.req.get_method();
    if (method !== "GET") {
        if (method === "OPTIONS" && cors.is_enabled()) return cors.preflight("GET, OPTIONS");
        cors.apply();
        const c = model.error_context(undefined, {}, false);
        set_id_headers(c);
        return util.method_not_allowed(cors.is_enabled() ? "GET, OPTIONS" : "GET", c);
    }
    cors.apply();
    if (kind === "messages" ? !scfg.messages_enabled : !scfg.results_enabled) {
        return util.error_response(404, "not_found", "no route for GET " + ENDPOINTS[kind]);
    }
    const [args] = ngx.req.get_uri_args(64);
    const key_tenant = authenticate(args);
    const hdr = read_headers();
    const c = model.error_context(undefined, hdr, false);
    const tenant = stream_tenant(args, hdr, c);
    const heartbeat_ms = int_param(args, "heartbeat_ms", kind === "results" ? 200 : 1000, 300000, scfg.heartbeat_ms, c) as number;
    const s = streams.new_stream(kind, tenant);
    if (s === undefined) {
        log_line.write(ngx.ERR, "beamline: cannot create a stream semaphore");
        return fail(500, "internal", "internal error", c);
    }
    const close_after_ms = kind === "results" ? results_query(args, s, c) : undefined;
    if (key_tenant !== undefined && key_tenant !== tenant) {
        return fail(403, "forbidden", "the API key is not valid for this tenant", c);
    }
    const [outcome, limit, window, retry] = rate_limit.check("streams", tenant);
    if (outcome === "unavailable") return fail(503, "unavailable", "the rate limiter is unavailable", c, undefined, RETRY_AFTER);
    if (outcome === "limited") {
        return fail(
            429,
            "rate_limit_exceeded",
            "rate limit of " + limit + " requests per " + window + " s exceeded",
            c,
            { endpoint: ENDPOINTS[kind], limit, window_seconds: window, retry_after_seconds: retry },
            { "Retry-After": retry, "X-RateLimit-Remaining": 0 },
        );
    }
    if (streams.is_exiting()) return fail(503, "unavailable", "the gateway is shutting down", c, undefined, RETRY_AFTER);
    if (streams.open_streams() >= scfg.max_per_worker) {
        return fail(503, "unavailable", "too many open streams on this gateway worker", c, undefined, RETRY_AFTER);
    }
    const dict = shared_dict();
    const tkey = "t|" + tenant;
    if (dict !== undefined) {
        const [n] = dict.incr(tkey, 1, 0);
        if (n !== undefined && n > scfg.max_per_tenant) {
            dict.incr(tkey, -1, 0);
            return fail(
                429,
                "rate_limit_exceeded",
                "too many open streams for this tenant (limit " + scfg.max_per_tenant + ")",
                c,
                { endpoint: ENDPOINTS[kind], limit: scfg.max_per_tenant },
                { "Retry-After": 1 },
            );
        }
    }
    const aerr = streams.attach(s);
    if (aerr !== undefined) {
        if (dict !== undefined) dict.incr(tkey, -1, 0);
        log_line.write(ngx.WARN, "beamline: cannot open a stream: ", aerr);
        return fail(503, "unavailable", "the stream cannot be opened", c, undefined, RETRY_AFTER);
    }
    // From here on the stream is registered: whatever happens, it is detached below.
    const [ok, res] = pcall(() => {
        set_id_headers(c);
        ngx.status = 200;
        const h = ngx.header;
        h["Content-Type"] = "text/event-stream";
        h["Cache-Control"] = "no-cache";
        h["X-Accel-Buffering"] = "no";
        ngx.on_abort(() => streams.close(s, "client"));
        ngx.print(PRELUDE);
        const [fok] = ngx.flush(true);
        if (fok === undefined) return "client";
        return run(s, heartbeat_ms / 1000, close_after_ms !== undefined ? close_after_ms / 1000 : undefined, scfg.max_buffered_bytes);
    });
    streams.detach(s);
    if (dict !== undefined) dict.incr(tkey, -1, 0);
    if (!ok) {
        log_line.write(ngx.ERR, "beamline: stream failed: ", res);
        return ngx.exit(ngx.ERROR);
    }
    if (res === "slow_client") {
        streams.count_dropped(kind, "slow_client");
        // close at once: the unsent output is dropped with the connection
        return ngx.exit(ngx.ERROR);
    }
}

export function messages_stream(): void {
    serve("messages");
}

export function results_stream(): void {
    serve("results");
}
