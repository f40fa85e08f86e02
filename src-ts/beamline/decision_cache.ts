/**
 * beamline.decision_cache — the last successful decision per tenant and id, in the shared dict
 * `beamline_decisions` (all workers see it) for `decision_cache.ttl_seconds` (CONTRACT §1, §10).
 * Stored under the request_id and, when given, the message_id; exactly the 200 body's bytes.
 * Keys are prefixed by the tenant, so another tenant never sees an entry.
 *
 * Per-tenant bound, local backend (issue 17): entries are written with `safe_set` (nginx never
 * evicts another tenant's decision to make room) and each tenant keeps at most
 * `decision_cache.max_per_tenant` ids (beamline.tenant_ring: past it, its own oldest go first).
 * When the dict is full of live entries the tenant's own oldest decisions make room for its new
 * one (`dict_full`); a tenant with none left to give is not stored (`no_memory`). All counted in
 * gateway_decision_cache_evictions_total{reason}.
 *
 * With `state.backend: redis` (CONTRACT §13) decisions live in Redis, written by
 * idempotency.complete (in the same round trip as the Idempotency-Key outcome), before the answer
 * is sent, so a lookup on any instance finds them once the client has the answer. Each is a
 * plain key with the TTL: no per-tenant index (`max_per_tenant` applies to the local dict only),
 * since a tenant's stored decisions are already bounded by its rate limit (at most 2 × limit per
 * window × ttl / window keys) and expire by themselves.
 */
import * as config from "./config";
import * as state_redis from "./state_redis";
import * as metrics from "./metrics";
import * as tenant_ring from "./tenant_ring";
import * as log_line from "./log_line";

const DICT = "beamline_decisions";

function key(tenant: string, id: string): string {
    // Tenant ids cannot contain "|" ([A-Za-z0-9._:-]), so the prefix cannot be forged by an id.
    return tenant + "|" + id;
}

/** When this worker last logged a refused decision (ngx.now()): at most one line per second. */
let last_refused_log = -1;

/** Stores one id of a tenant's decision (not stored when the dict is full and the tenant has none to give up). */
function store_one(dict: NgxSharedDict, tenant: string, id: string, body: string, ttl: number, max: number): void {
    const k = key(tenant, id);
    let [ok, err] = dict.safe_set(k, body, ttl);
    if (!ok && err === "no memory" && tenant_ring.reclaim(dict)) [ok, err] = dict.safe_set(k, body, ttl);
    // Still full of live entries: the tenant's own oldest decisions make room (at most two, for a
    // body larger than the one freed), never another tenant's. The newest decision is the one a
    // client looks up next; refusing it would make every lookup of a busy gateway 404.
    for (let i = 0; i < 2 && !ok && err === "no memory" && tenant_ring.evict_oldest(dict, tenant, max); i++) {
        metrics.decision_eviction("dict_full");
        [ok, err] = dict.safe_set(k, body, ttl);
    }
    if (!ok) {
        if (err === "no memory") metrics.decision_eviction("no_memory");
        // A full dict refuses new decisions of tenants with none to give up until entries expire:
        // one line per second per worker says so (the metric counts each), not one per request.
        const now = ngx.now();
        if (err !== "no memory" || now - last_refused_log >= 1 || now < last_refused_log) {
            last_refused_log = now;
            log_line.write(ngx.WARN, "beamline: cannot cache decision: ", err);
        }
        return;
    }
    const [evicted] = tenant_ring.track(dict, tenant, k, max, ttl);
    if (evicted) metrics.decision_eviction("tenant_quota");
}

export function store(tenant: string, request_id: string, message_id: string | undefined, body: string): void {
    const dict = ngx.shared[DICT];
    if (dict === undefined) {
        return;
    }
    const cfg = config.get().decision_cache;
    store_one(dict, tenant, request_id, body, cfg.ttl_seconds, cfg.max_per_tenant);
    if (message_id !== undefined && message_id !== request_id) {
        store_one(dict, tenant, message_id, body, cfg.ttl_seconds, cfg.max_per_tenant);
    }
}

/** The Redis key of a decision. */
export function redis_key(tenant: string, id: string): string {
    return state_redis.prefix() + "dc:" + key(tenant, id);
}

/** The stored 200 body, or nil; with Redis, nil and "unavailable" when Redis failed. */
export function get(tenant: string, id: string): LuaMultiReturn<[string | undefined, string | undefined]> {
    if (config.get().state.backend === "redis") {
        const [res] = state_redis.run("decision_lookup", state_redis.GET, redis_key(tenant, id));
        if (res === undefined) return $multi(undefined, "unavailable");
        return $multi(typeof res === "string" ? res : undefined, undefined);
    }
    const dict = ngx.shared[DICT];
    if (dict === undefined) {
        return $multi(undefined, undefined);
    }
    const [v] = dict.get(key(tenant, id));
    return $multi(typeof v === "string" ? v : undefined, undefined);
}
