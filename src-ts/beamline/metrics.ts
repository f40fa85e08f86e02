/**
 * beamline.metrics — Prometheus metrics of CONTRACT §7, summed over all workers.
 *
 * Every value lives in the shared dict `beamline_metrics`, so a scrape answered by any worker
 * sees all of them. The dict keys are short (the key length dominates the cost of a dict incr:
 * ~0.08 µs for 17 bytes, ~0.35 µs for 70) and are expanded to series names only when rendering:
 *   - `r|<route>|<method>|<status>`: gateway_http_requests_total;
 *   - `h|<id>|<route>|<bucket index>`: the count of observations that fell into that bucket only
 *     (one incr per observation; rendering makes them cumulative, `_count` is their total), and
 *     `h|<id>|<route>|s`: the sum; id `d` = HTTP duration, `R` = Router duration;
 *   - `c|<id>|<label value>`: a counter with one label (id `rr` Router replies, `rl` rate-limit
 *     hits, `be` rate-limit backend errors, `se` state backend errors); `p|<id>`: a counter without labels;
 *   - `g|<id>|<worker id>`: a per-worker gauge, refreshed every second with a short TTL (a dead
 *     worker's value expires), summed when rendered.
 * NATS counters are per worker in beamline.nats.connection; each worker adds its deltas to the
 * dict every second (timer) and before it answers a scrape.
 *
 * Hot path (`log_request`, the log phase of every request): key strings are built once per
 * (route, method, status) and cached per worker, so a request costs 3 dict incr (6 with a
 * Router call) and no table allocation: about 0.5 µs in all. Labels stay
 * low-cardinality: the route name from nginx.conf, methods outside a fixed set become "OTHER",
 * Router codes outside the contract's set become "other"; no tenant label.
 */
import * as connection from "./nats/connection";
import * as util from "./util";
import * as log_line from "./log_line";
import * as log_fields from "./log_fields";

const DICT = "beamline_metrics";

const sformat = string.format;
const smatch = string.match;
const ssub = string.sub;
const floor = math.floor;
const tsort = table.sort;
const concat = table.concat;
const tostr = tostring;
const tonum = tonumber;

/** Histogram bucket upper bounds (seconds), 0.5 ms to 10 s. */
export const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const LE = ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
const NB = BUCKETS.length;

export const HTTP_REQUESTS = "gateway_http_requests_total";
export const HTTP_DURATION = "gateway_http_request_duration_seconds";
export const ROUTER_DURATION = "gateway_router_request_duration_seconds";
export const ROUTER_REPLIES = "gateway_router_replies_total";
export const RATE_LIMIT_HITS = "gateway_rate_limit_hits_total";
export const RATE_LIMIT_BACKEND_ERRORS = "gateway_rate_limit_backend_errors_total";
export const STATE_BACKEND_ERRORS = "gateway_state_backend_errors_total";
export const IDEMPOTENCY_REPLAYS = "gateway_idempotency_replays_total";
export const NATS_STATUS = "gateway_nats_connection_status";
export const NATS_IN_FLIGHT = "gateway_nats_requests_in_flight";
export const NATS_RECONNECTS = "gateway_nats_reconnects_total";
export const NATS_SENT = "gateway_nats_messages_sent_total";
export const NATS_RECEIVED = "gateway_nats_messages_received_total";
export const NATS_PUBLISH_FAILURES = "gateway_nats_publish_failures_total";
export const TRAFFIC_REQUESTS = "gateway_traffic_requests_total";
export const SHADOW_COMPARISONS = "gateway_shadow_comparisons_total";
export const SHADOW_DROPPED = "gateway_shadow_dropped_total";
export const TRACING_EXPORTED = "gateway_tracing_spans_exported_total";
export const TRACING_DROPPED = "gateway_tracing_spans_dropped_total";
export const METRICS_UPDATES_LOST = "gateway_metrics_updates_lost_total";
export const IDEMPOTENCY_EVICTIONS = "gateway_idempotency_evictions_total";
export const DECISION_EVICTIONS = "gateway_decision_cache_evictions_total";
export const NATS_SUBSCRIPTIONS = "gateway_nats_subscriptions";
export const SSE_CONNECTIONS = "gateway_sse_connections";
export const SSE_EVENTS = "gateway_sse_events_total";
export const SSE_DROPPED = "gateway_sse_dropped_total";

