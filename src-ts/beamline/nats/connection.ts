/**
 * The per-worker NATS connection manager (see ARCHITECTURE.md, "The NATS connection").
 *
 * A cosocket belongs to the request or timer that created it, so one background timer (started
 * from init_worker with `ngx.timer.at(0, …)`) owns the socket for the worker's lifetime. Inside
 * it a reader light thread parses server frames and a writer light thread flushes the frame
 * queue. Requests never touch the socket: they queue an HPUB frame addressed to a private reply
 * subject under one wildcard inbox subscription and wait on their own semaphore, which the
 * reader posts when the reply with their token arrives.
 *
 * Module state is per worker. Nothing from `ngx` is touched at load time, so the nkey helpers at
 * the bottom are testable under plain LuaJIT.
 */
import * as protocol from "./protocol";
import * as libcrypto from "../crypto";
import * as dns from "../dns";
import type { Frame, HeaderMap, HeaderList, Parser } from "./protocol";
import * as log_line from "../log_line";

const ssub = string.sub;
const sfind = string.find;
const smatch = string.match;
const sbyte = string.byte;
const schar = string.char;
const sformat = string.format;
const sgsub = string.gsub;
const slower = string.lower;
const concat = table.concat;
const tonum = tonumber;
const tostr = tostring;
const ltype = type;
const floor = math.floor;
const bitop = require("bit") as typeof bit;
const band = bitop.band;
const bor = bitop.bor;
const bxor = bitop.bxor;
const lshift = bitop.lshift;
const rshift = bitop.rshift;
const append_hpub = protocol.append_hpub;
const header_block_len = protocol.header_block_len;
const check_headers = protocol.check_headers;
const bad_token = protocol.bad_token;
/** The last subject that passed bad_token (requests almost always use one). */
let checked_subject: string | undefined;
const PONG = protocol.PONG;
const PING = protocol.PING;

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/** Options; field names match `nats` in the gateway config (src-ts/beamline/config.ts). */
export interface ConnectionOptions {
    /** `nats://host:port`, `nats://user:pass@host:port`, `nats://token@host:port`, comma-separated or a list. */
    servers?: string | string[];
    token?: string;
    user?: string;
    password?: string;
    /** nkey user seed (`SU…`); the CONNECT carries the public key and the signed nonce. */
    nkey_seed?: string;
    /** User JWT (decentralised auth), sent together with the nkey signature. */
    jwt?: string;
    name?: string;
    connect_timeout_ms?: number;
    send_timeout_ms?: number;
    /** Read poll interval: how often idle loops check for shutdown (ms). */
    poll_ms?: number;
    reconnect_wait_ms?: number;
    reconnect_wait_max_ms?: number;
    ping_interval_seconds?: number;
    max_pings_out?: number;
    /** Biggest inbound message accepted by the parser (bytes). */
    max_inbound_payload?: number;
    /** Default request timeout when a caller passes none (ms). */
    request_timeout_ms?: number;
    /** Override the generated inbox prefix (tests); must be unique per worker. */
    inbox_prefix?: string;
    /** TLS for `tls://` servers and servers whose INFO says `tls_required` (config `nats.tls`). */
    tls?: TlsOptions;
}

/**
 * TLS settings. The CA bundle is not here: lua-nginx-module's cosockets verify against
 * `lua_ssl_trusted_certificate` (rendered from `nats.tls.ca_file` into conf.d/10-lua.conf).
 */
export interface TlsOptions {
    /** Name checked against the server certificate and sent as SNI; default: the URL's host. */
    server_name?: string;
    /** Verify the server certificate chain and name (default true). */
    verify?: boolean;
    /** Client certificate and key (PEM files), loaded by `load_client_cert` in the master. */
    cert_file?: string;
    key_file?: string;
    ca_file?: string;
}

export type RequestError = "not_connected" | "timeout" | "no_responders" | "payload_too_large" | "invalid_request";

export interface Status {
    connected: boolean;
    /** "host:port" of the current server, nil while disconnected. */
    server: string | undefined;
    max_payload: number;
    in_flight: number;
    /** live subscriptions besides the reply inbox (streams, results) */
    subscriptions: number;
}

export interface Counters {
    /** request frames written to the socket */
    sent: number;
    /** messages received on the inbox (replies, including late ones) */
    received: number;
    /** request frames and published events lost: refused by publish(), a failed write, or a
     * disconnect before they were written */
    publish_failures: number;
    /** successful connects after a lost connection */
    reconnects: number;
    /** messages received on subscriptions other than the inbox (stream events, results) */
    sub_received: number;
}

/**
 * A subscription handler: runs in the reader thread for every MSG/HMSG of its subscription.
 * It must not yield (no cosocket calls, no sleep, no semaphore wait): it may only queue work
 * and post semaphores. An error in it is logged and the message dropped.
 */
export type SubscriptionHandler = (this: void, frame: Frame) => void;

interface Subscription {
    sid: string;
    subject: string;
    handler: SubscriptionHandler;
}

interface Server {
    host: string;
    port: number;
    /** "host:port" */
    key: string;
    user?: string;
    pass?: string;
    token?: string;
    tls: boolean;
    /** discovered through INFO connect_urls */
    implicit: boolean;
    /** the server announced lame-duck mode: skip it once when picking the next server */
    ldm: boolean;
}

interface Waiter {
    sema: NgxSemaphore;
    done: boolean;
    payload: string | undefined;
    headers: HeaderMap | undefined;
    status: number | undefined;
    err: RequestError | undefined;
}

interface Session {
    sock: NgxTcpSocket;
    parser: Parser;
    server: Server;
    dead: boolean;
    last_rx: number;
    last_ping: number;
    pings_out: number;
}

type SemaphoreModule = { new: (this: void, n?: number) => LuaMultiReturn<[NgxSemaphore, undefined] | [undefined, string]> };

// ---------------------------------------------------------------------------------------------
// Per-worker state
// ---------------------------------------------------------------------------------------------

const DEFAULT_MAX_PAYLOAD = 1048576; // nats-server default until INFO says otherwise
const READ_CHUNK = 65536;
const POOL_MAX = 1024;

let sem_new: SemaphoreModule["new"] | undefined;
let started = false;
let stopping = false;
let cfg: ConnectionOptions = {};
let pool: Server[] = [];
let next_server = 0;
let connected = false;
let current_server: string | undefined;
let max_payload = DEFAULT_MAX_PAYLOAD;
let in_flight = 0;
let waiters: { [token: string]: Waiter | undefined } = {};
let inbox_prefix = "";
let inbox_subject = "";
let seq = 0;
let default_timeout_s = 5;
let ever_connected = false;

