/**
 * beamline.state_redis — the Redis backend of the gateway's shared state (CONTRACT §13): rate-limit
 * counts, Idempotency-Key records and stored decisions, so every instance on one Redis behaves
 * as one gateway. The local backend is the shared dicts in rate_limit, idempotency and
 * decision_cache; those modules pick the backend with `state.backend` and call the functions
 * here with the same arguments they give their shared dict.
 *
 * Cost per request (the thing to watch): one round trip per operation. Plain commands where
 * order alone is enough (pipelined: one send, one trip; cheapest for Redis' CPU), a script run
 * with EVALSHA (EVAL once after NOSCRIPT) where a step depends on what another found:
 *   - RATE: pipeline INCR + EXPIRE of the window's counter (the expiry moves with each hit, but
 *     the key is only hit during its window, so it is gone at most one window after it);
 *   - STORE: pipeline SET PX of the decision under request_id (and message_id);
 *   - GET: a stored decision;
 *   - CLAIM (script): SET NX PX of the in-flight marker, else GET of the entry; on success it
 *     also bounds the tenant's records (a per-tenant sorted set, oldest evicted first);
 *   - FINISH (script): the decision store and the Idempotency-Key outcome (stored response, or
 *     release after a 5xx) together, the latter only while the marker is still ours.
 * A decide without Idempotency-Key thus costs two round trips (RATE, STORE), with one three
 * (RATE, CLAIM, FINISH).
 *
 * Connections come from the cosocket keepalive pool, named by host, port, database and a hash of
 * the password (two configs never share a connection). Every call has `timeout_ms`. A reused
 * connection that fails (Redis restarted meanwhile) is retried once on a fresh one; any other
 * connection failure marks Redis down for this worker for `retry_after_ms`, so an outage costs
 * one timeout per worker and interval instead of one per request; after it the next request
 * tries again (recovery without restart). Each failure counts in
 * `gateway_state_backend_errors_total{op}`; the log gets at most one line per second per worker.
 *
 * The client is lua-resty-redis: `resty.redis` on OpenResty, Debian's `lua-nginx-redis` (the
 * same code, 0.27) installs it as `nginx.redis`.
 */
import type { RedisConfig } from "./config";
import * as config from "./config";
import * as metrics from "./metrics";
import * as dns from "./dns";
import * as log_line from "./log_line";

type Reply = string | number | NgxNull | false | undefined;

interface RedisClient {
    connect(
        this: RedisClient,
        host: string,
        port: number,
        opts: { pool: string; pool_size: number },
    ): LuaMultiReturn<[number, undefined] | [undefined, string]>;
    set_timeout(this: RedisClient, ms: number): void;
    get_reused_times(this: RedisClient): LuaMultiReturn<[number, undefined] | [undefined, string]>;
    auth(this: RedisClient, password: string): LuaMultiReturn<[unknown, string | undefined]>;
    select(this: RedisClient, db: number): LuaMultiReturn<[unknown, string | undefined]>;
    eval(this: RedisClient, script: string, numkeys: number, ...args: (string | number)[]): LuaMultiReturn<[Reply, string | undefined]>;
    evalsha(this: RedisClient, sha: string, numkeys: number, ...args: (string | number)[]): LuaMultiReturn<[Reply, string | undefined]>;
    init_pipeline(this: RedisClient, n?: number): void;
    /** The replies in order (an error reply as `{false, message}`), or nil and a network error. */
    commit_pipeline(this: RedisClient): LuaMultiReturn<[(Reply | [false, string])[], undefined] | [undefined, string]>;
    incr(this: RedisClient, key: string): void;
    expire(this: RedisClient, key: string, seconds: number): void;
    set(this: RedisClient, key: string, value: string, px: "PX", ms: number): void;
    get(this: RedisClient, key: string): LuaMultiReturn<[Reply, string | undefined]>;
    set_keepalive(this: RedisClient, idle_ms: number, pool_size: number): LuaMultiReturn<[number, undefined] | [undefined, string]>;
    close(this: RedisClient): LuaMultiReturn<[number, undefined] | [undefined, string]>;
}

interface RedisModule {
    /** Quoted: a bare `new()` would declare a construct signature. */
    "new"(this: RedisModule): LuaMultiReturn<[RedisClient, undefined] | [undefined, string]>;
}

/**
 * KEYS[1] entry, KEYS[2] the tenant's index (sorted set: entry key by claim time);
 * ARGV: marker, marker ttl ms, now ms, max records, record ttl ms.
 * Claimed: 1. Else the entry (in flight or done). Index members older than a record's lifetime
 * are dropped first; past the bound the tenant's own oldest entries are deleted.
 */
