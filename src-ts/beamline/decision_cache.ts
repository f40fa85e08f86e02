/**
 * beamline.decision_cache — the last successful decision per tenant and id, in the shared dict
 * `beamline_decisions` (all workers see it) for `decision_cache.ttl_seconds` (CONTRACT §1, §10).
 * Stored under the request_id and, when given, the message_id; exactly the 200 body's bytes.
 * Keys are prefixed by the tenant, so another tenant never sees an entry.
 *
 * With `state.backend: redis` (CONTRACT §13) decisions live in Redis, written by
 * idempotency.complete (in the same round trip as the Idempotency-Key outcome), before the answer
 * is sent, so a lookup on any instance finds them once the client has the answer. Each is a
 * plain key with the TTL: no per-tenant index, since a tenant's stored decisions are already
 * bounded by its rate limit (at most 2 × limit per window × ttl / window keys) and expire by
 * themselves.
 */
import * as config from "./config";
import * as state_redis from "./state_redis";

const DICT = "beamline_decisions";

function key(tenant: string, id: string): string {
    // Tenant ids cannot contain "|" ([A-Za-z0-9._:-]), so the prefix cannot be forged by an id.
    return tenant + "|" + id;
}

export function store(tenant: string, request_id: string, message_id: string | undefined, body: string): void {
    const dict = ngx.shared[DICT];
    if (dict === undefined) {
        return;
    }
    const ttl = config.get().decision_cache.ttl_seconds;
    // Evicting old entries under memory pressure is fine: this is a cache, not a store.
    const [ok, err] = dict.set(key(tenant, request_id), body, ttl);
    if (!ok) {
        ngx.log(ngx.WARN, "beamline: cannot cache decision: ", err);
    }
    if (message_id !== undefined && message_id !== request_id) {
        dict.set(key(tenant, message_id), body, ttl);
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