interface Family {
    name: string;
    type: "counter" | "gauge" | "histogram";
    help: string;
    /** The short id in dict keys (see above); "r" for the requests counter. */
    id: string;
    /** The one label of a `c|` counter or a labelled `g|` gauge. */
    label?: string;
    /** A second label of a `c|` counter: its key is `c|<id>|<label value>|<label2 value>`. */
    label2?: string;
    /** No labels: always rendered, 0 when nothing was recorded. */
    plain: boolean;
}

export const FAMILIES: Family[] = [
    { name: HTTP_REQUESTS, type: "counter", id: "r", help: "HTTP requests by route name, method and status.", plain: false },
    {
        name: HTTP_DURATION,
        type: "histogram",
        id: "d",
        help: "Time from the first request byte to the log phase, by route name.",
        plain: false,
    },
    { name: ROUTER_DURATION, type: "histogram", id: "R", help: "Router request/reply time over NATS, by route name.", plain: false },
    {
        name: ROUTER_REPLIES,
        type: "counter",
        id: "rr",
        label: "code",
        help: "Router outcomes: ok, the Router's error code, or timeout/no_responders/not_connected/malformed.",
        plain: false,
    },
    {
        name: RATE_LIMIT_HITS,
        type: "counter",
        id: "rl",
        label: "route",
        help: "Requests refused with 429 by the gateway's rate limit, by limited route.",
        plain: false,
    },
    {
        name: RATE_LIMIT_BACKEND_ERRORS,
        type: "counter",
        id: "be",
        label: "mode",
        help: "Redis rate-limit backend failures, by the configured on_error mode.",
        plain: false,
    },
    {
        name: STATE_BACKEND_ERRORS,
        type: "counter",
        id: "sb",
        label: "op",
        help: "Failed Redis state-backend operations (state.backend: redis), by operation.",
        plain: false,
    },
    { name: IDEMPOTENCY_REPLAYS, type: "counter", id: "ir", help: "Responses replayed for a repeated Idempotency-Key.", plain: true },
    {
        name: METRICS_UPDATES_LOST,
        type: "counter",
        id: "ml",
        help: "Metric updates that failed or evicted older series because the beamline_metrics dict was full (raise metrics.size_mb).",
        plain: true,
    },
    { name: NATS_STATUS, type: "gauge", id: "nu", help: "Workers whose NATS connection is up.", plain: true },
    {
        name: NATS_IN_FLIGHT,
        type: "gauge",
        id: "ni",
        help: "Router requests waiting for their reply (all workers); back to 0 when idle.",
        plain: true,
    },
    { name: NATS_RECONNECTS, type: "counter", id: "nc", help: "NATS reconnects after a lost connection (all workers).", plain: true },
    {
        name: NATS_SENT,
        type: "counter",
        id: "ns",
        help: "Router request frames written to NATS (all workers).",
        plain: true,
    },
    { name: NATS_RECEIVED, type: "counter", id: "nr", help: "Messages received on the reply inboxes (all workers).", plain: true },
    {
        name: NATS_PUBLISH_FAILURES,
        type: "counter",
        id: "nf",
        help: "Router request frames and events lost: not connected, invalid, over max_payload, or a failed write or disconnect (all workers).",
        plain: true,
    },
    // The traffic switch (beamline.traffic); only recorded while migration.enabled.
    {
        name: TRAFFIC_REQUESTS,
        type: "counter",
        id: "ts",
        label: "side",
        help: "API requests by the side that answered them: new (this gateway) or legacy (proxied to the old gateway).",
        plain: false,
    },
    {
        name: SHADOW_COMPARISONS,
        type: "counter",
        id: "sc",
        label: "result",
        help: "Shadow comparisons of both gateways' answers: match, mismatch, or error (the mirrored request failed).",
        plain: false,
    },
    {
        name: SHADOW_DROPPED,
        type: "counter",
        id: "sd",
        label: "reason",
        help: "Requests not mirrored: concurrency (limit reached), too_large (body over max_body_bytes), timer, shutdown.",
        plain: false,
    },
    // Per-tenant bounds of the local state (beamline.tenant_ring, issue 17).
    {
        name: IDEMPOTENCY_EVICTIONS,
        type: "counter",
        id: "ie",
        label: "reason",
        help: "Idempotency-Key records dropped or refused: tenant_quota (the tenant's own oldest, past max_keys_per_tenant), no_memory (the dict is full: the new request got 503).",
        plain: false,
    },
    {
        name: DECISION_EVICTIONS,
        type: "counter",
        id: "de",
        label: "reason",
        help: "Stored decisions dropped or refused: tenant_quota (the tenant's own oldest, past max_per_tenant), dict_full (the tenant's own oldest, to make room in the full dict), no_memory (the dict is full and the tenant has none to give up: not stored).",
        plain: false,
    },
    // Subscriptions and realtime streams (CONTRACT §11, beamline.streams).
    {
        name: NATS_SUBSCRIPTIONS,
        type: "gauge",
        id: "nb",
        help: "NATS subscriptions besides the reply inboxes: per-tenant stream events and the results subject (all workers).",
        plain: true,
    },
    {
        name: SSE_CONNECTIONS,
        type: "gauge",
        id: "ss",
        label: "stream",
        help: "Open SSE streams, by stream (messages, results).",
        plain: false,
    },
    {
        name: SSE_EVENTS,
        type: "counter",
        id: "se",
        label: "stream",
        help: "Events sent to SSE streams (one per event per stream).",
        plain: false,
    },
    {
        name: SSE_DROPPED,
        type: "counter",
        id: "sx",
        label: "stream",
        label2: "reason",
        help: "Streams ended or messages dropped: slow_client (unsent output over streams.max_buffered_bytes), invalid_result, invalid_event.",
        plain: false,
    },
    // Trace export (beamline.tracing); only recorded while tracing.enabled.
    { name: TRACING_EXPORTED, type: "counter", id: "te", help: "Spans accepted by the OTLP collector (all workers).", plain: true },
    {
        name: TRACING_DROPPED,
        type: "counter",
        id: "tx",
        label: "reason",
        help: "Spans not exported: queue_full (the per-worker queue was full), export_failed (the collector refused, was down or too slow).",
        plain: false,
    },
];

