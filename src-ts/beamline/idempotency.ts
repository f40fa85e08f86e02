/**
 * beamline.idempotency — Idempotency-Key (CONTRACT §5, §10), in the shared dict
 * `beamline_idempotency` (`idempotency.size_mb`), so every worker sees the same entries.
 *
 * Per (tenant, route, key) one entry, always carrying the SHA-256 of the first request's raw body:
 *   "P" <sha256 hex>                      the first request is in flight (TTL: the route's Router
 *                                         timeout + 60 s, so a crashed request cannot pin it)
 *   "D" <sha256 hex> <status:3> <len(request_id):3> <len(trace_id):3> <request_id><trace_id><body>
 *                                         its final response (status < 500), for `ttl_seconds`
 * `begin` claims the key atomically with `add`; a repeat then finds the entry: a different body
 * hash → 409 (`mismatch`), in flight → 409 (`in_flight`), done → replay the stored status and body
 * with the original X-Request-Id / X-Trace-Id. The owner `complete`s with its final status: < 500
 * stores the response, a 5xx deletes the entry so the client may retry. If the request dies
 * without completing, the log phase (`release_unfinished`) deletes its in-flight entry.
 * The hash is part of each entry, so an entry that is gone can only be missing, never answer for
 * another body.
 *
 * Per-tenant bound, local backend (issue 17): entries are written with `safe_add`/`safe_set`
 * only, so nginx never evicts one tenant's entry to make room for another's; each tenant keeps at
 * most `max_keys_per_tenant` (beamline.tenant_ring: past it, its own oldest go first). A full dict
 * refuses a new key with `full` (the handler answers 503: running it unrecorded could run a retry
 * twice). Both are counted in gateway_idempotency_evictions_total{reason}.
 *
 * With `state.backend: redis` (CONTRACT §13) the same entries live in Redis (beamline.state_redis),
 * so every instance sees them: `begin` is one script (SET NX PX of the marker, else GET; the
 * tenant's records bounded by the same `max_keys_per_tenant`, its own oldest evicted first),
 * `complete` one script that also stores the decision. The Redis marker is "P" <sha256 hex>
 * <owner token>, so only the request that set it can store or release it. Redis down: `fail_open`
 * runs the request without idempotency, `fail_closed` answers 503 (`begin` returns "unavailable").
 */
import * as config from "./config";
import * as crypto from "./crypto";
import * as ids from "./ids";
import * as decision_cache from "./decision_cache";
import * as state_redis from "./state_redis";
import * as metrics from "./metrics";
import * as tenant_ring from "./tenant_ring";
import * as log_line from "./log_line";

const DICT = "beamline_idempotency";
const CTX_KEY = "beamline_idem_key";
const CTX_HASH = "beamline_idem_hash";
const CTX_MARKER = "beamline_idem_marker";
const CTX_INDEX = "beamline_idem_index";
const PENDING_VAR = "beamline_idem_pending";

/**
 * Claims of this worker not yet completed or released: while none is open, the log phase skips
 * reading `$beamline_idem_pending` (issue 15). A claim whose ngx.ctx an internal redirect lost is
 * never counted down; the log phase then just keeps reading the variable.
 */
let open_claims = 0;
/** Stands in for ngx.ctx while no claim is open (never written). */
const NO_CTX: { [key: string]: unknown } = {};

export function claims_open(): boolean {
    return open_claims > 0;
}

const ssub = string.sub;
const sformat = string.format;
const tonum = tonumber;
const ceil = math.ceil;
const floor = math.floor;

export type Begin = "run" | "replay" | "in_flight" | "mismatch" | "full" | "unavailable";

/** The dict key: tenant ids and route names cannot contain "|", and the client key comes last. */
export function entry_key(tenant: string, route: string, key: string): string {
    return tenant + "|" + route + "|" + key;
}

export function encode_done(hash: string, status: number, request_id: string, trace_id: string, body: string): string {
    return "D" + hash + sformat("%03d%03d%03d", status, request_id.length, trace_id.length) + request_id + trace_id + body;
}

/**
 * Decodes an entry: kind "P" (in flight) or "D" (done), the body hash, and for "D" the status,
 * request id, trace id and body. A malformed entry decodes as kind nil.
 */
export function decode(entry: string): LuaMultiReturn<[string | undefined, string, number, string, string, string]> {
    const kind = ssub(entry, 1, 1);
    const hash = ssub(entry, 2, 65);
    if (kind === "P" && entry.length === 65) return $multi("P", hash, 0, "", "", "");
    if (kind !== "D" || entry.length < 74) return $multi(undefined, "", 0, "", "", "");
    const status = tonum(ssub(entry, 66, 68));
    const rl = tonum(ssub(entry, 69, 71));
    const tl = tonum(ssub(entry, 72, 74));
    if (status === undefined || rl === undefined || tl === undefined || entry.length < 74 + rl + tl) {
        return $multi(undefined, "", 0, "", "", "");
    }
    const rid = ssub(entry, 75, 74 + rl);
    const tid = ssub(entry, 75 + rl, 74 + rl + tl);
    return $multi("D", hash, status, rid, tid, ssub(entry, 75 + rl + tl));
}