// Requests that arrive while the manager is (re)connecting are held instead of failing at once:
// at worker start (a freshly reloaded worker accepts clients before its handshake is done) and
// right after a working connection was lost (failover to the next server). The hold ends when
// the connection is up, when one full pass over the server pool has failed (then NATS is down
// and requests fail fast again), or after min(request timeout, connect timeout).
let holding = false;
let csema: NgxSemaphore | undefined;

// The writer's queue is double-buffered: requests append to `queue` while the writer sends the
// other table, so a send that yields never sees the array change under it.
// Entries are frame parts (strings and numbers), not whole frames: see protocol.append_hpub.
let queue: (string | number)[] = [];
let spare: (string | number)[] = [];
let qn = 0;
/** request (HPUB) frames in `queue`, for the counters */
let qpubs = 0;
/** published messages (stream events: `publish`) in `queue`; not Router requests */
let qevents = 0;
let wsema: NgxSemaphore | undefined;

const counters: Counters = { sent: 0, received: 0, publish_failures: 0, reconnects: 0, sub_received: 0 };

// Subscriptions besides the reply inbox (sid "1"), by sid. They live across reconnects: a new
// session re-sends a SUB for each before anything else it writes.
const subs: { [sid: string]: Subscription | undefined } = {};
let nsubs = 0;
let next_sid = 1;

// The client certificate chain and key (cdata from ngx.ssl.parse_pem_*), parsed in the master by
// load_client_cert() so workers (an unprivileged user) never read the key file; inherited on fork.
let client_cert: unknown = undefined;
let client_key: unknown = undefined;

// Waiter objects (with their semaphore) are reused: one ffi semaphore per request is measurable.
const waiter_pool: Waiter[] = [];
let waiter_npool = 0;

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

function log(level: number, ...parts: unknown[]): void {
    log_line.write(level, "nats: ", ...parts);
}

// Park–Miller PRNG for jitter, seeded per worker from /dev/urandom (math.random is unseeded and
// would make every worker back off in lockstep; seeding it would change it for everyone).
let rng_state = 1;

function rand(): number {
    rng_state = (rng_state * 16807) % 2147483647;
    return rng_state / 2147483647;
}

function random_bytes(n: number): string {
    const [f] = io.open("/dev/urandom", "rb");
    if (f !== undefined) {
        const data = f.read(n);
        f.close();
        if (ltype(data) === "string" && (data as string).length === n) return data as string;
    }
    const out: string[] = [];
    for (let i = 0; i < n; i++) out[i] = schar(floor(rand() * 256));
    return concat(out);
}

function hex(s: string): string {
    const [h] = sgsub(s, ".", (c: string) => sformat("%02x", sbyte(c)));
    return h;
}

function percent_decode(s: string): string {
    const [d] = sgsub(s, "%%(%x%x)", (h: string) => schar(tonum(h, 16) as number));
    return d;
}

/** Parses one server URL. */
export function parse_server_url(url: string): LuaMultiReturn<[Server, undefined] | [undefined, string]> {
    const [trimmed] = smatch(url, "^%s*(.-)%s*$");
    let rest = trimmed as string;
    if (rest === "") return $multi(undefined, "empty server url");
    let scheme = "nats";
    const [sch, after] = smatch(rest, "^(%a[%w+.-]*)://(.*)$");
    if (sch !== undefined) {
        scheme = slower(sch);
        rest = after as string;
    }
    if (scheme !== "nats" && scheme !== "tls") return $multi(undefined, "unsupported scheme " + scheme + " in " + url);
    // drop any path
    const [slash] = sfind(rest, "/", 1, true);
    if (slash !== undefined) rest = ssub(rest, 1, slash - 1);
    let user: string | undefined;
    let pass: string | undefined;
    let token: string | undefined;
    const [userinfo, hostport] = smatch(rest, "^(.*)@([^@]*)$");
    if (userinfo !== undefined) {
        rest = hostport as string;
        const [u, p] = smatch(userinfo, "^([^:]*):(.*)$");
        if (u !== undefined) {
            user = percent_decode(u);
            pass = percent_decode(p as string);
        } else {
            token = percent_decode(userinfo);
        }
    }
    let host: string | undefined;
    let port_s: string | undefined;
    if (ssub(rest, 1, 1) === "[") {
        [host, port_s] = smatch(rest, "^%[([^%]]+)%]:?(%d*)$");
    } else {
        [host, port_s] = smatch(rest, "^([^:]+):?(%d*)$");
    }
    if (host === undefined || host === "") return $multi(undefined, "bad host in " + url);
    const port = port_s === undefined || port_s === "" ? 4222 : (tonum(port_s) as number);
    if (port < 1 || port > 65535) return $multi(undefined, "bad port in " + url);
    return $multi(
        {
            host: host,
            port: port,
            key: sfind(host, ":", 1, true)[0] !== undefined ? "[" + host + "]:" + port : host + ":" + port,
            user: user,
            pass: pass,
            token: token,
            tls: scheme === "tls",
            implicit: false,
            ldm: false,
        },
        undefined,
    );
}

function build_pool(servers: string | string[] | undefined): LuaMultiReturn<[Server[], undefined] | [undefined, string]> {
    const list: string[] = [];
    if (servers === undefined) {
        list[0] = "nats://127.0.0.1:4222";
    } else if (ltype(servers) === "string") {
        list[0] = servers as string;
    } else {
        for (const s of servers as string[]) list[list.length] = s;
    }
    const out: Server[] = [];
    const seen: { [key: string]: boolean } = {};
    for (const item of list) {
        for (const [u] of string.gmatch(item, "[^,]+")) {
            const [srv, err] = parse_server_url(u);
            if (srv === undefined) return $multi(undefined, err as string);
            if (!seen[srv.key]) {
                seen[srv.key] = true;
                out[out.length] = srv;
            }
        }
    }
    if (out.length === 0) return $multi(undefined, "no NATS servers configured");
    return $multi(out, undefined);
}

// ---------------------------------------------------------------------------------------------
// Waiters
// ---------------------------------------------------------------------------------------------

function acquire_waiter(): Waiter | undefined {
    if (waiter_npool > 0) {
        const w = waiter_pool[waiter_npool - 1];
        waiter_pool[waiter_npool - 1] = undefined as unknown as Waiter;
        waiter_npool--;
        return w;
    }
    const [sema] = (sem_new as SemaphoreModule["new"])(0);
    if (sema === undefined) return undefined;
    return { sema: sema, done: false, payload: undefined, headers: undefined, status: undefined, err: undefined };
}

function release_waiter(w: Waiter): void {
    w.payload = undefined;
    w.headers = undefined;
    w.status = undefined;
    w.err = undefined;
    w.done = false;
    // A post that raced with a timeout leaves a banked resource: such a semaphore is not reused.
    if (waiter_npool >= POOL_MAX || w.sema.count() !== 0) return;
    waiter_pool[waiter_npool] = w;
    waiter_npool++;
}