const ID: { [name: string]: string } = {};
const BY_ID: { [id: string]: Family } = {};
for (const f of FAMILIES) {
    ID[f.name] = f.id;
    BY_ID[f.id] = f;
}
const P_IDEMPOTENCY_REPLAYS = "p|ir";
const P_NATS_SENT = "p|ns";
const P_NATS_RECEIVED = "p|nr";
const P_NATS_PUBLISH_FAILURES = "p|nf";
const P_NATS_RECONNECTS = "p|nc";
const P_TRACING_EXPORTED = "p|te";

const KNOWN_METHODS: { [m: string]: boolean } = { GET: true, HEAD: true, POST: true, PUT: true, DELETE: true, PATCH: true, OPTIONS: true };
/** Router reply codes the contract knows (§4) plus the gateway's own outcomes. */
const KNOWN_CODES: { [c: string]: boolean } = {
    ok: true,
    invalid_request: true,
    unsupported_protocol_version: true,
    unauthorized: true,
    validator_blocked: true,
    policy_not_found: true,
    extension_not_found: true,
    rate_limit_exceeded: true,
    extension_unavailable: true,
    extension_timeout: true,
    decision_failed: true,
    internal: true,
    post_processor_failed: true,
    extension_error: true,
    timeout: true,
    no_responders: true,
    not_connected: true,
    malformed: true,
};

/** The Router code as a metric label value (unknown codes → "other"). */
export function code_label(code: string): string {
    return KNOWN_CODES[code] === true ? code : "other";
}

/** The method as a metric label value (outside GET/HEAD/POST/PUT/DELETE/PATCH/OPTIONS → "OTHER"). */
export function method_label(method: string): string {
    return KNOWN_METHODS[method] === true ? method : "OTHER";
}

/** Index (0-based) of the bucket an observation falls into; NB = the +Inf bucket. */
export function bucket_index(value: number): number {
    let i = 0;
    while (i < NB && value > BUCKETS[i]) i++;
    return i;
}

// ---------------------------------------------------------------------------------------------
// Recording (per worker caches of key strings)
// ---------------------------------------------------------------------------------------------

let dict: NgxSharedDict | undefined;
let dict_missing = false;

