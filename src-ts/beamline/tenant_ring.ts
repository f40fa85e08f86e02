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

/** When this worker last flushed each dict (ngx.now() seconds). */
const last_flush = new LuaTable<NgxSharedDict, number>();

/**
 * Frees expired entries when the dict is full, then says whether to try again. At most once per
 * second per worker and dict (issue 15): `flush_expired` walks the dict's whole LRU queue under
 * its lock whenever fewer than 1000 entries have expired, so on a full dict of live entries
 * (many tenants, long TTLs) calling it on every request made each store O(entries) and
 * collapsed throughput (bench --curves, 100 to 10,000 tenants: 200-400 decide/s at 2-4.5 ms of
 * worker CPU per decide, against ~6,000 decide/s at ~0.1 ms with one tenant). In
 * between, a store on the full dict simply fails as before (the caller counts no_memory).
 */
export function reclaim(d: NgxSharedDict): boolean {
    const now = ngx.now();
    const last = last_flush.get(d);
    if (last !== undefined && now - last < 1) return false;
    last_flush.set(d, now);
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
    const ck = "|S|" + tenant;
    let [seq, err] = d.incr(ck, 1);
    if (seq === undefined) {
        if (err !== "not found") return $multi(false, err);
        // No TTL: one small counter per tenant that ever stored a record (bounded by the dict).
        const [ok, aerr] = d.safe_add(ck, 0);
        if (!ok && aerr !== "exists") return $multi(false, aerr);
        [seq, err] = d.incr(ck, 1);
        if (seq === undefined) return $multi(false, err);
    }
    const slot = "|R|" + tenant + "|" + tostr((seq as number) % max);
    const [old] = d.get(slot);
    let evicted = false;
    if (typeof old === "string" && old !== key) {
        const [live] = d.get(old);
        if (live !== undefined) {
            d.delete(old);
            evicted = true;
        }
    }
    const [ok, serr] = d.safe_set(slot, key, ttl);
    return $multi(evicted, ok ? undefined : serr);
}
