/**
 * beamline.streams — the per-worker side of the realtime streams (CONTRACT §11): the registry of
 * open streams, their NATS subscriptions, the results replay store, and the publish of
 * `message_created` events. The HTTP side (query rules, the SSE loop) is handlers/streams.ts.
 *
 * Fan-out (ARCHITECTURE.md "Subscriptions for streams"): the worker's one NATS connection
 * delivers each MSG to a subscription handler in its reader thread. The handler never yields: it
 * appends the event's SSE frame to each matching stream's queue and posts that stream's
 * semaphore (only when the stream is parked on it). A stream sleeps on its semaphore between
 * events and heartbeats: no polling anywhere.
 *
 * - messages: one subscription per tenant with open streams on this worker, on
 *   `<events_subject_prefix>.<tenant token>`; UNSUB when the tenant's last stream ends. The SSE
 *   frame is built once per event and shared by every stream of the tenant.
 * - results: one subscription on `results_subject` per worker for the worker's lifetime (when
 *   enabled), streams indexed by request_id and assignment_id, and a replay store of the last
 *   `results_replay_seconds`.
 *
 * Replay store: per worker. Every worker is subscribed to the results subject anyway and so
 * receives every result; keeping them in the worker's own Lua memory costs no shared-dict
 * serialisation or locking, and a new stream replays with a plain array scan in the worker that
 * serves it. The memory bound `results_replay_max_mb` (per instance) is split evenly between the
 * workers; the oldest results go first when it is reached.
 */
import * as config from "./config";
import * as connection from "./nats/connection";
import * as json from "./json";
import * as log_line from "./log_line";
import * as metrics from "./metrics";
import type { Frame, HeaderMap } from "./nats/protocol";

const sfind = string.find;
const sgsub = string.gsub;
const floor = math.floor;
const ltype = type;
const tostr = tostring;
const json_encode = json.encode;
const json_decode = json.decode;
const is_object = json.is_object;

export type Kind = "messages" | "results";

export interface Stream {
    kind: Kind;
    tenant: string;
    sema: NgxSemaphore;
    /** SSE frames waiting to be written (0-based in TS, a Lua array) */
    q: string[];
    qn: number;
    qbytes: number;
    /** why the stream must end (set by a handler, the exit timer or on_abort); nil while open */
    closed: string | undefined;
    // results filters
    request_id?: string;
    assignment_id?: string;
    provider_id?: string;
    exclude?: { [provider: string]: boolean };
    once: boolean;
    /** results queued so far (the `id:` of the next one is seq + 1) */
    seq: number;
    /** the replay/live sequence of the last result queued (a result matching by both ids is sent once) */
    mark: number;
}

/** One kept result (results replay). */
interface Result {
    t: number;
    /** a sequence number per received result, for de-duplication */
    n: number;
    request_id: string | undefined;
    assignment_id: string | undefined;
    tenant: string;
    provider: string | undefined;
    data: string;
    bytes: number;
}

interface TenantSub {
    sid: string;
    streams: LuaTable<Stream, boolean>;
    n: number;
}

// ---------------------------------------------------------------------------------------------
// Per-worker state
// ---------------------------------------------------------------------------------------------

let sem_new: ((this: void, n?: number) => LuaMultiReturn<[NgxSemaphore, undefined] | [undefined, string]>) | undefined;
const all = new LuaTable<Stream, boolean>();
const open_count: { [kind: string]: number } = { messages: 0, results: 0 };
let open_total = 0;
let exiting = false;
const tenant_subs: { [tenant: string]: TenantSub | undefined } = {};
const by_request: { [id: string]: LuaTable<Stream, boolean> | undefined } = {};
const by_assignment: { [id: string]: LuaTable<Stream, boolean> | undefined } = {};
let results_sid: string | undefined;
let max_buffered = 1048576;

// The replay store: a ring of kept results, oldest at `rhead`.
const kept: (Result | undefined)[] = [];
let rhead = 0;
let rtail = 0;
let rbytes = 0;
let rbudget = 16 * 1048576;
let rseconds = 60;
let result_n = 0;