/** Fails every in-flight request at once (the connection is gone) and drops unsent frames. */
function fail_all(): void {
    const old = waiters;
    waiters = {};
    in_flight = 0;
    for (const [, w] of pairs(old)) {
        if (!w.done) {
            w.done = true;
            w.err = "not_connected";
            w.sema.post(1);
        }
    }
    counters.publish_failures += qpubs + qevents;
    queue = [];
    qn = 0;
    qpubs = 0;
    qevents = 0;
}

/** Sets whether requests are held while connecting; wakes every held request on a change. */
function set_holding(on: boolean): void {
    holding = on;
    const cs = csema;
    if (cs !== undefined) {
        const waiting = -cs.count();
        if (waiting > 0) cs.post(waiting);
    }
}

/**
 * Waits (at most `max_s` seconds) while the connection is being (re)established.
 * Returns the seconds spent waiting; the caller re-checks `connected`.
 */
function wait_for_connection(max_s: number): number {
    const cs = csema as NgxSemaphore;
    ngx.update_time();
    const t0 = ngx.now();
    let left = max_s;
    while (!connected && holding && left > 0 && !should_stop()) {
        cs.wait(left);
        ngx.update_time();
        left = max_s - (ngx.now() - t0);
    }
    return ngx.now() - t0;
}

function wake_writer(): void {
    const ws = wsema as NgxSemaphore;
    // count() < 0: the writer is parked on the semaphore; one post is enough to wake it
    if (ws.count() < 0) ws.post(1);
}

function enqueue(frame: string): void {
    queue[qn] = frame;
    qn++;
    wake_writer();
}

function deliver(frame: Frame): void {
    const sid = frame.sid;
    if (sid !== "1") {
        const s = sid !== undefined ? subs[sid] : undefined;
        // a message already in flight when its UNSUB went out: dropped
        if (s === undefined) return;
        counters.sub_received++;
        const [ok, err] = pcall(s.handler, frame);
        if (!ok) log(ngx.ERR, "subscription handler for ", s.subject, " failed: ", err);
        return;
    }
    counters.received++;
    const token = ssub(frame.subject as string, inbox_prefix.length + 1);
    const w = waiters[token];
    if (w === undefined) return; // a late reply after its timeout: dropped
    waiters[token] = undefined;
    in_flight--;
    w.done = true;
    w.payload = frame.payload;
    w.headers = frame.headers;
    w.status = frame.status;
    if (frame.status === 503) w.err = "no_responders";
    w.sema.post(1);
}

// ---------------------------------------------------------------------------------------------
// Public API: requests and status
// ---------------------------------------------------------------------------------------------

/**
 * Core NATS request/reply over the worker's connection.
 * Returns (payload, headers, status) — headers/status only for HMSG replies — or (nil, err).
 * Must run where the API may yield (rewrite/access/content phases, timers).
 */
export function request(
    subject: string,
    headers: HeaderList | undefined,
    payload: string,
    timeout_ms?: number,
): LuaMultiReturn<[string, HeaderMap | undefined, number | undefined] | [undefined, RequestError]> {
    let t = timeout_ms !== undefined && timeout_ms > 0 ? timeout_ms / 1000 : default_timeout_s;
    if (!connected) {
        if (!holding || csema === undefined) return $multi(undefined, "not_connected");
        const connect_s = (cfg.connect_timeout_ms !== undefined ? cfg.connect_timeout_ms : 2000) / 1000;
        t -= wait_for_connection(connect_s < t ? connect_s : t);
        if (!connected || t <= 0) return $multi(undefined, "not_connected");
    }
    // The subject is checked once per distinct value; the reply subject is our own inbox.
    if (subject !== checked_subject) {
        if (bad_token(subject)) {
            log(ngx.WARN, "rejected request frame: invalid subject");
            return $multi(undefined, "invalid_request");
        }
        checked_subject = subject;
    }
    const herr = check_headers(headers);
    if (herr !== undefined) {
        log(ngx.WARN, "rejected request frame: ", herr);
        return $multi(undefined, "invalid_request");
    }
    const hlen = header_block_len(headers);
    // The server drops the whole connection on an oversize frame: refuse before publishing.
    if (hlen + payload.length > max_payload) return $multi(undefined, "payload_too_large");
    const w = acquire_waiter();
    if (w === undefined) return $multi(undefined, "not_connected");
    seq++;
    const token = tostr(seq);
    waiters[token] = w;
    in_flight++;
    // The frame's parts go straight into the writer's queue (nothing here yields, so frames
    // never interleave).
    qn = append_hpub(queue, qn, subject, inbox_prefix, token, headers, hlen, payload);
    qpubs++;
    wake_writer();
    const [ok] = w.sema.wait(t);
    if (!ok && !w.done) {
        if (waiters[token] === w) {
            waiters[token] = undefined;
            in_flight--;
        }
        release_waiter(w);
        return $multi(undefined, "timeout");
    }
    // done (possibly posted just as the wait timed out: the reply is there, use it)
    const err = w.err;
    const p = w.payload;
    const h = w.headers;
    const st = w.status;
    release_waiter(w);
    if (err !== undefined) return $multi(undefined, err);
    return $multi(p as string, h, st);
}

export function status(): Status {
    return { connected: connected, server: current_server, max_payload: max_payload, in_flight: in_flight, subscriptions: nsubs };
}

// ---------------------------------------------------------------------------------------------
// Public API: subscriptions and publishing (contract §11)
// ---------------------------------------------------------------------------------------------

/**
 * Subscribes `handler` to `subject` on this worker's connection and returns the sid. The SUB
 * goes out now when connected, else with the next session's handshake (and again after every
 * reconnect). Returns (nil, err) for an invalid subject.
 */
export function subscribe(subject: string, handler: SubscriptionHandler): LuaMultiReturn<[string, undefined] | [undefined, string]> {
    next_sid++;
    const sid = tostr(next_sid);
    const [frame, err] = protocol.sub(subject, sid);
    if (frame === undefined) return $multi(undefined, err as string);
    subs[sid] = { sid: sid, subject: subject, handler: handler };
    nsubs++;
    if (connected) enqueue(frame);
    return $multi(sid, undefined);
}

/** Ends a subscription (UNSUB when connected; a later session simply does not re-send it). */
export function unsubscribe(sid: string): void {
    if (subs[sid] === undefined) return;
    subs[sid] = undefined;
    nsubs--;
    if (connected) enqueue(protocol.unsub(sid));
}

/** The subscriptions' SUB frames, for a new session (sent before any other frame). */
function resubscribe(): void {
    for (const [sid, s] of pairs(subs)) {
        const [frame] = protocol.sub(s.subject, sid as string);
        if (frame !== undefined) {
            queue[qn] = frame;
            qn++;
        }
    }
}

