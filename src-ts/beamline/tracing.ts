/**
 * beamline.tracing — OpenTelemetry trace export (OTLP/HTTP with the JSON encoding).
 *
 * Per API request one SERVER span (its parent: the client's W3C `traceparent`; without one a new
 * trace whose id is the request's trace id when that is 32 hex digits or a UUID), and per Router
 * call one CLIENT span, child of the server span. The client span's context is what the Router
 * receives in `traceparent` (`router_traceparent`), so the Router's own spans hang below it.
 * Attributes follow the OpenTelemetry HTTP and messaging semantic conventions; the tenant is
 * `beamline.tenant_id`. Status ERROR on a 5xx (server span) and on any Router outcome but `ok`
 * (client span).
 *
 * Sampling: parent-based (a valid `traceparent`'s sampled flag decides), else the trace id ratio
 * of the spec (the low 52 bits of the trace id against `sample_ratio`: deterministic, so every
 * service with the same ratio keeps the same traces). An unsampled request still forwards a
 * `traceparent` (flag 00) so the Router's decision is consistent.
 *
 * Export: finished spans go to a bounded per-worker queue (overflow dropped and counted in
 * gateway_tracing_spans_dropped_total{reason="queue_full"}); a timer per worker POSTs them in
 * batches to `tracing.endpoint` (and a zero-delay timer as soon as a full batch is queued), never
 * on a request's path. A collector that refuses, is down or
 * is slower than `timeout_ms` costs that batch (reason "export_failed"), nothing else. On worker
 * exit the timer makes one last short attempt.
 *
 * Off (the default): `enabled()` is false and no function here runs per request.
 */
import * as dns from "./dns";
import * as ids from "./ids";
import * as json from "./json";
import * as log_line from "./log_line";
import * as metrics from "./metrics";
import type { NatsRouteConfig, TracingConfig } from "./config";
import tclear = require("table.clear");

const sfind = string.find;
const ssub = string.sub;
const smatch = string.match;
const sformat = string.format;
const sgsub = string.gsub;
const slower = string.lower;
const floor = math.floor;
const tonum = tonumber;
const concat = table.concat;
const new_span_id = ids.new_span_id;

/** OTLP span kinds and status codes (opentelemetry/proto/trace/v1/trace.proto). */
const KIND_SERVER = 2;
const KIND_CLIENT = 3;
const STATUS_ERROR = 2;

/** Route name (scripts/lib/render.js ROUTES) → http.route template, for the API routes. */
const HTTP_ROUTES: { [route: string]: string | undefined } = {
    decide: "/api/v1/routes/decide",
    messages: "/api/v1/messages",
    decision_lookup: "/api/v1/routes/decide/{id}",
};

interface Settings {
    host: string;
    port: number;
    path: string;
    host_header: string;
    /** Root spans are sampled when the trace id's low 52 bits are below this. */
    threshold: number;
    queue_size: number;
    batch_size: number;
    flush_seconds: number;
    timeout_ms: number;
    /** The export request's JSON up to the spans array (resource and scope). */
    head: string;
}

/**
 * One request's trace (ngx.ctx.beamline_trace while it runs, then the queue entry): the ids, the
 * Router call, and what the log phase adds. One table per request, only while tracing is on.
 */
export interface RequestTrace {
    trace_id: string;
    parent_id?: string;
    span_id: string;
    sampled: boolean;
    client_id?: string;
    client_start?: number;
    client_end?: number;
    subject?: string;
    outcome?: string;
    tenant?: string;
    request_id?: string;
    // Set by the log phase:
    /** Number of spans (1, or 2 with a finished Router call). */
    n?: number;
    start?: number;
    end?: number;
    method?: string;
    route?: string;
    path?: string;
    status?: number;
}

let on = false;
let s: Settings | undefined;

// The queue: records at [head, tail), `queued` spans in it.
let queue: RequestTrace[] = [];
let head = 1;
let tail = 1;
let queued = 0;
let busy = false;
/** An early flush (a full batch) is scheduled. */
let kicked = false;

/** Whether trace export is on (the only per-request cost when it is off). */
export function enabled(): boolean {
    return on;
}

