/**
 * beamline.tenant_ring — a per-tenant bound on the records of a shared dict (issue 17): the
 * Idempotency-Key records (`idempotency.max_keys_per_tenant`) and the stored decisions
 * (`decision_cache.max_per_tenant`).
 *
 * Each tenant has a claim counter `|S|<tenant>` and a ring of `max` slots `|R|<tenant>|<n>`,
 * both in the same dict as the records (tenant ids cannot contain "|", so these keys never meet a
 * record key). The n-th record of a tenant takes slot n % max; the record that slot named (the
 * tenant's record `max` claims ago) is deleted first. So a tenant never holds more than `max`
 * records, and past it its own oldest go first.
 *
 * The other half of the rule — a tenant within its share is never evicted by another — holds
 * because the callers write records only with `safe_add`/`safe_set` (never the LRU eviction of
 * `add`/`set`), and this module only allocates with `safe_add`/`safe_set` too (an `incr` of an
 * existing number allocates nothing). A full dict refuses new records instead of dropping old
 * ones; the caller decides what that means (docs/SECURITY.md).
 */
const tostr = tostring;

/** At most one `flush_expired` per dict and worker in this many seconds. */
const RECLAIM_INTERVAL_SECONDS = 1;

/** The tenant's claim counter. */
function claim_key(tenant: string): string {
    return "|S|" + tenant;
}

/** The ring slot of the tenant's claim `seq`. */
function slot_key(tenant: string, seq: number, max: number): string {
    return "|R|" + tenant + "|" + tostr(seq % max);
}

/** When this worker last flushed each dict (ngx.now()); worker-local, never shared. */
const last_reclaim = new LuaTable<NgxSharedDict, number>();

/**
 * Frees expired entries when the dict is full, then says whether to try again. At most once per
 * second per dict and worker: `flush_expired` walks the dict's whole LRU queue under its lock
 * when little has expired, and a full dict (many tenants, each within its share) would otherwise
 * pay that walk on every write (10,000 tenants: 164 req/s, 6 ms of worker CPU per decide).
 * Between flushes a write to the full dict is refused as before (the caller's "no memory").
 */
export function reclaim(d: NgxSharedDict): boolean {
    const now = ngx.now();
    const last = last_reclaim.get(d);
    if (last !== undefined && now - last < RECLAIM_INTERVAL_SECONDS && now >= last) return false;
    last_reclaim.set(d, now);
    return d.flush_expired(1000) > 0;
}

/**
 * Records `key` (just stored, with `ttl` seconds) as the tenant's newest record; deletes the
 * tenant's record `max` claims ago when it is still there. Returns true when one was deleted,
 * and an error when the claim could not be tracked (the record stays; the dict bounds it).
 */
export function track(
    d: NgxSharedDict,
    tenant: string,
    key: string,
    max: number,
    ttl: number,
): LuaMultiReturn<[boolean, string | undefined]> {
    const ck = claim_key(tenant);
    let [seq, err] = d.incr(ck, 1);
    if (seq === undefined) {
        if (err !== "not found") return $multi(false, err);
        // No TTL: one small counter per tenant that ever stored a record (bounded by the dict).
        const [ok, aerr] = d.safe_add(ck, 0);
        if (!ok && aerr !== "exists") return $multi(false, aerr);
        [seq, err] = d.incr(ck, 1);
        if (seq === undefined) return $multi(false, err);
    }
    const slot = slot_key(tenant, seq as number, max);
    const [old] = d.get(slot);
    let evicted = false;
    if (typeof old === "string" && old !== key) {
        // `ttl`, not `get`: whether the record is live, without copying its value out (issue 15).
        const [left] = d.ttl(old);
        if (left !== undefined && left >= 0) {
            d.delete(old);
            evicted = true;
        }
    }
    const [ok, serr] = d.safe_set(slot, key, ttl);
    return $multi(evicted, ok ? undefined : serr);
}

/** Ring slots looked at per `evict_oldest` call at most: bounded work on a full dict. */
const EVICT_PROBES = 16;

/**
 * The dict is full (after `reclaim`): deletes the tenant's own oldest live record, never another
 * tenant's, so that a new record of the same tenant can take its place. The ring names the
 * tenant's last `max` claims; a tail counter `|T|<tenant>` remembers how far earlier calls got,
 * so repeated calls do not rescan slots already emptied. Returns true when a record was deleted.
 * Used for stored decisions, where the newest is the one a client looks up next; not for
 * Idempotency-Key records (dropping one could let its retry run twice).
 */
export function evict_oldest(d: NgxSharedDict, tenant: string, max: number): boolean {
    const [seq] = d.get(claim_key(tenant));
    if (typeof seq !== "number") return false;
    const tk = "|T|" + tenant;
    const [t0] = d.get(tk);
    let t = seq - max + 1;
    if (typeof t0 === "number" && t0 > t) t = t0;
    if (t < 1) t = 1;
    let deleted = false;
    for (let i = 0; i < EVICT_PROBES && t <= seq && !deleted; i++) {
        const slot = slot_key(tenant, t, max);
        const [k] = d.get(slot);
        t += 1;
        if (typeof k === "string") {
            const [left] = d.ttl(k);
            if (left !== undefined && left >= 0) {
                d.delete(k);
                deleted = true;
            }
            d.delete(slot);
        }
    }
    // No TTL, like the claim counter: one small number per tenant that ever filled the dict.
    d.safe_set(tk, t);
    return deleted;
}
