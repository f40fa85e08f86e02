/**
 * beamline.traffic — the traffic switch from the old gateways (migration.*, docs/RUNBOOK.md).
 *
 * Split: every API request (decide, messages, the decision lookup) is answered either here (the
 * "new" side) or by the old gateway (`legacy`, proxied by nginx: `ngx.exec("@beamline_legacy")`).
 * The side is `bucket(tenant) < share_percent` with `bucket = crc32(tenant) % 100`: stable for a
 * tenant at a given share, and raising the share only adds tenants to the new side. The tenant is
 * the X-Tenant-ID header; without it (legacy Nest bodies) `message.tenant_id`, else a top-level
 * `tenant_id`, of the JSON body; else "" (one bucket for all of them). `X-Beamline-Gateway:
 * legacy|new` forces a side (migration.allow_override, for clients in migration.override_from).
 * With auth on, the API key, the key's tenant and the tenant's rate limit are checked before the
 * split, for both sides (the front door, `admit`): the old gateway never sees a request this one
 * would have refused, and the override is only honoured for requests that passed.
 *
 * Shadow (migration.shadow): the request is also sent to the side that did not answer it, and
 * both answers (status, JSON body without volatile keys) are compared and counted in
 * gateway_shadow_comparisons_total{result}. The client's response is never touched or delayed:
 * the response body is copied by a body filter, and the mirrored request is sent from a timer
 * started in the log phase, i.e. after the response went out. The mirror goes through unix
 * sockets of this nginx (rendered in conf.d/20-gateway.conf): one runs the new path without the
 * split, the other is a plain proxy to the old gateway (nginx resolves its name and pools its
 * connections). At most `max_concurrency` mirrors per worker are in flight; more are dropped
 * and counted in gateway_shadow_dropped_total{reason}, as are bodies over `max_body_bytes`.
 *
 * Off (migration.enabled false) this module is never called on a request: phases.init only
 * wraps the API handlers when it is on.
 */
import * as json from "./json";
import * as util from "./util";
import * as metrics from "./metrics";
import type { MigrationConfig } from "./config";
import * as log_line from "./log_line";

declare global {
    /** @noSelf */
    interface NgxApi {
        /** Internal redirect to a URI or a named location (`@name`); ends the current handler. */
        exec(uri: string, args?: string): never;
        /** Filter arguments: body_filter_by_lua's [1] chunk and [2] eof. */
        arg: { [index: number]: string | boolean | undefined };
    }
    interface NgxTcpSocket {
        /** Connects to a unix domain socket: `"unix:/path/to.sock"`. */
        connect(this: NgxTcpSocket, unix_path: string): LuaMultiReturn<[1, undefined] | [undefined, string]>;
    }
}

const slower = string.lower;
const sfind = string.find;
const smatch = string.match;
const ssub = string.sub;
const sgsub = string.gsub;
const sgmatch = string.gmatch;
const concat = table.concat;
const random = math.random;

type Side = "new" | "legacy";

// Set once by configure() in the master (init_by_lua); workers inherit them.
let share = 0;
let allow_override = false;
let body_limit = 1048576;
let shadow_on = false;
let direction: "other" | "legacy" | "new" = "other";
let sample = 100;
let max_concurrency = 32;
let max_body = 65536;
let shadow_timeout_ms = 10000;
let ignore: { [key: string]: boolean } = {};

/** Mirrors in flight in this worker (the timers run in the worker that started them). */
let inflight = 0;

export function configure(m: MigrationConfig, body_limit_bytes: number): void {
    share = m.share_percent;
    allow_override = m.allow_override;
    body_limit = body_limit_bytes;
    shadow_on = m.enabled && m.shadow.enabled;
    direction = m.shadow.direction;
    sample = m.shadow.sample_percent;
    max_concurrency = m.shadow.max_concurrency;
    max_body = m.shadow.max_body_bytes;
    shadow_timeout_ms = m.shadow.timeout_ms;
    ignore = {};
    for (const k of m.shadow.ignore_fields) ignore[k] = true;
}

/** True when shadow mode is on (the log phase then looks for a request to mirror). */
export function shadow_enabled(): boolean {
    return shadow_on;
}