function get_dict(): NgxSharedDict | undefined {
    if (dict === undefined && !dict_missing) {
        dict = ngx.shared[DICT];
        if (dict === undefined) {
            dict_missing = true;
            log_line.write(ngx.ERR, "beamline: lua_shared_dict ", DICT, " is missing; metrics are off");
        }
    }
    return dict;
}

const request_keys: { [route: string]: { [method: string]: { [status: number]: string } } } = {};
/** family id → route → [bucket keys 0..NB, sum key] */
const hist_keys: { [id: string]: { [route: string]: string[] } } = { d: {}, R: {} };
const counter_keys: { [id: string]: { [label: string]: string } } = {};

export function request_key(route: string, method: string, status: number): string {
    let by_method = request_keys[route];
    if (by_method === undefined) {
        by_method = {};
        request_keys[route] = by_method;
    }
    let by_status = by_method[method];
    if (by_status === undefined) {
        by_status = {};
        by_method[method] = by_status;
    }
    let k = by_status[status];
    if (k === undefined) {
        k = "r|" + route + "|" + method + "|" + status;
        by_status[status] = k;
    }
    return k;
}

function hist_route_keys(id: string, route: string): string[] {
    const by_route = hist_keys[id];
    let ks = by_route[route];
    if (ks === undefined) {
        ks = [];
        const base = "h|" + id + "|" + route + "|";
        for (let i = 0; i <= NB; i++) ks[i] = base + i;
        ks[NB + 1] = base + "s";
        by_route[route] = ks;
    }
    return ks;
}

// A full dict makes `incr` fail (a series vanishes) or evict the least recently used series
// (`forcible`: a counter goes backwards). Neither may pass silently: each is counted per worker
// (gateway_metrics_updates_lost_total, flushed with the NATS counters) and logged at most once
// per LOST_LOG_SECONDS per worker.
const LOST_LOG_SECONDS = 10;
let updates_lost = 0;
let lost_logged_at = -LOST_LOG_SECONDS;

function lost_update(err: string | undefined): void {
    updates_lost += 1;
    const now = ngx.now();
    if (now - lost_logged_at >= LOST_LOG_SECONDS) {
        lost_logged_at = now;
        log_line.write(
            ngx.ERR,
            "beamline: the metrics dict ",
            DICT,
            " is full (",
            err !== undefined ? err : "older series evicted",
            "); ",
            updates_lost,
            " updates lost or evicting in this worker so far: raise metrics.size_mb",
        );
    }
}

/** `d.incr(key, n, 0)` that counts a failed or evicting update. */
function bump(d: NgxSharedDict, key: string, n: number): void {
    const [v, err, forcible] = d.incr(key, n, 0);
    if (v === undefined || forcible === true) lost_update(err);
}

function observe(d: NgxSharedDict, id: string, route: string, value: number): void {
    const ks = hist_route_keys(id, route);
    bump(d, ks[bucket_index(value)], 1);
    bump(d, ks[NB + 1], value);
}

/** `c|<family id>|<value>`, cached. */
function labelled_key(id: string, value: string): string {
    let by_value = counter_keys[id];
    if (by_value === undefined) {
        by_value = {};
        counter_keys[id] = by_value;
    }
    let k = by_value[value];
    if (k === undefined) {
        k = "c|" + id + "|" + value;
        by_value[value] = k;
    }
    return k;
}

function add(key: string, n: number): void {
    const d = get_dict();
    if (d !== undefined) bump(d, key, n);
}

/**
 * The log phase of every request: request count and duration; Router time and reply code when
 * the handler made a Router call (beamline.log_fields).
 */
export function log_request(): void {
    const d = get_dict();
    if (d === undefined) return;
    const v = ngx.var;
    let route = v["beamline_route"];
    let method = ngx.req.get_method();
    if (ngx.req.is_internal()) {
        // nginx's own errors (error_page) turned the method into GET and the URI into
        // /__beamline_error/<status>: count the request as it came in (conf.d/00-http.conf).
        const m = v["beamline_request_method"];
        if (m !== undefined && m !== "") method = m;
        if (route === undefined || route === "") route = v["beamline_uri_route"];
    }
    if (route === undefined || route === "") route = "none";
    const status = ngx.status;
    bump(d, request_key(route, method_label(method), status), 1);
    let dur = ngx.now() - ngx.req.start_time();
    if (dur < 0) dur = 0;
    observe(d, "d", route, dur);
    // Only the API routes (and configured NATS routes) call the Router; only they have their
    // ngx.ctx already (the headers are read through it), so no other request creates one here.
    if (ui_routes[route] !== true) return;
    ring_record(d, status, dur);
    const [rt, code] = log_fields.router(ngx.ctx);
    if (rt !== undefined) {
        observe(d, "R", route, rt);
        bump(d, labelled_key("rr", code_label(code !== undefined ? code : "")), 1);
    }
}