export const CLAIM_SCRIPT =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then " +
    "local z = KEYS[2] local now = tonumber(ARGV[3]) " +
    "redis.call('ZREMRANGEBYSCORE', z, '-inf', now - tonumber(ARGV[5])) " +
    "redis.call('ZADD', z, now, KEYS[1]) " +
    "local over = redis.call('ZCARD', z) - tonumber(ARGV[4]) " +
    "if over > 0 then " +
    "local old = redis.call('ZRANGE', z, 0, over - 1) " +
    "for i = 1, #old do if old[i] ~= KEYS[1] then redis.call('DEL', old[i]) end end " +
    "redis.call('ZREMRANGEBYRANK', z, 0, over - 1) end " +
    "redis.call('PEXPIRE', z, ARGV[5]) return 1 end " +
    "return redis.call('GET', KEYS[1])";

/**
 * KEYS: decision key 1, decision key 2, the Idempotency-Key entry, its tenant index ("" = none);
 * ARGV: decision body, decision ttl ms, our marker, the entry to store ("" = release), record
 * ttl ms. Stores the decision under each key; stores or releases the entry only while it still
 * holds our marker (after a Redis restart or an eviction it is not ours any more). Returns 1
 * when the entry was ours, else 0. Always four keys, so callers need no argument table.
 */
export const FINISH_SCRIPT =
    "for i = 1, 2 do if KEYS[i] ~= '' then redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end end " +
    "local k = KEYS[3] " +
    "if k ~= '' and redis.call('GET', k) == ARGV[3] then " +
    "if ARGV[4] == '' then redis.call('DEL', k) redis.call('ZREM', KEYS[4], k) " +
    "else redis.call('SET', k, ARGV[4], 'PX', ARGV[5]) end return 1 end return 0";

const SCRIPTS = [CLAIM_SCRIPT, FINISH_SCRIPT];
/** Operations of `run`: the two scripts (indexes into SCRIPTS), then the plain ones. */
export const CLAIM = 0;
export const FINISH = 1;
/** args: key, window seconds. Reply: the count. */
export const RATE = 2;
/** args: key 1, key 2 ("" = none), body, ttl ms. Reply: 1. */
export const STORE = 3;
/** args: key. Reply: the value, or ngx.null. */
export const GET = 4;

export type Op = "rate_limit" | "idempotency" | "decision_store" | "decision_lookup";

const ltype = type;
const sformat = string.format;
const sbyte = string.byte;
const sfind = string.find;
const ssub = string.sub;
const concat = table.concat;

let mod: RedisModule | undefined;
let mod_err: string | undefined;
let down_until = 0;
let last_log = 0;
let suppressed = 0;
const shas: string[] = [];
/** The config table the pool name was made for (the config is loaded once per master). */
let pool_for: RedisConfig | undefined;
/** connect()'s options, built once per worker (no table per call). */
let pool_opts = { pool: "", pool_size: 1 };

function hex(bin: string): string {
    const out: string[] = [];
    for (let i = 1; i <= bin.length; i++) out.push(sformat("%02x", sbyte(bin, i)));
    return concat(out);
}

/** SHA1 of each script, as EVALSHA wants it (once per worker). */
function script_sha(i: number): string {
    let s = shas[i];
    if (s === undefined) {
        s = hex(ngx.sha1_bin(SCRIPTS[i]));
        shas[i] = s;
    }
    return s;
}

/** The keepalive pool of one Redis endpoint and identity: host, port, db, password hash. */
export function pool_key(c: RedisConfig): string {
    const pw = c.password !== undefined ? ssub(hex(ngx.sha1_bin(c.password)), 1, 16) : "";
    return "beamline_redis:" + c.host + ":" + c.port + ":" + c.database + ":" + pw;
}

function load(): RedisModule | undefined {
    if (mod !== undefined || mod_err !== undefined) return mod;
    for (const name of ["resty.redis", "nginx.redis"]) {
        const [ok, m] = pcall(require, name);
        if (ok && ltype(m) === "table") {
            mod = m as RedisModule;
            return mod;
        }
    }
    mod_err = "no Redis client library (resty.redis or nginx.redis)";
    return undefined;
}

/**
 * Counts a failed operation and logs it, at most one line per second per worker (WARN: an
 * outage is an operational condition the metric shows, not a gateway bug).
 */
export function failed(op: Op, err: string): void {
    metrics.state_backend_error(op);
    const now = ngx.now();
    if (now - last_log >= 1) {
        const more = suppressed > 0 ? " (" + suppressed + " more failures since the last line)" : "";
        log_line.write(ngx.WARN, "beamline: Redis state backend: ", op, ": ", err, more);
        last_log = now;
        suppressed = 0;
    } else {
        suppressed++;
    }
}

/** True while this worker skips Redis after a connection failure. */
export function is_down(): boolean {
    if (down_until === 0) return false;
    if (ngx.now() < down_until) return true;
    down_until = 0;
    return false;
}

function mark_down(c: RedisConfig): void {
    if (c.retry_after_ms > 0) down_until = ngx.now() + c.retry_after_ms / 1000;
}

