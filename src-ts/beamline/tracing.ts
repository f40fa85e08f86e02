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
import * as ids from "./ids";
import * as json from "./json";
import * as metrics from "./metrics";
import type { TracingConfig } from "./config";

const sfind = string.find;
const ssub = string.sub;
const smatch = string.match;
const sformat = string.format;
const sgsub = string.gsub;
const slower = string.lower;
const floor = math.floor;
const tonum = tonumber;
const concat = table.concat;

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

/** Per request (ngx.ctx.beamline_trace), only while tracing is on. */
interface RequestTrace {
    trace_id: string;
    parent_id?: string;
    span_id: string;
    sampled: boolean;
    client_id?: string;
    client_start?: number;
    client_end?: number;
    subject?: string;
    outcome?: string;
}

/** A finished request's spans, waiting in the queue. */
interface Record {
    t: RequestTrace;
    /** Number of spans (1 or 2). */
    n: number;
    name: string;
    start: number;
    end: number;
    method: string;
    route: string;
    path: string;
    status: number;
    tenant: string;
    request_id: string;
}

let on = false;
let s: Settings | undefined;

// The queue: records at [head, tail), `queued` spans in it.
let queue: Record[] = [];
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

function attr(key: string, value: string): string {
    const [v] = json.encode(value);
    return '{"key":"' + key + '","value":{"stringValue":' + (v as string) + "}}";
}

/** init_by_lua (master): reads tracing.*; workers inherit the result. */
export function configure(cfg: TracingConfig, version: string): void {
    on = false;
    s = undefined;
    if (!cfg.enabled) return;
    const [host, port, path] = parse_endpoint(cfg.endpoint);
    if (host === undefined) {
        ngx.log(ngx.WARN, "beamline: tracing.endpoint is not an http:// URL; trace export is off");
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
            attr("telemetry.sdk.name", "beamline-gateway") +
            "," +
            attr("telemetry.sdk.language", "lua") +
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
        ngx.log(ngx.ERR, "beamline: cannot start the trace export timer: ", err);
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
        t = { trace_id: parent_trace, parent_id: ssub(tp, 37, 52), span_id: ids.random_hex(8), sampled: flags % 2 === 1 };
    } else {
        const id = trace_id_of(trace_id) ?? ids.new_trace_id();
        t = { trace_id: id, span_id: ids.random_hex(8), sampled: ratio_sampled(id, settings.threshold) };
    }
    ngx.ctx["beamline_trace"] = t;
    return t;
}

/**
 * Before the Router call: opens the client span and returns the `traceparent` the Router gets
 * (the client span's context). `traceparent` is the client's (valid or nil), `trace_id` the
 * request's effective trace id.
 */