/**
 * The checks of a publish: connected, a valid subject and headers, within max_payload. Returns
 * the header block's length (0 without headers), or (nil, err) counted in publish_failures.
 */
function publish_check(
    subject: string,
    headers: HeaderList | undefined,
    plen: number,
    trusted?: boolean,
): LuaMultiReturn<[number, undefined] | [undefined, string]> {
    let err: string | undefined;
    let hlen = 0;
    if (!connected) err = "not_connected";
    else if (trusted !== true && bad_token(subject)) err = "invalid subject";
    else {
        if (trusted !== true) err = check_headers(headers);
        if (err === undefined) {
            if (headers !== undefined) hlen = header_block_len(headers);
            if (hlen + plen > max_payload) err = "payload_too_large";
        }
    }
    if (err !== undefined) {
        counters.publish_failures++;
        return $multi(undefined, err);
    }
    return $multi(hlen, undefined);
}

/**
 * Publishes one message (HPUB when headers are given, else PUB) through the writer queue: it
 * never yields and never waits for the server. Returns true, or (nil, err) when not connected,
 * invalid, or over max_payload; every failure, and a frame later lost to a disconnect, counts
 * in publish_failures.
 */
export function publish(
    subject: string,
    headers: HeaderList | undefined,
    payload: string,
): LuaMultiReturn<[true, undefined] | [undefined, string]> {
    const [hlen, err] = publish_check(subject, headers, payload.length);
    if (hlen === undefined) return $multi(undefined, err as string);
    qn = protocol.append_pub(queue, qn, subject, headers, hlen, payload);
    qevents++;
    wake_writer();
    return $multi(true, undefined);
}

/**
 * `publish` with headers and the payload as `np` string parts (0-based `parts`) of `plen` bytes
 * in all, appended to the writer's queue as they are: no payload string is built. The same
 * checks as `publish`, except that `trusted` skips re-checking subject and headers the caller
 * built from validated values; `parts` may be reused by the caller once this returns.
 */
export function publish_parts(
    subject: string,
    headers: HeaderList,
    parts: string[],
    np: number,
    plen: number,
    trusted?: boolean,
): LuaMultiReturn<[true, undefined] | [undefined, string]> {
    const [hlen, err] = publish_check(subject, headers, plen, trusted);
    if (hlen === undefined) return $multi(undefined, err as string);
    qn = protocol.append_pub_parts(queue, qn, subject, headers, hlen, parts, np, plen);
    qevents++;
    wake_writer();
    return $multi(true, undefined);
}

/** The live counters table (read-only for callers). */
export function get_counters(): Counters {
    return counters;
}

export function is_connected(): boolean {
    return connected;
}

/** The server's max_payload (from INFO; the NATS default until the first connect). */
export function get_max_payload(): number {
    return max_payload;
}

// ---------------------------------------------------------------------------------------------
// Connection owner: handshake, reader, writer, reconnect loop
// ---------------------------------------------------------------------------------------------

function should_stop(): boolean {
    return stopping || ngx.worker.exiting();
}

/** The fields of a server INFO the client reads; the rest is ignored. */
interface ServerInfo {
    max_payload?: unknown;
    connect_urls?: unknown;
    ldm?: unknown;
    tls_required?: unknown;
    tls_available?: unknown;
    nonce?: unknown;
}

function apply_info(sess: Session, info: ServerInfo): void {
    const mp = info.max_payload;
    if (typeof mp === "number" && mp > 0) max_payload = mp;
    const urls = info.connect_urls;
    if (ltype(urls) === "table") {
        for (const u of urls as string[]) {
            if (ltype(u) !== "string") continue;
            const [srv] = parse_server_url(u);
            if (srv === undefined) continue;
            let known = false;
            for (const s of pool) {
                if (s.key === srv.key) {
                    known = true;
                    break;
                }
            }
            if (!known) {
                // discovered servers use the credentials of the server that told us about them
                srv.implicit = true;
                srv.user = sess.server.user;
                srv.pass = sess.server.pass;
                srv.token = sess.server.token;
                srv.tls = sess.server.tls;
                pool[pool.length] = srv;
                log(ngx.INFO, "discovered server ", srv.key);
            }
        }
    }
    if (info.ldm === true) {
        // Lame-duck: the server will close us soon. Keep using it until it does, but start the
        // next connect attempt elsewhere.
        sess.server.ldm = true;
        log(ngx.WARN, "server ", sess.server.key, " entered lame-duck mode");
    }
}

/** Fatal -ERRs end the session (the server closes the connection after them). */
function is_fatal_err(msg: string): boolean {
    const m = slower(msg);
    return sfind(m, "permissions violation", 1, true)[0] === undefined;
}

function sign_nonce_for_connect(nonce: unknown): LuaMultiReturn<[string, string] | [undefined, string]> {
    if (ltype(nonce) !== "string") return $multi(undefined, "server sent no nonce for nkey auth");
    return nkey_sign(cfg.nkey_seed as string, nonce as string);
}

/** Reads more bytes into the parser; returns nil on data, or an error ("timeout", "closed"). */
function read_more(sess: Session): string | undefined {
    const [data, err] = sess.sock.receiveany(READ_CHUNK);
    if (data !== undefined) {
        sess.parser.feed(data);
        sess.last_rx = ngx.now();
        return undefined;
    }
    return err;
}

/**
 * Reads and parses the client certificate and key of `nats.tls` (cert_file/key_file) with
 * lua-resty-core's ngx.ssl. Call it in init_by_lua (the master, which may read a key file that
 * the workers cannot): the parsed cdata is inherited by every worker. Returns true, or
 * (nil, err) naming the file. No files configured: a no-op.
 */
export function load_client_cert(tls: TlsOptions | undefined): LuaMultiReturn<[true, undefined] | [undefined, string]> {
    client_cert = undefined;
    client_key = undefined;
    if (tls === undefined || (tls.cert_file === undefined && tls.key_file === undefined)) return $multi(true, undefined);
    if (tls.cert_file === undefined || tls.key_file === undefined)
        return $multi(undefined, "nats.tls: cert_file and key_file must be given together");
    const read = (file: string): LuaMultiReturn<[string, undefined] | [undefined, string]> => {
        const [f, oerr] = io.open(file, "rb");
        // io.open's message already names the file
        if (f === undefined) return $multi(undefined, "cannot read " + tostr(oerr));
        const data = f.read("*a") as string | undefined;
        f.close();
        if (data === undefined || data === "") return $multi(undefined, "cannot read " + file + ": empty");
        return $multi(data, undefined);
    };
    const [cpem, cerr] = read(tls.cert_file);
    if (cpem === undefined) return $multi(undefined, "nats.tls.cert_file: " + cerr);
    const [kpem, kerr] = read(tls.key_file);
    if (kpem === undefined) return $multi(undefined, "nats.tls.key_file: " + kerr);
    const ssl = require("ngx.ssl") as {
        parse_pem_cert: (this: void, pem: string) => LuaMultiReturn<[unknown, undefined] | [undefined, string]>;
        parse_pem_priv_key: (this: void, pem: string) => LuaMultiReturn<[unknown, undefined] | [undefined, string]>;
    };
    const [cert, perr] = ssl.parse_pem_cert(cpem);
    if (cert === undefined)
        return $multi(undefined, "nats.tls.cert_file " + tls.cert_file + ": not a PEM certificate (" + tostr(perr) + ")");
    const [key, pkerr] = ssl.parse_pem_priv_key(kpem);
    // never echo key material: only the file name and OpenSSL's reason
    if (key === undefined) return $multi(undefined, "nats.tls.key_file " + tls.key_file + ": not a PEM private key (" + tostr(pkerr) + ")");
    client_cert = cert;
    client_key = key;
    return $multi(true, undefined);
}