/** 0..99: the tenant's bucket. CRC-32 (IEEE), the same on every worker, host and restart. */
export function bucket(tenant: string): number {
    return ngx.crc32_short(tenant) % 100;
}

/** `message.tenant_id` (legacy Nest body), else `tenant_id`, of a JSON object body; else "". */
export function tenant_from_body(raw: string): string {
    // Cheap refusal before decoding: no "tenant_id" in the bytes, no tenant.
    if (sfind(raw, "tenant_id", 1, true)[0] === undefined) return "";
    const [body] = json.decode(raw);
    if (!json.is_object(body)) return "";
    const b = body as { [key: string]: unknown };
    const message = b["message"];
    if (json.is_object(message)) {
        const t = (message as { [key: string]: unknown })["tenant_id"];
        if (typeof t === "string") return t;
    }
    const t = b["tenant_id"];
    return typeof t === "string" ? t : "";
}

/** The tenant the split uses (see the module comment). May read the request body. */
function request_tenant(): string {
    const t = ngx.var["http_x_tenant_id"];
    if (t !== undefined) return t;
    if (ngx.req.get_method() !== "POST") return "";
    const [raw] = util.read_body(body_limit);
    if (raw === undefined || raw === "") return "";
    return tenant_from_body(raw);
}

/**
 * The side by share and tenant; 0 % and 100 % need no tenant (and read no body). With auth on,
 * a request that names no tenant is split by its API key's tenant (`key_tenant`).
 */
function side_by_share(key_tenant: string | undefined): Side {
    if (share <= 0) return "legacy";
    if (share >= 100) return "new";
    let t = request_tenant();
    if (t === "" && key_tenant !== undefined) t = key_tenant;
    return bucket(t) < share ? "new" : "legacy";
}

/**
 * The front door (auth on): checks the API key, the key's tenant and the tenant's rate limit
 * before the split, for both sides (handlers/api.ts `admit`); ends the request on a failure.
 * Returns the key's tenant, or nil for a request that is not an API call (answered here).
 */
export type Admit = (route: string) => string | undefined;

/**
 * The content phase of an API route while the switch is on: with auth on, the front door first
 * (`admit`: trust is decided before any side is picked); then picks the side, marks the request
 * for the shadow, and either runs `handler` (the new path) or hands the request to nginx's proxy
 * to the old gateway. The override header counts only when `allow_override` is on, the client
 * is in `override_from`, and (auth on) the request passed the front door.
 */
export function dispatch(route: string, handler: () => void, admit: Admit | undefined): void {
    const v = ngx.var;
    let side: Side | undefined;
    let key_tenant: string | undefined;
    if (admit !== undefined) {
        key_tenant = admit(route);
        // Not an API call (405, CORS preflight): answered here, never by the old gateway.
        if (key_tenant === undefined) side = "new";
    }
    if (side === undefined && allow_override && v["beamline_override_client"] === "1") {
        const o = v["http_x_beamline_gateway"];
        if (o !== undefined) {
            const lo = slower(o);
            if (lo === "new" || lo === "legacy") side = lo;
        }
    }
    if (side === undefined) side = side_by_share(key_tenant);
    metrics.traffic_request(side);
    if (shadow_on) {
        // Read by the log phase (after an ngx.exec too: nginx variables survive it, ngx.ctx not).
        v["beamline_side"] = side;
        if ((direction === "other" || direction !== side) && (sample >= 100 || random(100) <= sample)) {
            v["beamline_shadow"] = "1";
        }
    }
    if (side === "legacy") {
        strip_hop_by_hop();
        return ngx.exec("@beamline_legacy");
    }
    ngx.header["X-Beamline-Gateway"] = "new";
    handler();
}

/** Never removed for being named in Connection: nginx frames the request with these itself. */
const FRAMING: { [name: string]: boolean } = { host: true, "content-length": true, "transfer-encoding": true };

/**
 * Adds to `out` the header names listed in `value` (a Connection or Proxy-Connection value, or
 * several), lower-cased; framing headers are left out.
 */