// Counters of this worker, added to the shared metrics every second (metrics.register_flusher).
const events = { messages: 0, results: 0 };
const dropped: { [key: string]: number } = {};
const flushed_events = { messages: 0, results: 0 };
const flushed_dropped: { [key: string]: number } = {};

/** Counts one dropped message or ended stream (`gateway_sse_dropped_total{stream,reason}`). */
export function count_dropped(kind: Kind, reason: string): void {
    const k = kind + "|" + reason;
    dropped[k] = (dropped[k] ?? 0) + 1;
}

/** Counts `n` events written to a stream of `kind`. */
export function count_events(kind: Kind, n: number): void {
    events[kind] += n;
}

function flush_metrics(): void {
    for (const kind of ["messages", "results"] as Kind[]) {
        const d = events[kind] - flushed_events[kind];
        if (d > 0) metrics.add1("se", kind, d);
        flushed_events[kind] = events[kind];
        metrics.set_gauge("ss", kind, open_count[kind]);
    }
    for (const [k, v] of pairs(dropped)) {
        const d = v - (flushed_dropped[k as string] ?? 0);
        if (d > 0) {
            const [kind, reason] = string.match(k as string, "^([^|]*)|(.*)$");
            metrics.add2("sx", kind as string, reason as string, d);
        }
        flushed_dropped[k as string] = v;
    }
}

// ---------------------------------------------------------------------------------------------
// Small pure helpers (busted tests them)
// ---------------------------------------------------------------------------------------------

/** The tenant's subject token: every `.` written as `%2E` (CONTRACT §11.1). */
export function tenant_token(tenant: string): string {
    if (sfind(tenant, ".", 1, true)[0] === undefined) return tenant;
    const [t] = sgsub(tenant, "%.", "%%2E");
    return t;
}

/** `<prefix>.<tenant token>` */
export function events_subject(prefix: string, tenant: string): string {
    return prefix + "." + tenant_token(tenant);
}

/** One line of JSON that can go into an SSE `data:` line as is. */
function one_line(s: string): boolean {
    // two plain finds (memchr) rather than one pattern scan: this runs on every decide's body
    return sfind(s, "\n", 1, true)[0] === undefined && sfind(s, "\r", 1, true)[0] === undefined;
}

/** The SSE frame of a message_created event, or nil when the NATS message is not one. */
export function message_frame(payload: string | undefined, headers: HeaderMap | undefined): string | undefined {
    if (payload === undefined || headers === undefined) return undefined;
    const rid = headers["request_id"];
    if (ltype(rid) !== "string" || rid === "" || (rid as string).length > 128 || sfind(rid as string, "[^ -~]")[0] !== undefined)
        return undefined;
    if (sfind(payload, "^{")[0] === undefined || !one_line(payload)) return undefined;
    return "id: " + (rid as string) + "\nevent: message_created\ndata: " + payload + "\n\n";
}

function str_field(v: unknown): string | undefined {
    return ltype(v) === "string" && v !== "" ? (v as string) : undefined;
}

/**
 * Parses an ExecResult message. Returns the kept-result record, or (nil, reason) with reason
 * `invalid_result` (not a JSON object, or neither id) or `no_tenant`.
 */
export function parse_result(
    payload: string,
    headers: HeaderMap | undefined,
    now: number,
): LuaMultiReturn<[Result, undefined] | [undefined, string]> {
    const [v, err] = json_decode(payload);
    if (err !== undefined || !is_object(v)) return $multi(undefined, "invalid_result");
    const o = v as { [key: string]: unknown };
    const rid = str_field(o["request_id"]);
    const aid = str_field(o["assignment_id"]);
    if (rid === undefined && aid === undefined) return $multi(undefined, "invalid_result");
    let tenant: string | undefined;
    if (headers !== undefined) {
        const h = headers["tenant_id"];
        tenant = ltype(h) === "table" ? str_field((h as string[])[0]) : str_field(h);
    }
    if (tenant === undefined) tenant = str_field(o["tenant_id"]);
    if (tenant === undefined) return $multi(undefined, "no_tenant");
    const [data] = json_encode(v);
    if (data === undefined) return $multi(undefined, "invalid_result");
    return $multi(
        {
            t: now,
            n: 0,
            request_id: rid,
            assignment_id: aid,
            tenant: tenant,
            provider: str_field(o["provider_id"]),
            data: data,
            bytes: data.length + 160,
        },
        undefined,
    );
}