/**
 * Upgrades the connected socket to TLS (nats-server 2.9 sends INFO in clear text, then expects
 * the client's TLS handshake before CONNECT). Returns nil, or an error for the log.
 */
function upgrade_tls(sock: NgxTcpSocket, srv: Server): string | undefined {
    const t = cfg.tls !== undefined ? cfg.tls : {};
    const name = t.server_name !== undefined && t.server_name !== "" ? t.server_name : srv.host;
    const verify = t.verify !== false;
    if (client_cert !== undefined) {
        const [cok, cerr] = sock.setclientcert(client_cert, client_key);
        if (cok === undefined) return "tls client certificate: " + cerr;
    }
    const [ok, err] = sock.sslhandshake(false, name, verify);
    if (ok === undefined) {
        let hint = "";
        // nginx checks the name with X509_check_host, which matches DNS names (SAN/CN) only
        const [is_ip] = smatch(name, "^[%d.]+$");
        if (verify && err === "certificate host mismatch" && is_ip !== undefined) {
            hint = " (an IP address never matches here: set nats.tls.server_name to a DNS name of the certificate)";
        }
        return "tls handshake failed (server name " + name + (verify ? ", verified" : ", not verified") + "): " + tostr(err) + hint;
    }
    return undefined;
}

/** Connects and authenticates; on success the session is ready for the reader and writer. */
function handshake(srv: Server): LuaMultiReturn<[Session, undefined] | [undefined, string]> {
    const sock = ngx.socket.tcp();
    const connect_ms = cfg.connect_timeout_ms !== undefined ? cfg.connect_timeout_ms : 2000;
    sock.settimeouts(
        connect_ms,
        cfg.send_timeout_ms !== undefined ? cfg.send_timeout_ms : 5000,
        cfg.poll_ms !== undefined ? cfg.poll_ms : 1000,
    );
    // A name of the hosts file is connected by address; any other name goes to nginx's resolver.
    const [ok, cerr] = sock.connect(dns.peer_address(srv.host), srv.port);
    if (ok === undefined) return $multi(undefined, "connect: " + cerr);
    sock.setoption("tcp-nodelay", true);
    const sess: Session = {
        sock: sock,
        parser: protocol.new_parser({ max_payload: cfg.max_inbound_payload !== undefined ? cfg.max_inbound_payload : 64 * 1024 * 1024 }),
        server: srv,
        dead: false,
        last_rx: ngx.now(),
        last_ping: ngx.now(),
        pings_out: 0,
    };
    const deadline = ngx.now() + connect_ms / 1000;
    let got_info = false;
    let sent_connect = false;
    while (true) {
        const [f, perr] = sess.parser.next();
        if (f === undefined) {
            if (perr !== undefined) {
                sock.close();
                return $multi(undefined, "protocol error: " + perr);
            }
            const rerr = read_more(sess);
            if (rerr !== undefined) {
                if (rerr !== "timeout" || ngx.now() >= deadline || should_stop()) {
                    sock.close();
                    return $multi(undefined, "handshake: " + rerr);
                }
            }
            continue;
        }
        const op = f.op;
        if (!got_info) {
            if (op !== "INFO") {
                sock.close();
                return $multi(undefined, "expected INFO, got " + op);
            }
            got_info = true;
            const info = f.info as ServerInfo;
            // tls:// URL, or the server insists: upgrade before CONNECT (credentials never go
            // out in clear text to a server that asked for TLS). A tls:// server that does not
            // offer TLS is refused, never downgraded.
            const use_tls = srv.tls || info.tls_required === true;
            if (use_tls) {
                if (info.tls_required !== true && info.tls_available !== true) {
                    sock.close();
                    return $multi(undefined, "tls:// server does not offer TLS (INFO has no tls_required/tls_available)");
                }
                if (sess.parser.buffered() > 0) {
                    sock.close();
                    return $multi(undefined, "unexpected clear-text data before the TLS handshake");
                }
                const terr = upgrade_tls(sock, srv);
                if (terr !== undefined) {
                    sock.close();
                    return $multi(undefined, terr);
                }
            }
            apply_info(sess, info);
            const copts: protocol.ConnectOptions = {
                name: cfg.name !== undefined ? cfg.name : "beamline-gateway",
                lang: "lua",
                version: "0.1.0",
                tls_required: use_tls,
            };
            const token = srv.token !== undefined ? srv.token : cfg.token;
            const user = srv.user !== undefined ? srv.user : cfg.user;
            const pass = srv.user !== undefined ? srv.pass : cfg.password;
            if (token !== undefined && token !== "") copts.auth_token = token;
            if (user !== undefined && user !== "") {
                copts.user = user;
                copts.pass = pass !== undefined ? pass : "";
            }
            if (cfg.nkey_seed !== undefined && cfg.nkey_seed !== "") {
                const [sig, pub_or_err] = sign_nonce_for_connect(info.nonce);
                if (sig === undefined) {
                    sock.close();
                    return $multi(undefined, "nkey: " + pub_or_err);
                }
                copts.nkey = pub_or_err;
                copts.sig = sig;
                if (cfg.jwt !== undefined && cfg.jwt !== "") copts.jwt = cfg.jwt;
            }
            const [subf] = protocol.sub(inbox_subject, 1);
            // PING last: its PONG proves CONNECT and SUB were processed (verbose is off)
            const [sent, serr] = sock.send([protocol.connect(copts), subf as string, PING]);
            if (sent === undefined) {
                sock.close();
                return $multi(undefined, "send: " + serr);
            }
            sent_connect = true;
        } else if (op === "PONG" && sent_connect) {
            return $multi(sess, undefined);
        } else if (op === "PING") {
            sock.send(PONG);
        } else if (op === "INFO") {
            apply_info(sess, f.info as ServerInfo);
        } else if (op === "-ERR") {
            sock.close();
            return $multi(undefined, "server error: " + f.message);
        }
        // +OK and anything else during the handshake: ignored
    }
}