function add_tokens(value: NgxHeaderValue | undefined, out: { [name: string]: boolean }): void {
    if (value === undefined) return;
    if (typeof value !== "string") {
        for (const x of value as string[]) add_tokens(x, out);
        return;
    }
    for (const [token] of sgmatch(slower(value), "[^%s,]+")) {
        if (FRAMING[token] !== true) out[token] = true;
    }
}

/**
 * The hop-by-hop headers of this request (RFC 9110 §7.6.1): those the client named in Connection
 * and in the obsolete Proxy-Connection, and Proxy-Connection itself. Nil when there are none
 * (a plain `Connection: keep-alive` names nothing else).
 */
function hop_by_hop(headers: { [name: string]: NgxHeaderValue | undefined }): { [name: string]: boolean } | undefined {
    const c = headers["connection"];
    const pc = headers["proxy-connection"];
    if (pc === undefined && (c === undefined || c === "keep-alive" || c === "close")) return undefined;
    const out: { [name: string]: boolean } = {};
    add_tokens(c, out);
    add_tokens(pc, out);
    if (pc !== undefined) out["proxy-connection"] = true;
    return out;
}

/** Before the proxy to the old gateway: removes the request's hop-by-hop headers. */
function strip_hop_by_hop(): void {
    const hop = hop_by_hop(util.request_headers());
    if (hop === undefined) return;
    for (const [name] of pairs(hop)) {
        ngx.req.clear_header(name as string);
    }
}

/** True inside the shadow listener's requests (the mirrored new path): no stored side effects. */
export function is_shadow_request(): boolean {
    return shadow_on && ngx.var["beamline_side"] === "shadow";
}

// ---------------------------------------------------------------------------------------------
// Shadow: capture (body filter, log phase), mirror (timer), compare
// ---------------------------------------------------------------------------------------------

interface Capture {
    parts: string[];
    size: number;
    too_large: boolean;
}

/** body_filter_by_lua of the API routes (only rendered with shadow on): copies the response. */
export function capture_chunk(): void {
    if (ngx.var["beamline_shadow"] !== "1") return;
    const ctx = ngx.ctx;
    let c = ctx["beamline_capture"] as Capture | undefined;
    if (c === undefined) {
        c = { parts: [], size: 0, too_large: false };
        ctx["beamline_capture"] = c;
    }
    if (c.too_large) return;
    const chunk = ngx.arg[1];
    if (typeof chunk === "string" && chunk !== "") {
        c.size += chunk.length;
        if (c.size > max_body) {
            c.too_large = true;
            c.parts = [];
            return;
        }
        c.parts.push(chunk);
    }
}

/** Request headers not copied to the mirror (hop-by-hop, recomputed, or the switch's own). */
const SKIP_HEADERS: { [name: string]: boolean } = {
    host: true,
    connection: true,
    "keep-alive": true,
    "proxy-connection": true,
    te: true,
    trailer: true,
    "transfer-encoding": true,
    upgrade: true,
    "content-length": true,
    expect: true,
    "x-beamline-gateway": true,
};

interface Job {
    route: string;
    side: Side;
    request: string[];
    status: number;
    body: string;
    trace_id: string;
    request_id: string;
    tenant_id: string;
}

function drop(reason: string): void {
    metrics.shadow_dropped(reason);
}

/**
 * The HTTP/1.0 request the mirror sends (the connection closes after the answer); without the
 * fixed hop-by-hop headers and those the client named in Connection (`hop`).
 */
function build_request(
    method: string,
    uri: string,
    headers: { [name: string]: NgxHeaderValue | undefined },
    body: string,
    hop: { [name: string]: boolean } | undefined,
): string[] {
    const out: string[] = [method, " ", uri, " HTTP/1.0\r\nHost: beamline-shadow\r\nContent-Length: ", tostring(body.length), "\r\n"];
    for (const [k, v] of pairs(headers)) {
        const name = k as string;
        const lname = slower(name);
        if (SKIP_HEADERS[lname] === true || (hop !== undefined && hop[lname] === true)) continue;
        if (typeof v === "string") {
            out.push(name, ": ", v, "\r\n");
        } else {
            for (const x of v as string[]) out.push(name, ": ", x, "\r\n");
        }
    }
    out.push("\r\n", body);
    return out;
}