export function router_traceparent(traceparent: string | undefined, trace_id: string, subject: string): string {
    let t = ngx.ctx["beamline_trace"] as RequestTrace | undefined;
    if (t === undefined) t = begin(traceparent, trace_id);
    const id = ids.random_hex(8);
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

/** Printable ASCII only, at most 256 bytes (url.path comes from the client). */
function safe_path(p: string): string {
    let out = p;
    if (sfind(out, "[^!-~]")[0] !== undefined) {
        [out] = sgsub(out, "[^!-~]", (c: string) => sformat("%%%02X", string.byte(c)));
    }
    return out.length > 256 ? ssub(out, 1, 256) : out;
}

/** log_by_lua (tracing on): queues the spans of a sampled API request. */
export function log_phase(): void {
    const v = ngx.var;
    let route = v["beamline_route"];
    if (route === undefined || route === "") route = v["beamline_uri_route"];
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
    let method = v["beamline_request_method"];
    if (method === undefined || method === "") method = ngx.req.get_method();
    let path = v["beamline_raw_path"];
    if (path === undefined || path === "") path = v["uri"] ?? "/";
    ngx.update_time();
    queue[tail] = {
        t,
        n,
        name: method + " " + http_route,
        start: ngx.req.start_time(),
        end: ngx.now(),
        method,
        route: http_route,
        path: safe_path(path),
        status: ngx.status,
        tenant: v["beamline_tenant_id"] ?? "",
        request_id: v["sent_http_x_request_id"] ?? "",
    };
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

/** The JSON of a record's spans (server, then client), appended to `out`. */
export function encode_record(r: Record, out: string[]): void {
    const t = r.t;
    const error = r.status >= 500;
    const attrs = [
        attr("http.request.method", r.method),
        attr("http.route", r.route),
        attr("url.path", r.path),
        attr("url.scheme", "http"),
        '{"key":"http.response.status_code","value":{"intValue":' + r.status + "}}",
    ];
    if (r.tenant !== "") attrs.push(attr("beamline.tenant_id", r.tenant));
    if (r.request_id !== "") attrs.push(attr("beamline.request_id", r.request_id));
    if (error) attrs.push(attr("error.type", tostring(r.status)));
    out.push(
        '{"traceId":"' +
            t.trace_id +
            '","spanId":"' +
            t.span_id +
            (t.parent_id !== undefined ? '","parentSpanId":"' + t.parent_id : "") +
            '","name":' +
            (json.encode(r.name)[0] as string) +
            ',"kind":' +
            KIND_SERVER +
            ',"startTimeUnixNano":"' +
            nanos(r.start) +
            '","endTimeUnixNano":"' +
            nanos(r.end) +
            '","attributes":[' +
            concat(attrs, ",") +
            "]" +
            (error ? ',"status":{"code":' + STATUS_ERROR + ',"message":"HTTP ' + r.status + '"}' : "") +
            "}",
    );
    if (r.n === 2) {
        const outcome = t.outcome ?? "";
        const failed = outcome !== "ok";
        const subject = t.subject ?? "";
        const cattrs = [
            attr("messaging.system", "nats"),
            attr("messaging.destination.name", subject),
            attr("messaging.operation.name", "request"),
            attr("messaging.operation.type", "send"),
            attr("messaging.operation", "publish"),
            attr("beamline.router.outcome", outcome),
        ];
        if (r.tenant !== "") cattrs.push(attr("beamline.tenant_id", r.tenant));
        if (failed) cattrs.push(attr("error.type", outcome));
        out.push(
            '{"traceId":"' +
                t.trace_id +
                '","spanId":"' +
                (t.client_id as string) +
                '","parentSpanId":"' +
                t.span_id +
                '","name":' +
                (json.encode("send " + subject)[0] as string) +
                ',"kind":' +
                KIND_CLIENT +
                ',"startTimeUnixNano":"' +
                nanos(t.client_start as number) +
                '","endTimeUnixNano":"' +
                nanos(t.client_end as number) +
                '","attributes":[' +
                concat(cattrs, ",") +
                "]" +
                (failed ? ',"status":{"code":' + STATUS_ERROR + ',"message":' + (json.encode(outcome)[0] as string) + "}" : "") +
                "}",
        );
    }
}

/**
 * POSTs one export request; true when the collector answered 2xx. HTTP/1.1 with keep-alive
 * when the answer has a Content-Length, else the connection is closed.
 */
function post(settings: Settings, body: string, timeout_ms: number): LuaMultiReturn<[boolean, string | undefined]> {
    const sock = ngx.socket.tcp();
    sock.settimeouts(timeout_ms, timeout_ms, timeout_ms);
    const [ok, cerr] = sock.connect(settings.host, settings.port);
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

/** Exports what is queued, one batch at a time; a failed batch is dropped and counted. */
function flush(timeout_ms: number): void {
    const settings = s as Settings;
    while (head < tail) {
        const parts: string[] = [];
        let spans = 0;
        while (head < tail && spans < settings.batch_size) {
            const r = queue[head];
            queue[head] = undefined as unknown as Record;
            head++;
            encode_record(r, parts);
            spans += r.n;
        }
        queued -= spans;
        if (head === tail) {
            // Empty: start the array over so its indexes do not grow forever.
            queue = [];
            head = 1;
            tail = 1;
        }
        const [ok, err] = post(settings, settings.head + concat(parts, ",") + "]}]}]}", timeout_ms);
        if (ok) {
            metrics.tracing_exported(spans);
        } else {
            metrics.tracing_dropped("export_failed", spans);
            ngx.update_time();
            const now = ngx.now();
            // The collector's trouble is not the gateway's: a warning, at most one per 10 s per worker.
            if (now - last_warning >= 10) {
                last_warning = now;
                ngx.log(
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
    if (!ok) ngx.log(ngx.ERR, "beamline: trace export failed: ", err);
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