/** A 429 of the gateway's limiter on config route `route`. */
export function rate_limit_hit(route: string): void {
    add(labelled_key("rl", route), 1);
}

/** The Redis rate-limit backend failed; `mode` is the configured on_error. */
export function rate_limit_backend_error(mode: string): void {
    add(labelled_key("be", mode), 1);
}

/** A Redis state operation failed (or was skipped while Redis is marked down). */
export function state_backend_error(op: string): void {
    add(labelled_key("sb", op), 1);
}

export function idempotency_replay(): void {
    add(P_IDEMPOTENCY_REPLAYS, 1);
}

/** An API request answered by `side` (new | legacy) while the traffic switch is on. */
export function traffic_request(side: string): void {
    add(labelled_key("ts", side), 1);
}

/** One shadow comparison: match | mismatch | error. */
export function shadow_result(result: string): void {
    add(labelled_key("sc", result), 1);
}

/** An Idempotency-Key record dropped (tenant_quota) or refused (no_memory). */
export function idempotency_eviction(reason: string): void {
    add(labelled_key("ie", reason), 1);
}

/** A stored decision dropped (tenant_quota) or refused (no_memory). */
export function decision_eviction(reason: string): void {
    add(labelled_key("de", reason), 1);
}

/** A request that was not mirrored, and why. */
export function shadow_dropped(reason: string): void {
    add(labelled_key("sd", reason), 1);
}

/** `n` spans the OTLP collector accepted. */
export function tracing_exported(n: number): void {
    add(P_TRACING_EXPORTED, n);
}

/** `n` spans dropped, and why (queue_full | export_failed). */
export function tracing_dropped(reason: string, n: number): void {
    add(labelled_key("tx", reason), n);
}

// NATS counters of this worker already added to the dict.
let last_sent = 0;
let last_received = 0;
let last_failures = 0;
let last_reconnects = 0;

function delta(d: NgxSharedDict, key: string, now: number, last: number): number {
    if (now > last) bump(d, key, now - last);
    // A smaller value means the counters were reset (not expected); start over from it.
    return now;
}

/** Adds `n` to a counter with two labels (`c|<id>|<v1>|<v2>`). Label values must not hold `|`. */
export function add2(id: string, v1: string, v2: string, n: number): void {
    add("c|" + id + "|" + v1 + "|" + v2, n);
}

/** Adds `n` to a one-label counter. */
export function add1(id: string, v: string, n: number): void {
    add(labelled_key(id, v), n);
}

/** Sets this worker's value of a labelled gauge (refreshed every second, TTL 5 s). */
export function set_gauge(id: string, label_value: string, v: number): void {
    const d = get_dict();
    if (d === undefined) return;
    const wid = ngx.worker.id();
    d.set("g|" + id + "|" + label_value + "|" + tostr(wid !== undefined ? wid : ngx.worker.pid()), v, 5);
}

/** Per-worker sources flushed with the NATS counters (modules register here: no import cycle). */
const flushers: (() => void)[] = [];

export function register_flusher(f: () => void): void {
    flushers[flushers.length] = f;
}

/** Adds this worker's NATS counter deltas and refreshes its connection gauge (TTL 5 s). */
export function flush_worker(): void {
    const d = get_dict();
    if (d === undefined) return;
    const c = connection.get_counters();
    last_sent = delta(d, P_NATS_SENT, c.sent, last_sent);
    last_received = delta(d, P_NATS_RECEIVED, c.received, last_received);
    last_failures = delta(d, P_NATS_PUBLISH_FAILURES, c.publish_failures, last_failures);
    last_reconnects = delta(d, P_NATS_RECONNECTS, c.reconnects, last_reconnects);
    const id = ngx.worker.id();
    d.set("g|" + ID[NATS_STATUS] + "|" + tostr(id !== undefined ? id : ngx.worker.pid()), connection.is_connected() ? 1 : 0, 5);
    const st = connection.status();
    d.set("g|" + ID[NATS_IN_FLIGHT] + "|" + tostr(id !== undefined ? id : ngx.worker.pid()), st.in_flight, 5);
    d.set("g|" + ID[NATS_SUBSCRIPTIONS] + "|" + tostr(id !== undefined ? id : ngx.worker.pid()), st.subscriptions, 5);
    // This worker's lost updates so far (a per-worker total, summed when rendered).
    if (updates_lost > 0) d.set("g|" + ID[METRICS_UPDATES_LOST] + "|" + tostr(id !== undefined ? id : ngx.worker.pid()), updates_lost, 5);
    for (const f of flushers) f();
}