let dict: NgxSharedDict | undefined;

function get_dict(): NgxSharedDict | undefined {
    if (dict === undefined) dict = ngx.shared[DICT];
    return dict;
}

export function is_enabled(): boolean {
    return config.get().idempotency.enabled;
}

/** The Redis keys of an entry and of its tenant's index (the tenant as hash tag: one slot). */
function redis_keys(tenant: string, route: string, key: string): LuaMultiReturn<[string, string]> {
    const p = state_redis.prefix();
    return $multi(p + "idem:{" + tenant + "}|" + route + "|" + key, p + "idemidx:{" + tenant + "}");
}

function begin_redis(
    tenant: string,
    route: string,
    key: string,
    hash: string,
    timeout_ms: number,
): LuaMultiReturn<[Begin, number, string, string, string]> {
    const cfg = config.get();
    const idem = cfg.idempotency;
    const [k, index] = redis_keys(tenant, route, key);
    const marker = "P" + hash + ids.random_hex(8);
    const [res] = state_redis.run(
        "idempotency",
        state_redis.CLAIM,
        2,
        k,
        index,
        marker,
        timeout_ms + idem.in_flight_grace_seconds * 1000,
        floor(ngx.now() * 1000),
        idem.max_keys_per_tenant,
        idem.ttl_seconds * 1000,
    );
    if (res === 1) {
        const ctx = ngx.ctx;
        ctx[CTX_KEY] = k;
        ctx[CTX_HASH] = hash;
        ctx[CTX_MARKER] = marker;
        ctx[CTX_INDEX] = index;
        ngx.var[PENDING_VAR] = "1";
        open_claims += 1;
        return $multi("run", 0, "", "", "");
    }
    if (typeof res !== "string") {
        // Redis failed (counted and logged by state_redis).
        return $multi(cfg.state.redis.on_error === "fail_closed" ? "unavailable" : "run", 0, "", "", "");
    }
    if (ssub(res, 2, 65) !== hash) return $multi("mismatch", 0, "", "", "");
    if (ssub(res, 1, 1) === "P") return $multi("in_flight", 0, "", "", "");
    const [kind, , status, rid, tid, body] = decode(res);
    if (kind !== "D") {
        state_redis.failed("idempotency", "malformed entry");
        return $multi("in_flight", 0, "", "", "");
    }
    return $multi("replay", status, body, rid, tid);
}

/**
 * Claims or looks up the key for this request (raw body bytes in `raw`). Returns the outcome and,
 * for "replay", the stored status, body, request id and trace id.
 * "run" also covers "cannot store" (dict missing, no memory, no libcrypto): the request then runs
 * without idempotency, which is logged.
 */
export function begin(
    tenant: string,
    route: string,
    key: string,
    raw: string,
    timeout_ms: number,
): LuaMultiReturn<[Begin, number, string, string, string]> {
    const [hash, herr] = crypto.sha256_hex(raw);
    if (hash !== undefined && config.get().state.backend === "redis") {
        return begin_redis(tenant, route, key, hash, timeout_ms);
    }
    const d = get_dict();
    if (d === undefined || hash === undefined) {
        log_line.write(ngx.ERR, "beamline: idempotency unavailable: ", d === undefined ? "lua_shared_dict " + DICT + " is missing" : herr);
        return $multi("run", 0, "", "", "");
    }
    const k = entry_key(tenant, route, key);
    const cfg = config.get().idempotency;
    const lock_ttl = ceil(timeout_ms / 1000) + cfg.in_flight_grace_seconds;
    // Two rounds: an entry may expire between a failed add and the get.
    for (let round = 0; round < 2; round++) {
        let [ok, err] = d.safe_add(k, "P" + hash, lock_ttl);
        if (!ok && err === "no memory" && tenant_ring.reclaim(d)) [ok, err] = d.safe_add(k, "P" + hash, lock_ttl);
        if (ok) {
            const ctx = ngx.ctx;
            ctx[CTX_KEY] = k;
            ctx[CTX_HASH] = hash;
            ngx.var[PENDING_VAR] = "1";
            open_claims += 1;
            const [evicted] = tenant_ring.track(d, tenant, k, cfg.max_keys_per_tenant, cfg.ttl_seconds);
            if (evicted) metrics.idempotency_eviction("tenant_quota");
            return $multi("run", 0, "", "", "");
        }
        if (err === "no memory") {
            metrics.idempotency_eviction("no_memory");
            return $multi("full", 0, "", "", "");
        }
        if (err !== "exists") {
            log_line.write(ngx.ERR, "beamline: cannot store an idempotency entry: ", err);
            return $multi("run", 0, "", "", "");
        }
        const [v] = d.get(k);
        if (typeof v === "string") {
            const [kind, stored_hash, status, rid, tid, body] = decode(v);
            if (kind === undefined) {
                log_line.write(ngx.ERR, "beamline: malformed idempotency entry, dropping it");
                d.delete(k);
            } else if (stored_hash !== hash) {
                return $multi("mismatch", 0, "", "", "");
            } else if (kind === "P") {
                return $multi("in_flight", 0, "", "", "");
            } else {
                return $multi("replay", status, body, rid, tid);
            }
        }
    }
    return $multi("in_flight", 0, "", "", "");
}