/** Parses tracing.endpoint (validated by the schema): host, port, path. */
export function parse_endpoint(url: string): LuaMultiReturn<[string, number, string] | [undefined, undefined, undefined]> {
    let [host, rest] = smatch(url, "^http://(%[[^%]]+%])(.*)$");
    if (host === undefined) {
        [host, rest] = smatch(url, "^http://([^:/]+)(.*)$");
    }
    if (host === undefined || rest === undefined) return $multi(undefined, undefined, undefined);
    let port = 80;
    const [p, after] = smatch(rest, "^:(%d+)(.*)$");
    if (p !== undefined) {
        port = tonum(p) as number;
        rest = after as string;
    }
    const path = rest === "" ? "/" : rest;
    // ngx.socket.tcp takes an IPv6 address without brackets.
    const [bare] = smatch(host, "^%[(.*)%]$");
    return $multi(bare !== undefined ? bare : host, port, path);
}

/**
 * The sampling threshold of a ratio: root spans whose trace id's low 52 bits (13 hex digits,
 * exact in a double) are below it are kept.
 */
export function ratio_threshold(ratio: number): number {
    return ratio * 2 ** 52;
}

/** The trace-id ratio decision for a 32-hex trace id. */
export function ratio_sampled(trace_id: string, threshold: number): boolean {
    if (threshold >= 2 ** 52) return true;
    if (threshold <= 0) return false;
    return (tonum(ssub(trace_id, 20, 32), 16) as number) < threshold;
}

/** init_by_lua (master): reads tracing.*; workers inherit the result. */
export function configure(cfg: TracingConfig, version: string, nats_routes: NatsRouteConfig[]): void {
    on = false;
    s = undefined;
    if (!cfg.enabled) return;
    // The configured NATS routes (§12) are API routes too: their spans carry the path template.
    for (const r of nats_routes) HTTP_ROUTES[r.name] = r.path;
    const [host, port, path] = parse_endpoint(cfg.endpoint);
    if (host === undefined) {
        log_line.write(ngx.WARN, "beamline: tracing.endpoint is not an http:// URL; trace export is off");
        return;
    }
    const [service] = json.encode(cfg.service_name);
    const [ver] = json.encode(version);
    s = {
        host,
        port,
        path,
        host_header: port === 80 ? host : sfind(host, ":", 1, true)[0] !== undefined ? "[" + host + "]:" + port : host + ":" + port,
        threshold: ratio_threshold(cfg.sample_ratio),
        queue_size: cfg.queue_size,
        batch_size: cfg.batch_size,
        flush_seconds: cfg.flush_interval_ms / 1000,
        timeout_ms: cfg.timeout_ms,
        head:
            '{"resourceSpans":[{"resource":{"attributes":[' +
            '{"key":"service.name","value":{"stringValue":' +
            (service as string) +
            "}}," +
            '{"key":"service.version","value":{"stringValue":' +
            (ver as string) +
            "}}," +
            sattr("telemetry.sdk.name", "beamline-gateway") +
            "," +
            sattr("telemetry.sdk.language", "lua") +
            ']},"scopeSpans":[{"scope":{"name":"beamline.gateway","version":' +
            (ver as string) +
            '},"spans":[',
    };
    on = true;
}

/** init_worker_by_lua: starts this worker's export timer. */
export function start_worker(): void {
    if (!on || s === undefined) return;
    const [ok, err] = ngx.timer.every(s.flush_seconds, on_timer);
    if (ok === undefined) {
        log_line.write(ngx.ERR, "beamline: cannot start the trace export timer: ", err);
    }
}

/** A 32-hex trace id from the request's (32 hex or a UUID, lower case already), or nil. */
function trace_id_of(id: string | undefined): string | undefined {
    if (id === undefined) return undefined;
    let t = id;
    if (t.length === 36) {
        [t] = sgsub(t, "-", "");
    }
    if (t.length !== 32 || sfind(t, "[^0-9a-f]")[0] !== undefined || sfind(t, "^0+$")[0] !== undefined) return undefined;
    return t;
}

/** The span context of this request: from a valid traceparent, else a root. */
function begin(traceparent: string | undefined, trace_id: string | undefined): RequestTrace {
    const settings = s as Settings;
    let t: RequestTrace;
    const parent_trace = ids.parse_traceparent(traceparent);
    if (parent_trace !== undefined) {
        const tp = traceparent as string;
        const flags = tonum(ssub(tp, 54, 55), 16) as number;
        t = { trace_id: parent_trace, parent_id: ssub(tp, 37, 52), span_id: new_span_id(), sampled: flags % 2 === 1 };
    } else {
        const id = trace_id_of(trace_id) ?? ids.new_trace_id();
        t = { trace_id: id, span_id: new_span_id(), sampled: ratio_sampled(id, settings.threshold) };
    }
    ngx.ctx["beamline_trace"] = t;
    return t;
}

