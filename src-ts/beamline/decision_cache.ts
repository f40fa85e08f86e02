/**
 * beamline.decision_cache — the last successful decision per tenant and id, in the shared dict
 * `beamline_decisions` (all workers see it) for `decision_cache.ttl_seconds` (CONTRACT §1, §10).
 * Stored under the request_id and, when given, the message_id; exactly the 200 body's bytes.
 * Keys are prefixed by the tenant, so another tenant never sees an entry.
 */
import * as config from "./config";
import * as log_line from "./log_line";

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
        log_line.write(ngx.WARN, "beamline: cannot cache decision: ", err);
    }
    if (message_id !== undefined && message_id !== request_id) {
        dict.set(key(tenant, message_id), body, ttl);
    }
}

export function get(tenant: string, id: string): string | undefined {
    const dict = ngx.shared[DICT];
    if (dict === undefined) {
        return undefined;
    }
    const [v] = dict.get(key(tenant, id));
    return typeof v === "string" ? v : undefined;
}