/** ngx.timer.every callback. */
export function on_timer(premature: boolean): void {
    if (premature) return;
    flush_worker();
}

// ---------------------------------------------------------------------------------------------
// Rendering (pure: a key → value table in, text format 0.0.4 out)
// ---------------------------------------------------------------------------------------------

/** A sample value in the text format: integers without a fraction, others as %.17g-free tostring. */
export function format_value(v: number): string {
    if (v === floor(v) && v > -1e15 && v < 1e15) return sformat("%d", v);
    if (v !== v) return "NaN";
    return tostr(v);
}

interface Hist {
    buckets: number[];
    sum: number;
}

/** The exposition text for the dict's entries (see the key layout at the top). */
export function render(entries: { [key: string]: number }): string {
    const series: { [family: string]: string[] } = {};
    const hists: { [family: string]: { [route: string]: Hist } } = {};
    const gauges: { [family: string]: number } = {};
    const plain: { [family: string]: number } = {};
    const labelled_gauges: { [series: string]: number } = {};
    for (const [k, v] of pairs(entries)) {
        const key = k as string;
        const value = v as number;
        if (typeof value !== "number") continue;
        const tag = ssub(key, 1, 2);
        if (tag === "r|") {
            const [route, method, status] = smatch(key, "^r|([^|]*)|([^|]*)|([^|]*)$");
            if (route === undefined) continue;
            push_series(
                series,
                HTTP_REQUESTS,
                HTTP_REQUESTS + '{route="' + route + '",method="' + method + '",status="' + status + '"} ' + format_value(value),
            );
        } else if (tag === "h|") {
            const [id, route, slot] = smatch(key, "^h|([^|]+)|([^|]*)|([^|]+)$");
            const f = id !== undefined ? BY_ID[id] : undefined;
            if (f === undefined) continue;
            let byr = hists[f.name];
            if (byr === undefined) {
                byr = {};
                hists[f.name] = byr;
            }
            let h = byr[route as string];
            if (h === undefined) {
                h = { buckets: [], sum: 0 };
                for (let i = 0; i <= NB; i++) h.buckets[i] = 0;
                byr[route as string] = h;
            }
            if (slot === "s") {
                h.sum = value;
            } else {
                const i = tonum(slot);
                if (i !== undefined && i >= 0 && i <= NB) h.buckets[i] = value;
            }
        } else if (tag === "c|") {
            const [id, label_value] = smatch(key, "^c|([^|]+)|(.*)$");
            const f = id !== undefined ? BY_ID[id] : undefined;
            if (f === undefined || f.label === undefined) continue;
            if (f.label2 !== undefined) {
                const [v1, v2] = smatch(label_value as string, "^([^|]*)|(.*)$");
                if (v1 === undefined) continue;
                push_series(series, f.name, f.name + "{" + f.label + '="' + v1 + '",' + f.label2 + '="' + v2 + '"} ' + format_value(value));
                continue;
            }
            push_series(series, f.name, f.name + "{" + f.label + '="' + label_value + '"} ' + format_value(value));
        } else if (tag === "p|") {
            const f = BY_ID[ssub(key, 3)];
            if (f !== undefined) plain[f.name] = value;
        } else if (tag === "g|") {
            const [id, rest] = smatch(key, "^g|([^|]+)|(.*)$");
            const f = id !== undefined ? BY_ID[id] : undefined;
            if (f === undefined) continue;
            if (f.label !== undefined) {
                // g|<id>|<label value>|<worker>: summed per label value
                const [lv] = smatch(rest as string, "^([^|]*)|");
                if (lv === undefined) continue;
                const k2 = f.name + "{" + f.label + '="' + lv + '"}';
                labelled_gauges[k2] = (labelled_gauges[k2] ?? 0) + value;
                continue;
            }
            gauges[f.name] = (gauges[f.name] ?? 0) + value;
        }
    }
    const out: string[] = [];
    for (const f of FAMILIES) {
        out.push("# HELP " + f.name + " " + f.help);
        out.push("# TYPE " + f.name + " " + f.type);
        if (f.type === "histogram") {
            const byr = hists[f.name];
            if (byr === undefined) continue;
            const routes: string[] = [];
            for (const [r] of pairs(byr)) routes.push(r as string);
            tsort(routes);
            for (const r of routes) {
                const h = byr[r];
                const l = 'route="' + r + '"';
                let cum = 0;
                for (let i = 0; i <= NB; i++) {
                    cum += h.buckets[i];
                    out.push(f.name + "_bucket{" + l + ',le="' + LE[i] + '"} ' + format_value(cum));
                }
                out.push(f.name + "_sum{" + l + "} " + format_value(h.sum));
                out.push(f.name + "_count{" + l + "} " + format_value(cum));
            }
        } else if (f.type === "gauge" && f.label !== undefined) {
            const list: string[] = [];
            for (const [k2, v2] of pairs(labelled_gauges)) {
                if (ssub(k2 as string, 1, f.name.length + 1) === f.name + "{") list.push((k2 as string) + " " + format_value(v2 as number));
            }
            tsort(list);
            for (const line of list) out.push(line);
        } else if (f.type === "gauge") {
            out.push(f.name + " " + format_value(gauges[f.name] ?? 0));
        } else if (f.plain) {
            // A plain counter is a `p|` entry, or per-worker `g|` totals (summed above).
            out.push(f.name + " " + format_value(plain[f.name] ?? gauges[f.name] ?? 0));
        } else {
            const list = series[f.name];
            if (list !== undefined) {
                tsort(list);
                for (const line of list) out.push(line);
            }
        }
    }
    out.push("");
    return concat(out, "\n");
}