/** Whether a result goes to a results stream (CONTRACT §11.2). */
export function result_matches(s: Stream, r: Result): boolean {
    if (r.tenant !== s.tenant) return false;
    const by_id =
        (s.assignment_id !== undefined && r.assignment_id === s.assignment_id) ||
        (s.request_id !== undefined && r.request_id === s.request_id);
    if (!by_id) return false;
    if (s.provider_id !== undefined && r.provider !== s.provider_id) return false;
    if (s.exclude !== undefined && r.provider !== undefined && s.exclude[r.provider] === true) return false;
    return true;
}

// ---------------------------------------------------------------------------------------------
// Queues and wake-ups
// ---------------------------------------------------------------------------------------------

function wake(s: Stream): void {
    // count() < 0: the stream is parked on its semaphore; one post wakes it, later events are
    // picked up by the same wake-up
    if (s.sema.count() < 0) s.sema.post(1);
}

/** Ends a stream from outside its request (the stream notices at its next wake-up). */
export function close(s: Stream, reason: string): void {
    if (s.closed === undefined) s.closed = reason;
    wake(s);
}

function push(s: Stream, frame: string): void {
    if (s.closed !== undefined) return;
    s.q[s.qn] = frame;
    s.qn++;
    s.qbytes += frame.length;
    // The stream writes its queue at every wake-up; a queue this long means it is not scheduled
    // to (cannot happen in practice): the bound holds anyway.
    if (s.qbytes > max_buffered) {
        s.q = [];
        s.qn = 0;
        s.qbytes = 0;
        close(s, "slow_client");
        return;
    }
    wake(s);
}

function push_result(s: Stream, r: Result): void {
    if (s.mark === r.n || (s.once && s.seq >= 1)) return;
    s.mark = r.n;
    s.seq++;
    push(s, "id: " + s.seq + "\ndata: " + r.data + "\n\n");
}

/** Takes the queued frames (the caller writes them); returns the table and its length. */
export function take(s: Stream): LuaMultiReturn<[string[], number]> {
    const q = s.q;
    const n = s.qn;
    s.q = [];
    s.qn = 0;
    s.qbytes = 0;
    return $multi(q, n);
}

// ---------------------------------------------------------------------------------------------
// NATS handlers
// ---------------------------------------------------------------------------------------------

function tenant_handler(tenant: string): connection.SubscriptionHandler {
    return (frame: Frame) => {
        const t = tenant_subs[tenant];
        if (t === undefined) return;
        const ev = message_frame(frame.payload, frame.headers);
        if (ev === undefined) {
            count_dropped("messages", "invalid_event");
            return;
        }
        for (const [s] of t.streams) push(s, ev);
    };
}

function prune(now: number): void {
    const oldest = now - rseconds;
    while (rhead < rtail) {
        const r = kept[rhead] as Result;
        if (r.t >= oldest && rbytes <= rbudget) break;
        kept[rhead] = undefined;
        rhead++;
        rbytes -= r.bytes;
    }
    if (rhead === rtail) {
        rhead = 0;
        rtail = 0;
    }
}

function keep(r: Result): void {
    if (rseconds <= 0) return;
    kept[rtail] = r;
    rtail++;
    rbytes += r.bytes;
    prune(r.t);
}

function deliver_to(set: LuaTable<Stream, boolean> | undefined, r: Result): void {
    if (set === undefined) return;
    for (const [s] of set) {
        if (result_matches(s, r)) push_result(s, r);
    }
}

function on_result(frame: Frame): void {
    const [r, reason] = parse_result(frame.payload as string, frame.headers, ngx.now());
    if (r === undefined) {
        if (reason === "invalid_result") count_dropped("results", "invalid_result");
        return;
    }
    result_n++;
    r.n = result_n;
    keep(r);
    if (r.request_id !== undefined) deliver_to(by_request[r.request_id], r);
    if (r.assignment_id !== undefined) deliver_to(by_assignment[r.assignment_id], r);
}