/**
 * Before the Router call: opens the client span and returns the `traceparent` the Router gets
 * (the client span's context). `traceparent` is the client's (valid or nil), `trace_id` the
 * request's effective trace id.
 */
export function router_traceparent(
    traceparent: string | undefined,
    trace_id: string,
    subject: string,
    tenant_id: string,
    request_id: string,
): string {
    let t = ngx.ctx["beamline_trace"] as RequestTrace | undefined;
    if (t === undefined) t = begin(traceparent, trace_id);
    t.tenant = tenant_id;
    t.request_id = request_id;
    const id = new_span_id();
    t.client_id = id;
    t.subject = subject;
    t.client_start = ngx.now();
    return "00-" + t.trace_id + "-" + id + (t.sampled ? "-01" : "-00");
}

/** After the Router call: `outcome` is "ok", the Router's error code or the failure. */
export function router_done(outcome: string): void {
    const t = ngx.ctx["beamline_trace"] as RequestTrace | undefined;
    if (t === undefined || t.client_id === undefined) return;
    ngx.update_time();
    t.client_end = ngx.now();
    t.outcome = outcome;
}

/** Byte → its percent-encoding, for the bytes safe_path replaces. */
const PERCENT: { [c: string]: string } = {};
for (let b = 0; b < 256; b++) PERCENT[string.char(b)] = sformat("%%%02X", b);

/** Printable ASCII only, at most 256 bytes (url.path comes from the client). */
function safe_path(p: string): string {
    let out = p;
    if (sfind(out, "[^!-~]")[0] !== undefined) {
        [out] = sgsub(out, "[^!-~]", PERCENT);
    }
    return out.length > 256 ? ssub(out, 1, 256) : out;
}

/** log_by_lua (tracing on): queues the spans of a sampled API request. */
export function log_phase(): void {
    const v = ngx.var;
    const internal = ngx.req.is_internal();
    let route = v["beamline_route"];
    // nginx's own errors (error_page) lost the route: take it from the request URI.
    if (internal && (route === undefined || route === "")) route = v["beamline_uri_route"];
    if (route === undefined) return;
    const http_route = HTTP_ROUTES[route];
    if (http_route === undefined) return;
    let t = ngx.ctx["beamline_trace"] as RequestTrace | undefined;
    if (t === undefined) {
        t = begin(v["http_traceparent"], v["sent_http_x_trace_id"]);
    }
    if (!t.sampled) return;
    const settings = s as Settings;
    const n = t.client_id !== undefined && t.client_end !== undefined ? 2 : 1;
    if (queued + n > settings.queue_size) {
        metrics.tracing_dropped("queue_full", n);
        return;
    }
    let method: string | undefined;
    let path: string | undefined;
    if (internal) {
        // The method and path as they came in (conf.d/00-http.conf), not the error_page redirect's.
        method = v["beamline_request_method"];
        path = v["beamline_raw_path"];
    }
    if (method === undefined || method === "") method = ngx.req.get_method();
    // A fixed route's path is its template; a templated one's is the request's.
    if (path === undefined || path === "") path = sfind(http_route, "{", 1, true)[0] !== undefined ? v["uri"] : http_route;
    if (t.tenant === undefined) {
        t.tenant = v["beamline_tenant_id"];
        t.request_id = v["sent_http_x_request_id"];
    }
    ngx.update_time();
    t.n = n;
    t.start = ngx.req.start_time();
    t.end = ngx.now();
    t.method = method;
    t.route = http_route;
    t.path = path;
    t.status = ngx.status;
    queue[tail] = t;
    tail++;
    queued += n;
    // A full batch goes out now rather than at the next tick (the queue stays short under load).
    if (queued >= settings.batch_size && !busy && !kicked) {
        kicked = true;
        const [ok] = ngx.timer.at(0, on_kick);
        if (ok === undefined) kicked = false;
    }
}

/** Epoch seconds (ms precision) as OTLP's uint64 nanoseconds, a decimal string. */
function nanos(t: number): string {
    return sformat("%.0f000000", floor(t * 1000 + 0.5));
}

/** A JSON string literal; most values need no escaping (validated ids, route names). */
function jstr(v: string): string {
    // Printable ASCII but `"` and backslash needs no escaping.
    if (sfind(v, "[^ !#-[%]-~]")[0] === undefined) return '"' + v + '"';
    return json.encode(v)[0] as string;
}

/** `{"key":…,"value":{"stringValue":…}}` */
function sattr(key: string, value: string): string {
    return '{"key":"' + key + '","value":{"stringValue":' + jstr(value) + "}}";
}