/** Handles one frame in the reader; returns an error when the session must end. */
function handle_frame(sess: Session, f: Frame): string | undefined {
    const op = f.op;
    if (op === "MSG" || op === "HMSG") {
        deliver(f);
    } else if (op === "PING") {
        enqueue(PONG);
    } else if (op === "PONG") {
        sess.pings_out = 0;
    } else if (op === "INFO") {
        apply_info(sess, f.info as ServerInfo);
    } else if (op === "-ERR") {
        const msg = f.message as string;
        if (is_fatal_err(msg)) return "server error: " + msg;
        log(ngx.WARN, "server error: ", msg);
    }
    return undefined;
}

function reader(sess: Session): string {
    const parser = sess.parser;
    const ping_interval = cfg.ping_interval_seconds !== undefined ? cfg.ping_interval_seconds : 30;
    const max_pings_out = cfg.max_pings_out !== undefined ? cfg.max_pings_out : 2;
    while (true) {
        // drain every complete frame before reading again
        while (true) {
            const [f, perr] = parser.next();
            if (f === undefined) {
                if (perr !== undefined) return "protocol error: " + perr;
                break;
            }
            const herr = handle_frame(sess, f);
            if (herr !== undefined) return herr;
        }
        if (sess.dead) return "closing";
        const rerr = read_more(sess);
        if (rerr === undefined) continue;
        if (rerr !== "timeout") return rerr;
        // Read timeouts are the poll tick: check shutdown and liveness. Partial data stays in
        // the parser, so nothing is lost across them.
        // On shutdown, let requests already waiting get their replies (worker_shutdown_timeout
        // is the backstop); nothing new arrives on an exiting worker for long.
        if (should_stop() && in_flight === 0) return "exiting";
        const now = ngx.now();
        if (now - sess.last_rx >= ping_interval && now - sess.last_ping >= ping_interval) {
            if (sess.pings_out >= max_pings_out) return "stale connection (no PONG)";
            sess.pings_out++;
            sess.last_ping = now;
            enqueue(PING);
        }
    }
}

function writer(sess: Session): string {
    const sock = sess.sock;
    const ws = wsema as NgxSemaphore;
    const poll = (cfg.poll_ms !== undefined ? cfg.poll_ms : 1000) / 1000;
    while (true) {
        if (qn === 0) {
            const [ok] = ws.wait(poll);
            if (sess.dead) return "closing";
            if (!ok && should_stop() && in_flight === 0) return "exiting";
            if (qn === 0) continue;
        }
        // swap buffers; everything queued so far goes out in ONE send
        const batch = queue;
        const n = qn;
        const pubs = qpubs;
        const evs = qevents;
        queue = spare;
        qn = 0;
        qpubs = 0;
        qevents = 0;
        const [sent, err] = sock.send(batch);
        // clear only the slots we used: the table keeps its allocated size
        for (let i = 0; i < n; i++) batch[i] = undefined as unknown as string | number;
        spare = batch;
        if (sent === undefined) {
            counters.publish_failures += pubs + evs;
            return "send: " + err;
        }
        counters.sent += pubs;
    }
}

function pick_server(): Server {
    const n = pool.length;
    for (let tries = 0; tries < n; tries++) {
        const srv = pool[next_server % n];
        next_server = (next_server + 1) % n;
        if (!srv.ldm || n === 1) return srv;
        srv.ldm = false; // skipped once; eligible again next round
    }
    const srv = pool[next_server % n];
    next_server = (next_server + 1) % n;
    return srv;
}

/** Sleeps `seconds` in short slices so shutdown is noticed promptly. */
function sleep_interruptible(seconds: number): void {
    let left = seconds;
    while (left > 0 && !should_stop()) {
        const s = left > 0.2 ? 0.2 : left;
        ngx.sleep(s);
        left -= s;
    }
}

/** One connection's life: handshake, run reader and writer until one ends, tear down. */
function session(srv: Server): boolean {
    const [sess, herr] = handshake(srv);
    if (sess === undefined) {
        // TLS failures (wrong CA, name mismatch, client certificate refused) are configuration
        // errors that no retry fixes: logged as errors
        log(sfind(herr as string, "tls", 1, true)[0] !== undefined ? ngx.ERR : ngx.WARN, "connect to ", srv.key, " failed: ", herr);
        return false;
    }
    connected = true;
    current_server = srv.key;
    if (ever_connected) counters.reconnects++;
    ever_connected = true;
    log(ngx.NOTICE, "connected to ", srv.key, " (max_payload ", max_payload, ")");
    set_holding(false); // wakes the requests held while connecting
    // every live subscription again, before anything else this session writes
    resubscribe();
    if (qn > 0) wake_writer();

    const rt = ngx.thread.spawn(reader, sess);
    const wt = ngx.thread.spawn(writer, sess);
    const [ok, res] = ngx.thread.wait(rt, wt);
    sess.dead = true;
    // Requests must not queue frames for a dead socket, and in-flight ones fail now, not at
    // their timeout.
    connected = false;
    current_server = undefined;
    // New requests wait for the reconnect (bounded, see `holding`); in-flight ones cannot be
    // answered any more.
    holding = !should_stop();
    fail_all();
    // killing a thread blocked in receive/send closes the socket: fine, we are tearing down
    ngx.thread.kill(rt);
    ngx.thread.kill(wt);
    sess.sock.close();
    if (!should_stop()) log(ngx.WARN, "disconnected from ", srv.key, ": ", ok ? res : "thread error: " + tostr(res));
    return true;
}

function run(premature: boolean): void {
    if (premature) {
        set_holding(false);
        return;
    }
    let failures = 0;
    /** failed attempts since the last working connection (or the start) */
    let pass_failures = 0;
    const base = (cfg.reconnect_wait_ms !== undefined ? cfg.reconnect_wait_ms : 100) / 1000;
    const cap = (cfg.reconnect_wait_max_ms !== undefined ? cfg.reconnect_wait_max_ms : 2000) / 1000;
    while (!should_stop()) {
        const srv = pick_server();
        ngx.update_time();
        const t_session = ngx.now();
        const [ok, res] = pcall(session, srv);
        if (!ok) {
            // a bug in here must not end the connection manager for the worker's lifetime
            log(ngx.ERR, "connection manager error: ", res);
            connected = false;
            current_server = undefined;
            set_holding(false);
            fail_all();
        }
        if (should_stop()) break;
        let delay: number;
        if (ok && res === true) {
            // We had a working connection. With several servers, go to the next one at once
            // (as the official clients do) unless the session was short-lived (a flapping
            // server must not make us spin); the same server again after a small jitter that
            // spreads the workers.
            failures = 0;
            pass_failures = 0;
            ngx.update_time();
            delay = pool.length > 1 && ngx.now() - t_session >= 1 ? 0 : rand() * base;
        } else {
            failures++;
            pass_failures++;
            // every server failed once: NATS is down, stop holding requests (they fail fast)
            if (holding && pass_failures >= pool.length) set_holding(false);
            // exponential backoff per failed attempt, full pool tried before it grows much
            let d = base * 2 ** (failures > 16 ? 16 : failures - 1);
            if (d > cap) d = cap;
            delay = d * (0.5 + 0.5 * rand());
        }
        if (delay > 0) sleep_interruptible(delay);
    }
    connected = false;
    current_server = undefined;
    set_holding(false);
    fail_all();
}