// ---------------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------------

/** The exit timer: pending timers run at once (premature) when the worker reloads or stops. */
function on_exit_timer(premature: boolean): void {
    if (!premature) {
        // a day passed: arm it again
        ngx.timer.at(86400, on_exit_timer);
        return;
    }
    exiting = true;
    for (const [s] of all) close(s, "shutdown");
}

/** init_worker: the results subscription, the exit timer, the metrics flusher. */
export function init_worker(): void {
    const cfg = config.get().streams;
    if (cfg === undefined) return;
    sem_new = (require("ngx.semaphore") as { new: typeof sem_new }).new;
    max_buffered = cfg.max_buffered_bytes;
    rseconds = cfg.results_replay_seconds;
    const workers = ngx.worker.count();
    rbudget = floor((cfg.results_replay_max_mb * 1048576) / (workers > 0 ? workers : 1));
    metrics.register_flusher(flush_metrics);
    const [ok, err] = ngx.timer.at(86400, on_exit_timer);
    if (ok === undefined) log_line.write(ngx.ERR, "beamline: cannot start the streams exit timer: ", err);
    if (cfg.results_enabled) {
        const [sid, serr] = connection.subscribe(cfg.results_subject, on_result);
        if (sid === undefined) log_line.write(ngx.ERR, "beamline: cannot subscribe to ", cfg.results_subject, ": ", serr);
        results_sid = sid;
    }
}

export function is_exiting(): boolean {
    return exiting || ngx.worker.exiting();
}

export function open_streams(): number {
    return open_total;
}

/** A new stream (not yet attached); nil when no semaphore could be made. */
export function new_stream(kind: Kind, tenant: string): Stream | undefined {
    if (sem_new === undefined) return undefined;
    const [sema] = sem_new(0);
    if (sema === undefined) return undefined;
    return { kind: kind, tenant: tenant, sema: sema, q: [], qn: 0, qbytes: 0, closed: undefined, once: false, seq: 0, mark: 0 };
}

function index_add(index: { [id: string]: LuaTable<Stream, boolean> | undefined }, id: string | undefined, s: Stream): void {
    if (id === undefined) return;
    let set = index[id];
    if (set === undefined) {
        set = new LuaTable<Stream, boolean>();
        index[id] = set;
    }
    set.set(s, true);
}

function index_remove(index: { [id: string]: LuaTable<Stream, boolean> | undefined }, id: string | undefined, s: Stream): void {
    if (id === undefined) return;
    const set = index[id];
    if (set === undefined) return;
    set.delete(s);
    if (next(set)[0] === undefined) index[id] = undefined;
}

/**
 * Registers a stream: a messages stream joins (or creates) its tenant's subscription; a results
 * stream first gets the kept results that match, oldest first, then the live ones. Returns nil,
 * or an error when the subscription cannot be made.
 */
export function attach(s: Stream): string | undefined {
    if (s.kind === "messages") {
        let t = tenant_subs[s.tenant];
        if (t === undefined) {
            const cfg = config.get().streams;
            const [sid, err] = connection.subscribe(events_subject(cfg.events_subject_prefix, s.tenant), tenant_handler(s.tenant));
            if (sid === undefined) return err;
            t = { sid: sid, streams: new LuaTable<Stream, boolean>(), n: 0 };
            tenant_subs[s.tenant] = t;
        }
        t.streams.set(s, true);
        t.n++;
    } else {
        if (results_sid === undefined) return "results subscription missing";
        prune(ngx.now());
        for (let i = rhead; i < rtail; i++) {
            const r = kept[i] as Result;
            if (result_matches(s, r)) push_result(s, r);
        }
        index_add(by_request, s.request_id, s);
        index_add(by_assignment, s.assignment_id, s);
    }
    all.set(s, true);
    open_count[s.kind]++;
    open_total++;
    return undefined;
}