/**
 * log_by_lua (with shadow on): when this request is to be mirrored, captures it and its answer
 * and starts the mirror in a timer. Never waits for anything.
 */
export function after_response(): void {
    const v = ngx.var;
    if (v["beamline_shadow"] !== "1") return;
    const c = ngx.ctx["beamline_capture"] as Capture | undefined;
    if (c !== undefined && c.too_large) return drop("too_large");
    if (inflight >= max_concurrency) return drop("concurrency");
    let body = ngx.req.get_body_data();
    if (body === undefined) {
        // A body nginx wrote to a temp file is larger than the in-memory buffer (64 KiB at most).
        if (ngx.req.get_body_file() !== undefined) return drop("too_large");
        body = "";
    }
    if (body.length > max_body) return drop("too_large");
    const [headers] = ngx.req.get_headers(100, true);
    const job: Job = {
        route: v["beamline_route"] ?? "",
        side: v["beamline_side"] === "new" ? "new" : "legacy",
        request: build_request(ngx.req.get_method(), v["request_uri"] ?? "/", headers, body, hop_by_hop(util.request_headers())),
        status: ngx.status,
        body: c !== undefined ? concat(c.parts) : "",
        trace_id: v["sent_http_x_trace_id"] ?? v["http_x_trace_id"] ?? "",
        request_id: v["sent_http_x_request_id"] ?? v["http_x_request_id"] ?? "",
        tenant_id: v["http_x_tenant_id"] ?? v["beamline_tenant_id"] ?? "",
    };
    inflight += 1;
    const [ok] = ngx.timer.at(0, mirror, job);
    if (ok === undefined) {
        inflight -= 1;
        drop("timer");
    }
}

/** Parses a raw HTTP/1.x response: status and body, or nil and why. */
export function parse_response(raw: string): LuaMultiReturn<[number, string] | [undefined, string]> {
    const [code] = smatch(raw, "^HTTP/%d%.%d (%d%d%d)");
    if (code === undefined) return $multi(undefined, "malformed response");
    const [, hend] = sfind(raw, "\r\n\r\n", 1, true);
    if (hend === undefined) return $multi(undefined, "truncated response");
    return $multi(tonumber(code) as number, ssub(raw, hend + 1));
}

/** One request over a unix socket of this nginx; the whole answer, bounded. */
function exchange(target: Side, request: string[]): LuaMultiReturn<[string, undefined] | [undefined, string]> {
    let prefix = ngx.config.prefix();
    if (ssub(prefix, -1) !== "/") prefix = prefix + "/";
    const sock = ngx.socket.tcp();
    sock.settimeout(shadow_timeout_ms);
    const [ok, cerr] = sock.connect("unix:" + prefix + "shadow-" + target + ".sock");
    if (ok === undefined) return $multi(undefined, "connect: " + cerr);
    const [sent, serr] = sock.send(request);
    if (sent === undefined) {
        sock.close();
        return $multi(undefined, "send: " + serr);
    }
    const parts: string[] = [];
    let size = 0;
    const limit = max_body + 16384; // the body plus room for the status line and headers
    for (;;) {
        const [data, rerr] = sock.receiveany(65536);
        if (data === undefined) {
            if (rerr === "closed") break;
            sock.close();
            return $multi(undefined, "receive: " + rerr);
        }
        size += data.length;
        if (size > limit) {
            sock.close();
            return $multi(undefined, "response over " + max_body + " bytes");
        }
        parts.push(data);
    }
    sock.close();
    return $multi(concat(parts), undefined);
}

function key_path(at: string, k: unknown): string {
    return typeof k === "number" ? at + "[" + (k - 1) + "]" : at === "" ? tostring(k) : at + "." + tostring(k);
}