/** Per (method, route): the server span's fixed part, built once. */
const server_heads: { [key: string]: string } = {};
function server_head(method: string, route: string): string {
    const key = method + " " + route;
    let h = server_heads[key];
    if (h === undefined) {
        h =
            '{"name":' +
            jstr(key) +
            ',"kind":' +
            KIND_SERVER +
            ',"attributes":[' +
            sattr("http.request.method", method) +
            "," +
            sattr("http.route", route) +
            "," +
            sattr("url.scheme", "http") +
            ',{"key":"url.path","value":{"stringValue":';
        server_heads[key] = h;
    }
    return h;
}

/** Per subject: the client span's fixed part, built once. */
const client_heads: { [subject: string]: string } = {};
function client_head(subject: string): string {
    let h = client_heads[subject];
    if (h === undefined) {
        h =
            '{"name":' +
            jstr("send " + subject) +
            ',"kind":' +
            KIND_CLIENT +
            ',"attributes":[' +
            sattr("messaging.system", "nats") +
            "," +
            sattr("messaging.destination.name", subject) +
            "," +
            sattr("messaging.operation.name", "request") +
            "," +
            sattr("messaging.operation.type", "send") +
            "," +
            sattr("messaging.operation", "publish") +
            ',{"key":"beamline.router.outcome","value":{"stringValue":';
        client_heads[subject] = h;
    }
    return h;
}

/** A string buffer indexed from 1 as Lua sees it (an object, so TypeScriptToLua shifts no index). */
type Buffer = { [i: number]: string };

/**
 * Appends the JSON of a request's spans (server, then client, comma-separated) to `out` from
 * index `i`; returns the next free index.
 */
export function encode_record(t: RequestTrace, out: Buffer, i: number): number {
    const status = t.status as number;
    const error = status >= 500;
    const tenant = t.tenant !== undefined && t.tenant !== "" ? t.tenant : undefined;
    out[i] = server_head(t.method as string, t.route as string);
    out[i + 1] = jstr(safe_path(t.path as string));
    out[i + 2] = '}},{"key":"http.response.status_code","value":{"intValue":';
    out[i + 3] = status as unknown as string;
    out[i + 4] = "}}";
    i += 5;
    if (tenant !== undefined) {
        out[i] = "," + sattr("beamline.tenant_id", tenant);
        i++;
    }
    if (t.request_id !== undefined && t.request_id !== "") {
        out[i] = "," + sattr("beamline.request_id", t.request_id);
        i++;
    }
    out[i] = error
        ? ',{"key":"error.type","value":{"stringValue":"' +
          status +
          '"}}],"status":{"code":' +
          STATUS_ERROR +
          ',"message":"HTTP ' +
          status +
          '"}'
        : "]";
    i = span_ids(out, i + 1, t.trace_id, t.span_id, t.parent_id, t.start as number, t.end as number);
    if (t.n === 2) {
        const outcome = t.outcome ?? "";
        const failed = outcome !== "ok";
        out[i] = ",";
        out[i + 1] = client_head(t.subject ?? "");
        out[i + 2] = jstr(outcome);
        out[i + 3] = "}}";
        i += 4;
        if (tenant !== undefined) {
            out[i] = "," + sattr("beamline.tenant_id", tenant);
            i++;
        }
        out[i] = failed
            ? "," + sattr("error.type", outcome) + '],"status":{"code":' + STATUS_ERROR + ',"message":' + jstr(outcome) + "}"
            : "]";
        i = span_ids(out, i + 1, t.trace_id, t.client_id as string, t.span_id, t.client_start as number, t.client_end as number);
    }
    return i;
}

/** The ids and times that end a span's JSON object; returns the next free index. */
function span_ids(
    out: Buffer,
    i: number,
    trace_id: string,
    span_id: string,
    parent_id: string | undefined,
    start: number,
    end: number,
): number {
    out[i] = ',"traceId":"';
    out[i + 1] = trace_id;
    out[i + 2] = '","spanId":"';
    out[i + 3] = span_id;
    out[i + 4] = parent_id !== undefined ? '","parentSpanId":"' + parent_id : "";
    out[i + 5] = '","startTimeUnixNano":"';
    out[i + 6] = nanos(start);
    out[i + 7] = '","endTimeUnixNano":"';
    out[i + 8] = nanos(end);
    out[i + 9] = '"}';
    return i + 10;
}

/**
 * POSTs one export request; true when the collector answered 2xx. HTTP/1.1 with keep-alive
 * when the answer has a Content-Length, else the connection is closed.
 */