/**
 * Starts the connection manager for this worker; call from init_worker_by_lua.
 * Returns true, or (nil, err) for bad options. Calling it again is a no-op.
 */
export function start(opts?: ConnectionOptions): LuaMultiReturn<[true, undefined] | [undefined, string]> {
    if (started) return $multi(true, undefined);
    cfg = opts !== undefined ? opts : {};
    const [servers, perr] = build_pool(cfg.servers);
    if (servers === undefined) return $multi(undefined, perr as string);
    if (cfg.nkey_seed !== undefined && cfg.nkey_seed !== "") {
        const [kp, kerr] = nkey_from_seed(cfg.nkey_seed);
        if (kp === undefined) return $multi(undefined, "nkey_seed: " + kerr);
    }
    pool = servers;
    sem_new = (require("ngx.semaphore") as SemaphoreModule).new;
    const [ws, serr] = sem_new(0);
    if (ws === undefined) return $multi(undefined, "semaphore: " + serr);
    wsema = ws;
    const [cs, cserr] = sem_new(0);
    if (cs === undefined) return $multi(undefined, "semaphore: " + cserr);
    csema = cs;
    const seed_bytes = random_bytes(16);
    // seed the jitter PRNG (1 .. 2^31-2) from the random bytes and the pid
    rng_state =
        ((sbyte(seed_bytes, 1) * 16777216 +
            sbyte(seed_bytes, 2) * 65536 +
            sbyte(seed_bytes, 3) * 256 +
            sbyte(seed_bytes, 4) +
            ngx.worker.pid()) %
            2147483646) +
        1;
    inbox_prefix = cfg.inbox_prefix !== undefined ? cfg.inbox_prefix : "_INBOX." + hex(ssub(seed_bytes, 5, 16)) + ".";
    inbox_subject = inbox_prefix + "*";
    if (cfg.request_timeout_ms !== undefined && cfg.request_timeout_ms > 0) default_timeout_s = cfg.request_timeout_ms / 1000;
    // spread workers over the pool
    next_server = floor(rand() * pool.length);
    stopping = false;
    holding = true; // requests wait for the first connect (bounded)
    const [ok, terr] = ngx.timer.at(0, run);
    if (ok === undefined) {
        holding = false;
        return $multi(undefined, "timer: " + terr);
    }
    started = true;
    return $multi(true, undefined);
}

/** Ends the loops at their next poll tick (tests; shutdown uses ngx.worker.exiting()). */
export function stop(): void {
    stopping = true;
    set_holding(false);
    if (wsema !== undefined && wsema.count() < 0) wsema.post(1);
}

// ---------------------------------------------------------------------------------------------
// nkeys: seed decoding and Ed25519 signatures (LuaJIT ffi → OpenSSL libcrypto)
// ---------------------------------------------------------------------------------------------

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B32_REV: { [ch: number]: number } = {};
for (let i = 0; i < 32; i++) B32_REV[sbyte(B32, i + 1)] = i;

/** RFC 4648 base32 without padding; returns nil on a character outside the alphabet. */
export function base32_decode(s: string): string | undefined {
    const out: string[] = [];
    let acc = 0;
    let bits = 0;
    for (let i = 1; i <= s.length; i++) {
        const v = B32_REV[sbyte(s, i)];
        if (v === undefined) return undefined;
        acc = bor(lshift(band(acc, 0xffffff), 5), v);
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out[out.length] = schar(band(rshift(acc, bits), 0xff));
        }
    }
    return concat(out);
}

export function base32_encode(s: string): string {
    const out: string[] = [];
    let acc = 0;
    let bits = 0;
    for (let i = 1; i <= s.length; i++) {
        acc = bor(lshift(band(acc, 0xffffff), 8), sbyte(s, i));
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            const v = band(rshift(acc, bits), 31);
            out[out.length] = ssub(B32, v + 1, v + 1);
        }
    }
    if (bits > 0) {
        const v = band(lshift(acc, 5 - bits), 31);
        out[out.length] = ssub(B32, v + 1, v + 1);
    }
    return concat(out);
}

/** CRC-16/XMODEM (poly 0x1021, init 0), as nkeys uses. */
export function crc16(s: string): number {
    let crc = 0;
    for (let i = 1; i <= s.length; i++) {
        crc = bxor(crc, lshift(sbyte(s, i), 8));
        for (let j = 0; j < 8; j++) {
            if (band(crc, 0x8000) !== 0) crc = bxor(lshift(crc, 1), 0x1021);
            else crc = lshift(crc, 1);
            crc = band(crc, 0xffff);
        }
    }
    return crc;
}

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** base64url without padding (what NATS wants for the nonce signature). */
export function base64url(s: string): string {
    const out: string[] = [];
    const n = s.length;
    let i = 1;
    while (i <= n) {
        const b1 = sbyte(s, i);
        const b2 = i + 1 <= n ? sbyte(s, i + 1) : 0;
        const b3 = i + 2 <= n ? sbyte(s, i + 2) : 0;
        const v = bor(lshift(b1, 16), lshift(b2, 8), b3);
        const c1 = band(rshift(v, 18), 63);
        const c2 = band(rshift(v, 12), 63);
        const c3 = band(rshift(v, 6), 63);
        const c4 = band(v, 63);
        out[out.length] = ssub(B64URL, c1 + 1, c1 + 1) + ssub(B64URL, c2 + 1, c2 + 1);
        if (i + 1 <= n) out[out.length] = ssub(B64URL, c3 + 1, c3 + 1);
        if (i + 2 <= n) out[out.length] = ssub(B64URL, c4 + 1, c4 + 1);
        i += 3;
    }
    return concat(out);
}

const PREFIX_SEED = 18 << 3; // 'S'

export interface NkeyPair {
    /** The 32-byte Ed25519 seed */
    seed: string;
    /** The public key in nkey form (`U…` for users) */
    public_key: string;
    /** The nkey type prefix byte (160 = user) */
    prefix: number;
}