function push_series(series: { [family: string]: string[] }, family: string, line: string): void {
    let list = series[family];
    if (list === undefined) {
        list = [];
        series[family] = list;
    }
    list.push(line);
}

// ---------------------------------------------------------------------------------------------
// GET /_metrics (CONTRACT §12): the UI dashboard's JSON over the last 60 s of this instance
// ---------------------------------------------------------------------------------------------
//
// A per-second ring in the same shared dict, API routes only: for the second S (epoch) of a
// request's log phase, `u|S|n` counts requests, `u|S|e` those answered with a 5xx, and `u|S|<i>`
// those whose duration fell into latency bucket i. Every key is created with a 62 s TTL (incr's
// init_ttl), so the ring needs no cleanup and holds at most ~62 seconds. Bucket i holds
// durations in (B(i-1), B(i)] with B(i) = 0.05 ms · 2^(i/4), i = 0..NU-1 (the last one is open):
// any percentile is read with less than 19% relative error (one bucket is a factor 2^(1/4)).
// Cost per API request: 2 dict incr (3 with a 5xx) on keys built once per second per worker.
// A /_metrics request reads ≤ 60 × (2 + NU) keys (only seconds that had requests): < 1 ms.
//
// Figures: rps = requests / 60; error_rate = 5xx / requests (0 without requests); p50/p95 in ms,
// interpolated linearly inside the bucket that holds the rank (0 without requests); the window
// is the current second and the 59 before it.

const UI_WINDOW = 60;
const UI_TTL = UI_WINDOW + 2;
const UI_BASE = 0.00005;
const NU = 82;
const LOG_STEP = math.log(2) / 4;
const log = math.log;
const ceil = math.ceil;

/** Routes counted by /_metrics: the API routes (configure_ui adds the nats_routes). */
const ui_routes: { [route: string]: boolean | undefined } = { decide: true, messages: true, decision_lookup: true };

/** Adds route names counted as API routes by /_metrics (init_by_lua). */
export function add_ui_routes(names: string[]): void {
    for (const n of names) ui_routes[n] = true;
}

/** Upper bound (seconds) of latency bucket i of the /_metrics ring. */
export function ui_bound(i: number): number {
    return UI_BASE * 2 ** (i / 4);
}