function post(settings: Settings, body: string, timeout_ms: number): LuaMultiReturn<[boolean, string | undefined]> {
    const sock = ngx.socket.tcp();
    sock.settimeouts(timeout_ms, timeout_ms, timeout_ms);
    // A hosts-file name (localhost) by its address; any other name through nginx's resolver (dns.*).
    const [ok, cerr] = sock.connect(dns.peer_address(settings.host), settings.port);
    if (ok === undefined) return $multi(false, "connect: " + cerr);
    const [sent, serr] = sock.send([
        "POST ",
        settings.path,
        " HTTP/1.1\r\nHost: ",
        settings.host_header,
        "\r\nContent-Type: application/json\r\nUser-Agent: beamline-gateway\r\nContent-Length: ",
        body.length,
        "\r\n\r\n",
        body,
    ]);
    if (sent === undefined) {
        sock.close();
        return $multi(false, "send: " + serr);
    }
    const [line, rerr] = sock.receive("*l");
    if (line === undefined) {
        sock.close();
        return $multi(false, "receive: " + rerr);
    }
    const [code] = smatch(line, "^HTTP/1%.%d (%d%d%d)");
    const status = code !== undefined ? (tonum(code) as number) : 0;
    let length: number | undefined;
    let keep = true;
    for (;;) {
        const [h, herr] = sock.receive("*l");
        if (h === undefined) {
            sock.close();
            return $multi(false, "receive: " + herr);
        }
        if (h === "") break;
        const [name, value] = smatch(h, "^([^:]+):%s*(.-)%s*$");
        if (name !== undefined) {
            const lname = slower(name);
            if (lname === "content-length") length = tonum(value);
            else if (lname === "connection" && slower(value as string) === "close") keep = false;
        }
    }
    if (length !== undefined && keep) {
        let berr: string | undefined;
        if (length > 0) [, berr] = sock.receive(length);
        if (berr !== undefined) {
            sock.close();
        } else {
            sock.setkeepalive(60000, 4);
        }
    } else {
        sock.close();
    }
    if (status < 200 || status > 299) return $multi(false, "HTTP status " + status);
    return $multi(true, undefined);
}

let last_warning = 0;

// The export request is assembled here (reused: cleared after each POST).
const parts: Buffer = {};

/** Exports what is queued, one batch at a time; a failed batch is dropped and counted. */
function flush(timeout_ms: number): void {
    const settings = s as Settings;
    while (head < tail) {
        let spans = 0;
        let i = 2;
        parts[1] = settings.head;
        while (head < tail && spans < settings.batch_size) {
            const t = queue[head];
            queue[head] = undefined as unknown as RequestTrace;
            head++;
            if (spans > 0) {
                parts[i] = ",";
                i++;
            }
            i = encode_record(t, parts, i);
            spans += t.n as number;
        }
        parts[i] = "]}]}]}";
        queued -= spans;
        if (head === tail) {
            // Empty: start the array over so its indexes do not grow forever.
            queue = [];
            head = 1;
            tail = 1;
        }
        const body = concat(parts as string[], "", 1, i);
        tclear(parts);
        const [ok, err] = post(settings, body, timeout_ms);
        if (ok) {
            metrics.tracing_exported(spans);
        } else {
            metrics.tracing_dropped("export_failed", spans);
            ngx.update_time();
            const now = ngx.now();
            // The collector's trouble is not the gateway's: a warning, at most one per 10 s per worker.
            if (now - last_warning >= 10) {
                last_warning = now;
                log_line.write(
                    ngx.WARN,
                    "beamline: trace export to ",
                    settings.host,
                    ":",
                    settings.port,
                    " failed (",
                    err,
                    "); ",
                    spans,
                    " spans dropped",
                );
            }
            return;
        }
    }
}

/** ngx.timer.every callback; on worker exit one last attempt with a short timeout. */
function on_timer(premature: boolean): void {
    if (busy || s === undefined) return;
    busy = true;
    const timeout = premature ? (s.timeout_ms < 500 ? s.timeout_ms : 500) : s.timeout_ms;
    const [ok, err] = pcall(flush, timeout);
    busy = false;
    if (!ok) log_line.write(ngx.ERR, "beamline: trace export failed: ", err);
}

/** ngx.timer.at callback of an early flush. */
function on_kick(premature: boolean): void {
    kicked = false;
    on_timer(premature);
}

/** For tests: how many spans wait in this worker's queue. */
export function queued_spans(): number {
    return queued;
}