/** A connected, authenticated client from the pool, or nil and an error. */
function connect(c: RedisConfig): LuaMultiReturn<[RedisClient, number] | [undefined, string]> {
    const m = load();
    if (m === undefined) return $multi(undefined, mod_err as string);
    const [red, nerr] = m["new"]();
    if (red === undefined) return $multi(undefined, "redis: " + nerr);
    if (pool_for !== c) {
        pool_opts = { pool: pool_key(c), pool_size: c.pool_size };
        pool_for = c;
    }
    red.set_timeout(c.timeout_ms);
    const [ok, cerr] = red.connect(dns.peer_address(c.host), c.port, pool_opts);
    if (ok === undefined) return $multi(undefined, "connect: " + cerr);
    const [reused] = red.get_reused_times();
    if (reused === 0 || reused === undefined) {
        if (c.password !== undefined) {
            const [a, aerr] = red.auth(c.password);
            if (a === undefined || a === false) {
                red.close();
                return $multi(undefined, "auth: " + tostring(aerr));
            }
        }
        if (c.database !== 0) {
            const [s, serr] = red.select(c.database);
            if (s === undefined || s === false) {
                red.close();
                return $multi(undefined, "select: " + tostring(serr));
            }
        }
        return $multi(red, 0);
    }
    return $multi(red, reused);
}

/** The first error reply among pipeline replies, or nil. */
function pipeline_error(res: (Reply | [false, string])[]): string | undefined {
    for (const r of res) {
        if (ltype(r) === "table" && (r as [false, string])[0] === false) return (r as [false, string])[1];
    }
    return undefined;
}

/**
 * Sends operation `kind` on `red` and reads its reply: the reply, or nil and a network error,
 * or false and a Redis error reply (the connection is then still usable).
 */
function send(
    red: RedisClient,
    kind: number,
    a1: string | number,
    a2?: string | number,
    a3?: string | number,
    a4?: string | number,
    ...rest: (string | number)[]
): LuaMultiReturn<[Reply, string | undefined]> {
    if (kind === RATE) {
        red.init_pipeline(2);
        red.incr(a1 as string);
        red.expire(a1 as string, a2 as number);
        const [res, err] = red.commit_pipeline();
        if (res === undefined) return $multi(undefined, err);
        const perr = pipeline_error(res);
        if (perr !== undefined) return $multi(false, perr);
        return $multi(res[0] as Reply, undefined);
    }
    if (kind === STORE) {
        red.init_pipeline(2);
        red.set(a1 as string, a3 as string, "PX", a4 as number);
        if (a2 !== "") red.set(a2 as string, a3 as string, "PX", a4 as number);
        const [res, err] = red.commit_pipeline();
        if (res === undefined) return $multi(undefined, err);
        const perr = pipeline_error(res);
        if (perr !== undefined) return $multi(false, perr);
        return $multi(1, undefined);
    }
    if (kind === GET) return red.get(a1 as string);
    // A script: a1 is numkeys, then the keys and arguments.
    const [res, err] = red.evalsha(script_sha(kind), a1 as number, a2 as string, a3 as string, a4 as string, ...rest);
    if (res === false && err !== undefined && sfind(err, "NOSCRIPT", 1, true)[0] === 1) {
        return red.eval(SCRIPTS[kind], a1 as number, a2 as string, a3 as string, a4 as string, ...rest);
    }
    return $multi(res, err);
}

/**
 * Runs operation `kind` (CLAIM, FINISH: the script's numkeys, keys and arguments; RATE, STORE,
 * GET: as documented there). Returns the reply, or nil and an error (the failure is already
 * counted under `op` and logged). A Redis error reply keeps the connection; a network error
 * closes it.
 */
export function run(op: Op, kind: number, ...args: [string | number, ...(string | number)[]]): LuaMultiReturn<[Reply, string | undefined]> {
    if (is_down()) {
        failed(op, "skipped: Redis marked down after a failure");
        return $multi(undefined, "down");
    }
    const c = config.get().state.redis;
    for (let attempt = 1; attempt <= 2; attempt++) {
        const [red, info] = connect(c);
        if (red === undefined) {
            mark_down(c);
            failed(op, info as string);
            return $multi(undefined, info as string);
        }
        const [res, err] = send(red, kind, ...args);
        if (res !== undefined) {
            red.set_keepalive(c.keepalive_ms, c.pool_size);
            if (res === false) {
                failed(op, "reply: " + tostring(err));
                return $multi(undefined, tostring(err));
            }
            return $multi(res, undefined);
        }
        red.close();
        // A pooled connection Redis closed meanwhile (restart, idle timeout): one fresh try.
        if (attempt === 1 && (info as number) > 0) continue;
        mark_down(c);
        failed(op, tostring(err));
        return $multi(undefined, tostring(err));
    }
    return $multi(undefined, "unreachable");
}

/** The configured key prefix (all keys of this gateway in Redis start with it). */
export function prefix(): string {
    return config.get().state.redis.key_prefix;
}

/** For tests: forget that Redis was marked down. */
export function reset(): void {
    down_until = 0;
}