/** The /_metrics latency bucket of a duration in seconds. */
export function ui_bucket(dur: number): number {
    if (dur <= UI_BASE) return 0;
    let i = ceil(log(dur / UI_BASE) / LOG_STEP - 1e-9);
    if (i > NU - 1) i = NU - 1;
    return i;
}

let ring_second = -1;
let ring_keys: { [slot: string]: string } = {};
let ring_prefix = "";

function ring_key(slot: string | number): string {
    let k = ring_keys[slot];
    if (k === undefined) {
        k = ring_prefix + slot;
        ring_keys[slot] = k;
    }
    return k;
}

function ring_record(d: NgxSharedDict, status: number, dur: number): void {
    const sec = ngx.time();
    if (sec !== ring_second) {
        ring_second = sec;
        ring_prefix = "u|" + sec + "|";
        ring_keys = {};
    }
    d.incr(ring_key("n"), 1, 0, UI_TTL);
    d.incr(ring_key(ui_bucket(dur)), 1, 0, UI_TTL);
    if (status >= 500) d.incr(ring_key("e"), 1, 0, UI_TTL);
}

/** The value at rank q (0..1) of the bucket counts, in ms, interpolated inside its bucket. */
export function ui_percentile(counts: number[], total: number, q: number): number {
    if (total <= 0) return 0;
    const target = q * total;
    let cum = 0;
    for (let i = 0; i < NU; i++) {
        const k = counts[i];
        if (k > 0 && cum + k >= target) {
            const lo = i === 0 ? 0 : ui_bound(i - 1);
            const hi = ui_bound(i);
            return (lo + ((target - cum) / k) * (hi - lo)) * 1000;
        }
        cum += k;
    }
    return ui_bound(NU - 1) * 1000;
}

const round = (x: number, digits: number): number => {
    const m = 10 ** digits;
    return floor(x * m + 0.5) / m;
};

/**
 * The /_metrics document from the ring at epoch second `now`, as JSON text in the contract's key
 * order (only the dict reads touch ngx).
 */
export function ui_document(d: NgxSharedDict, now: number, connected: boolean): string {
    const counts: number[] = [];
    for (let i = 0; i < NU; i++) counts[i] = 0;
    let total = 0;
    let errors = 0;
    for (let sec = now - UI_WINDOW + 1; sec <= now; sec++) {
        const prefix = "u|" + sec + "|";
        const [n] = d.get(prefix + "n");
        if (typeof n === "number" && n > 0) {
            total += n;
            const [e] = d.get(prefix + "e");
            if (typeof e === "number") errors += e;
            for (let i = 0; i < NU; i++) {
                const [k] = d.get(prefix + i);
                if (typeof k === "number") counts[i] += k;
            }
        }
    }
    return (
        '{"rps":' +
        tostr(round(total / UI_WINDOW, 3)) +
        ',"latency":{"p50":' +
        tostr(round(ui_percentile(counts, total, 0.5), 3)) +
        ',"p95":' +
        tostr(round(ui_percentile(counts, total, 0.95), 3)) +
        '},"error_rate":' +
        tostr(total > 0 ? round(errors / total, 4) : 0) +
        ',"nats":"' +
        (connected ? "connected" : "disconnected") +
        '","ts":' +
        sformat("%d", now) +
        "}"
    );
}

/** GET /_metrics (C-GW's UI dashboard feed). */
export function serve_ui(): void {
    const method = ngx.req.get_method();
    if (method !== "GET" && method !== "HEAD") {
        return util.method_not_allowed("GET, HEAD");
    }
    const d = get_dict();
    ngx.update_time();
    const now = ngx.time();
    if (d === undefined) {
        return util.error_response(500, "internal", "internal error");
    }
    util.json_response(200, ui_document(d, now, connection.is_connected()));
}

/** GET /metrics: this worker's NATS deltas first, then everything in the dict. */
export function serve(): void {
    const method = ngx.req.get_method();
    if (method !== "GET" && method !== "HEAD") {
        return util.method_not_allowed("GET, HEAD");
    }
    flush_worker();
    const entries: { [key: string]: number } = {};
    const d = get_dict();
    if (d !== undefined) {
        for (const k of d.get_keys(0)) {
            const [v] = d.get(k);
            if (typeof v === "number") entries[k] = v;
        }
    }
    ngx.status = 200;
    ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8";
    if (method === "GET") ngx.print(render(entries));
    return ngx.exit(200);
}