/**
 * Redis: stores the decision (`dtenant` set) and this request's Idempotency-Key outcome in one
 * round trip. Returns false when that failed.
 */
function finish_redis(
    k: string | undefined,
    entry: string,
    dtenant: string | undefined,
    request_id: string,
    message_id: string | undefined,
    body: string,
): boolean {
    const ctx = ngx.ctx;
    let d1 = "";
    let d2 = "";
    if (dtenant !== undefined) {
        d1 = decision_cache.redis_key(dtenant, request_id);
        if (message_id !== undefined && message_id !== request_id) d2 = decision_cache.redis_key(dtenant, message_id);
    }
    const cfg = config.get();
    if (k === undefined) {
        const [stored] = state_redis.run("decision_store", state_redis.STORE, d1, d2, body, cfg.decision_cache.ttl_seconds * 1000);
        return stored !== undefined;
    }
    const [res] = state_redis.run(
        dtenant !== undefined ? "decision_store" : "idempotency",
        state_redis.FINISH,
        4,
        d1,
        d2,
        k,
        ctx[CTX_INDEX] as string,
        dtenant !== undefined ? body : "",
        cfg.decision_cache.ttl_seconds * 1000,
        ctx[CTX_MARKER] as string,
        entry,
        cfg.idempotency.ttl_seconds * 1000,
    );
    return res !== undefined;
}

/**
 * The final response of a request (before it is sent): stores the decision for lookup when
 * `dtenant` is given (a 200 of the Router, CONTRACT §10), and, when this request holds an
 * Idempotency-Key, its outcome: the response (status < 500) or the key's release (5xx).
 * Returns false only when the Redis backend failed with `on_error: fail_closed` and a decision
 * was to be stored (the caller answers 503: the decision could not be made findable).
 */
export function complete(
    status: number,
    body: string,
    request_id: string,
    trace_id: string,
    dtenant?: string,
    message_id?: string,
): boolean {
    // No open claim in this worker: this request holds none, and ngx.ctx is not looked at.
    const ctx = open_claims > 0 ? ngx.ctx : NO_CTX;
    const k = ctx[CTX_KEY] as string | undefined;
    if (k !== undefined) {
        ctx[CTX_KEY] = undefined;
        ngx.var[PENDING_VAR] = "";
        open_claims -= 1;
    }
    const st = config.get().state;
    if (st.backend === "redis") {
        if (k === undefined && dtenant === undefined) return true;
        const entry = k !== undefined && status < 500 ? encode_done(ctx[CTX_HASH] as string, status, request_id, trace_id, body) : "";
        if (finish_redis(k, entry, dtenant, request_id, message_id, body)) return true;
        return dtenant === undefined || st.redis.on_error !== "fail_closed";
    }
    if (dtenant !== undefined) decision_cache.store(dtenant, request_id, message_id, body);
    if (k === undefined) return true;
    const d = get_dict();
    if (d === undefined) return true;
    if (status >= 500) {
        d.delete(k);
        return true;
    }
    const ttl = config.get().idempotency.ttl_seconds;
    const entry = encode_done(ctx[CTX_HASH] as string, status, request_id, trace_id, body);
    let [ok, err] = d.safe_set(k, entry, ttl);
    if (!ok && err === "no memory" && tenant_ring.reclaim(d)) [ok, err] = d.safe_set(k, entry, ttl);
    if (!ok) {
        if (err === "no memory") metrics.idempotency_eviction("no_memory");
        // Could not store (too big for the dict): release, so a repeat runs instead of waiting.
        log_line.write(ngx.WARN, "beamline: cannot store the idempotent response: ", err);
        d.delete(k);
    }
    return true;
}

/** Timer (the log phase has no cosockets): releases a Redis entry that is still ours. */
function release_redis(premature: boolean, k: string, index: string, marker: string): void {
    if (premature) return;
    const cfg = config.get();
    state_redis.run("idempotency", state_redis.FINISH, 4, "", "", k, index, "", 0, marker, "", cfg.idempotency.ttl_seconds * 1000);
}

/** Log phase: a request that claimed a key but never completed (a Lua error) releases it. */
export function release_unfinished(): void {
    const ctx = ngx.ctx;
    const k = ctx[CTX_KEY] as string | undefined;
    if (k === undefined) return;
    ctx[CTX_KEY] = undefined;
    open_claims -= 1;
    if (config.get().state.backend === "redis") {
        const [ok, err] = ngx.timer.at(0, release_redis, k, ctx[CTX_INDEX] as string, ctx[CTX_MARKER] as string);
        if (!ok) log_line.write(ngx.WARN, "beamline: cannot release an Idempotency-Key in Redis (it expires): ", err);
        return;
    }
    const d = get_dict();
    if (d !== undefined) d.delete(k);
}