// Minimal LuaJIT ffi typings, local to this module (the only ffi user).
interface FfiCdata {
    [index: number]: number;
}
interface CryptoLib {
    EVP_PKEY_new_raw_private_key(this: void, type: number, e: undefined, key: string, keylen: number): FfiCdata | undefined;
    EVP_PKEY_get_raw_public_key(this: void, pkey: FfiCdata, pub: FfiCdata, len: FfiCdata): number;
    EVP_PKEY_free(this: void, pkey: FfiCdata): void;
    EVP_MD_CTX_new(this: void): FfiCdata | undefined;
    EVP_MD_CTX_free(this: void, ctx: FfiCdata): void;
    EVP_DigestSignInit(this: void, ctx: FfiCdata, pctx: undefined, md: undefined, e: undefined, pkey: FfiCdata): number;
    EVP_DigestSign(this: void, ctx: FfiCdata, sig: FfiCdata, siglen: FfiCdata, tbs: string, tbslen: number): number;
}
interface Ffi {
    cdef(this: void, decl: string): void;
    load(this: void, name: string): CryptoLib;
    C: CryptoLib;
    new: (this: void, ct: string, ...init: unknown[]) => FfiCdata;
    string(this: void, p: FfiCdata, len?: number): string;
}

const NID_ED25519 = 1087;
let crypto: CryptoLib | undefined;
let crypto_err: string | undefined;

const CDEFS = [
    "void *EVP_PKEY_new_raw_private_key(int type, void *e, const unsigned char *key, size_t keylen);",
    "int EVP_PKEY_get_raw_public_key(const void *pkey, unsigned char *pub, size_t *len);",
    "void EVP_PKEY_free(void *pkey);",
    "void *EVP_MD_CTX_new(void);",
    "void EVP_MD_CTX_free(void *ctx);",
    "int EVP_DigestSignInit(void *ctx, void **pctx, const void *type, void *e, void *pkey);",
    "int EVP_DigestSign(void *ctx, unsigned char *sigret, size_t *siglen, const unsigned char *tbs, size_t tbslen);",
];

function has_symbols(lib: CryptoLib): boolean {
    const [ok] = pcall(() => lib.EVP_DigestSign !== undefined && lib.EVP_PKEY_new_raw_private_key !== undefined);
    return ok;
}

/** libcrypto through ffi: nginx already links it (ffi.C); plain LuaJIT loads it. */
function load_crypto(): LuaMultiReturn<[CryptoLib, undefined] | [undefined, string]> {
    if (crypto !== undefined) return $multi(crypto, undefined);
    if (crypto_err !== undefined) return $multi(undefined, crypto_err);
    // The shared loader (beamline.crypto): ffi.C inside nginx, else libcrypto by name.
    const [lib, err] = libcrypto.load_libcrypto<CryptoLib>(CDEFS, has_symbols, "libcrypto with Ed25519 support not found");
    if (lib === undefined) {
        crypto_err = err;
        return $multi(undefined, crypto_err as string);
    }
    crypto = lib;
    return $multi(crypto, undefined);
}

function ed25519(seed: string, msg: string | undefined): LuaMultiReturn<[string, string] | [undefined, string]> {
    const [lib, lerr] = load_crypto();
    if (lib === undefined) return $multi(undefined, lerr as string);
    const ffi = require("ffi") as Ffi;
    const pkey = lib.EVP_PKEY_new_raw_private_key(NID_ED25519, undefined, seed, 32);
    if (pkey === undefined) return $multi(undefined, "EVP_PKEY_new_raw_private_key failed");
    const pub = ffi.new("unsigned char[32]");
    const plen = ffi.new("size_t[1]", 32);
    if (lib.EVP_PKEY_get_raw_public_key(pkey, pub, plen) !== 1) {
        lib.EVP_PKEY_free(pkey);
        return $multi(undefined, "EVP_PKEY_get_raw_public_key failed");
    }
    const pubs = ffi.string(pub, 32);
    if (msg === undefined) {
        lib.EVP_PKEY_free(pkey);
        return $multi(pubs, "");
    }
    const ctx = lib.EVP_MD_CTX_new();
    if (ctx === undefined) {
        lib.EVP_PKEY_free(pkey);
        return $multi(undefined, "EVP_MD_CTX_new failed");
    }
    const sig = ffi.new("unsigned char[64]");
    const slen = ffi.new("size_t[1]", 64);
    let ok = lib.EVP_DigestSignInit(ctx, undefined, undefined, undefined, pkey) === 1;
    if (ok) ok = lib.EVP_DigestSign(ctx, sig, slen, msg, msg.length) === 1;
    const sigs = ok ? ffi.string(sig, 64) : "";
    lib.EVP_MD_CTX_free(ctx);
    lib.EVP_PKEY_free(pkey);
    if (!ok) return $multi(undefined, "EVP_DigestSign failed");
    return $multi(pubs, sigs);
}

function encode_nkey(prefix: number, raw: string): string {
    const body = schar(prefix) + raw;
    const crc = crc16(body);
    return base32_encode(body + schar(band(crc, 0xff), rshift(crc, 8)));
}

/** Decodes an nkey seed (`S…`): checks its CRC and derives the public key. */
export function nkey_from_seed(seed: string): LuaMultiReturn<[NkeyPair, undefined] | [undefined, string]> {
    const raw = base32_decode(seed);
    if (raw === undefined) return $multi(undefined, "invalid base32 in seed");
    if (raw.length !== 36) return $multi(undefined, "invalid seed length");
    const body = ssub(raw, 1, 34);
    const want = sbyte(raw, 35) + sbyte(raw, 36) * 256; // little-endian
    if (crc16(body) !== want) return $multi(undefined, "seed checksum mismatch");
    const b1 = sbyte(raw, 1);
    const b2 = sbyte(raw, 2);
    if (band(b1, 0xf8) !== PREFIX_SEED) return $multi(undefined, "not a seed");
    const prefix = bor(lshift(band(b1, 7), 5), rshift(band(b2, 0xf8), 3));
    const key = ssub(raw, 3, 34);
    const [pubraw, err] = ed25519(key, undefined);
    if (pubraw === undefined) return $multi(undefined, err as string);
    return $multi({ seed: key, public_key: encode_nkey(prefix, pubraw), prefix: prefix }, undefined);
}

/** Signs `nonce` with the seed: returns (base64url signature, public key) or (nil, err). */
export function nkey_sign(seed: string, nonce: string): LuaMultiReturn<[string, string] | [undefined, string]> {
    const [kp, err] = nkey_from_seed(seed);
    if (kp === undefined) return $multi(undefined, err as string);
    const [pubraw, sig] = ed25519(kp.seed, nonce);
    if (pubraw === undefined) return $multi(undefined, sig as string);
    if (sig === "") return $multi(undefined, "signing failed");
    return $multi(base64url(sig), kp.public_key);
}