/** Unregisters a stream; the tenant's subscription ends with its last messages stream here. */
export function detach(s: Stream): void {
    if (all.get(s) !== true) return;
    all.delete(s);
    open_count[s.kind]--;
    open_total--;
    if (s.kind === "messages") {
        const t = tenant_subs[s.tenant];
        if (t !== undefined && t.streams.get(s) === true) {
            t.streams.delete(s);
            t.n--;
            if (t.n === 0) {
                connection.unsubscribe(t.sid);
                tenant_subs[s.tenant] = undefined;
            }
        }
    } else {
        index_remove(by_request, s.request_id, s);
        index_remove(by_assignment, s.assignment_id, s);
    }
    s.q = [];
    s.qn = 0;
}

// ---------------------------------------------------------------------------------------------
// message_created events (CONTRACT §11.1)
// ---------------------------------------------------------------------------------------------

function jstr(s: string): string {
    const [t] = json_encode(s);
    return t !== undefined ? t : '""';
}

/** The event's parts and NATS headers, reused by every publish (publish_parts copies them). */
const ev: string[] = [];
const ev_headers = ["request_id", "", "tenant_id", ""];

/** Appends a value of a charset that needs no JSON escaping (a tenant id, a trace id). */
function push_plain(n: number, s: string): number {
    ev[n] = '"';
    ev[n + 1] = s;
    ev[n + 2] = '"';
    return n + 3;
}

/**
 * Appends a validated id (request_model: printable ASCII, no space, no control byte) as a JSON
 * string to `ev` from index `n`: quotes and the value as separate parts unless it holds a quote
 * or a backslash (two plain finds, memchr), else one encoded part. Returns the next index.
 */
function push_id(n: number, s: string): number {
    if (sfind(s, '"', 1, true)[0] === undefined && sfind(s, "\\", 1, true)[0] === undefined) return push_plain(n, s);
    ev[n] = jstr(s);
    return n + 1;
}

/**
 * After a 200 of decide/messages (not a replay, not a shadow request): queues one
 * message_created event for the tenant's streams on every instance. Never yields, never fails
 * the answer: a failed publish is counted by the connection (publish_failures). The event's JSON
 * goes to the connection as parts (connection.publish_parts): joining it into one string cost a
 * dozen intermediate strings of up to the body's size per decide. The ids are the request's
 * validated ones (request_model: the tenant [A-Za-z0-9._:-], the trace id hex, the request and
 * message ids printable ASCII without spaces), so neither the JSON nor the NATS subject and
 * headers are checked again here (`trusted` publish).
 */
export function publish_decision(
    route: string,
    tenant: string,
    request_id: string,
    message_id: string | undefined,
    trace_id: string,
    body: string,
): void {
    const cfg = config.get().streams;
    if (cfg === undefined || !cfg.messages_enabled) return;
    let response = body;
    if (!one_line(response)) {
        // the Router's bytes are passed to the client unchanged; the event's data is one line
        const [v, derr] = json_decode(response);
        if (derr !== undefined) return;
        const [enc] = json_encode(v);
        if (enc === undefined) return;
        response = enc;
    }
    ev[0] = '{"tenant_id":';
    let n = push_plain(1, tenant);
    ev[n] = ',"request_id":';
    n = push_id(n + 1, request_id);
    ev[n] = ',"message_id":';
    if (message_id !== undefined) {
        n = push_id(n + 1, message_id);
    } else {
        ev[n + 1] = "null";
        n += 2;
    }
    ev[n] = ',"trace_id":';
    n = push_plain(n + 1, trace_id);
    const ts = tostr(floor(ngx.now() * 1000));
    ev[n] = ',"route":"';
    ev[n + 1] = route;
    ev[n + 2] = '","ts":';
    ev[n + 3] = ts;
    ev[n + 4] = ',"response":';
    ev[n + 5] = response;
    ev[n + 6] = "}";
    n += 7;
    let len = 0;
    for (let i = 0; i < n; i++) len += ev[i].length;
    ev_headers[1] = request_id;
    ev_headers[3] = tenant;
    connection.publish_parts(events_subject(cfg.events_subject_prefix, tenant), ev_headers, ev, n, len, true);
}