/** The first path where two decoded JSON values differ (keys in `skip` ignored), or nil. */
function diff(a: unknown, b: unknown, at: string, skip: { [key: string]: boolean }): string | undefined {
    if (type(a) !== "table" || type(b) !== "table") {
        return a === b ? undefined : at === "" ? "$" : at;
    }
    const ta = a as { [k: string]: unknown };
    const tb = b as { [k: string]: unknown };
    for (const [k, va] of pairs(ta)) {
        if (typeof k === "string" && skip[k] === true) continue;
        const d = diff(va, tb[k as string], key_path(at, k), skip);
        if (d !== undefined) return d;
    }
    for (const [k] of pairs(tb)) {
        if (typeof k === "string" && skip[k] === true) continue;
        if (ta[k as string] === undefined) return key_path(at, k);
    }
    return undefined;
}

/**
 * Compares two answers: the same status and the same body, JSON bodies compared as values with
 * the keys in `skip` ignored at any depth. Returns true, or false and where they differ
 * ("status", "body" for non-JSON bodies, else the JSON path, e.g. "error.code").
 */
export function compare(
    status_a: number,
    body_a: string,
    status_b: number,
    body_b: string,
    skip: { [key: string]: boolean },
): LuaMultiReturn<[boolean, string | undefined]> {
    if (status_a !== status_b) return $multi(false, "status");
    if (body_a === body_b) return $multi(true, undefined);
    const [ja, ea] = json.decode(body_a);
    const [jb, eb] = json.decode(body_b);
    if (ea !== undefined || eb !== undefined) return $multi(false, "body");
    const d = diff(ja, jb, "", skip);
    return $multi(d === undefined, d);
}

/** A path for the log: printable, short (keys come from response bodies). */
function safe_path(p: string): string {
    const [clean] = sgsub(ssub(p, 1, 120), "[^%w_.%[%]%-]", "?");
    return clean;
}

// Error lines are at most one per second per worker (a down side would fail every mirror).
let last_error_log = 0;
let suppressed_errors = 0;

function log_error(job: Job, target: Side, why: string): void {
    const now = ngx.now();
    if (now - last_error_log < 1) {
        suppressed_errors += 1;
        return;
    }
    last_error_log = now;
    const more = suppressed_errors > 0 ? " (" + suppressed_errors + " more since the last line)" : "";
    suppressed_errors = 0;
    log_line.write(
        ngx.WARN,
        "beamline: shadow error route=",
        job.route,
        " target=",
        target,
        " error=",
        why,
        " trace_id=",
        log_line.field(job.trace_id),
        " request_id=",
        log_line.field(job.request_id),
        more,
    );
}

function mirror_once(job: Job): void {
    const target: Side = job.side === "new" ? "legacy" : "new";
    const [raw, err] = exchange(target, job.request);
    if (raw === undefined) {
        metrics.shadow_result("error");
        return log_error(job, target, err as string);
    }
    const [status, body] = parse_response(raw);
    // 599: the shadow listener could not reach the old gateway (see 20-gateway.conf).
    if (status === undefined || status === 599) {
        metrics.shadow_result("error");
        return log_error(job, target, status === 599 ? "old gateway unreachable or timed out" : (body as string));
    }
    const [same, where] = compare(job.status, job.body, status, body as string, ignore);
    if (same) {
        metrics.shadow_result("match");
        return;
    }
    metrics.shadow_result("mismatch");
    // One line, no bodies or headers: where they differ and the ids to find both answers. The ids
    // of a request the old side answered are the client's raw headers: `field` escapes them.
    log_line.write(
        ngx.WARN,
        "beamline: shadow mismatch route=",
        job.route,
        " answered_by=",
        job.side,
        " status=",
        job.status,
        " ",
        target,
        "_status=",
        status,
        " diff=",
        safe_path(where ?? "?"),
        " trace_id=",
        log_line.field(job.trace_id),
        " request_id=",
        log_line.field(job.request_id),
        " tenant_id=",
        log_line.field(job.tenant_id),
    );
}

/** ngx.timer.at callback: one mirror and its comparison. */
function mirror(premature: boolean, job: Job): void {
    if (premature) {
        inflight -= 1;
        return drop("shutdown");
    }
    const [ok, err] = pcall(mirror_once, job);
    inflight -= 1;
    if (!ok) {
        metrics.shadow_result("error");
        log_line.write(ngx.ERR, "beamline: shadow comparison failed: ", err);
    }
}
