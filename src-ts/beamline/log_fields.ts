/**
 * beamline.log_fields — what a request's log phase needs to know from its handler: the tenant,
 * and the Router call's duration and outcome.
 *
 * The metrics read the Router fields from `ngx.ctx`. The nginx variables the access log reads
 * (`$beamline_tenant_id`, `$beamline_router_time`, `$beamline_router_code`; traces and the
 * traffic switch's shadow lines read the tenant too) are written only when one of those readers
 * is configured: every variable write or read costs about 0.3 µs, and with the access log,
 * tracing and migration off a decide now writes none of them (issue 15).
 */
const sformat = string.format;

const CTX_ROUTER_TIME = "beamline_router_time";
const CTX_ROUTER_CODE = "beamline_router_code";

/** Whether anything reads the variables (set once per worker by phases.init). */
let vars_on = true;

export function configure(access_log: boolean, tracing: boolean, migration: boolean): void {
    vars_on = access_log || tracing || migration;
}

/** The request's tenant, for the access log (and traces, shadow lines). */
export function tenant(t: string): void {
    if (vars_on) ngx.var["beamline_tenant_id"] = t;
}

/** How long the Router call took, in seconds (§7 metrics, §8 access log). */
export function router_time(seconds: number): void {
    ngx.ctx[CTX_ROUTER_TIME] = seconds;
    if (vars_on) ngx.var["beamline_router_time"] = sformat("%.3f", seconds);
}

/** The Router call's outcome: ok, a Router error code, malformed, timeout, no_responders, … */
export function router_code(code: string): void {
    ngx.ctx[CTX_ROUTER_CODE] = code;
    if (vars_on) ngx.var["beamline_router_code"] = code;
}

/** Log phase: the Router call's duration (s) and outcome; nil when the request made none. */
export function router(ctx: { [key: string]: unknown }): LuaMultiReturn<[number | undefined, string | undefined]> {
    return $multi(ctx[CTX_ROUTER_TIME] as number | undefined, ctx[CTX_ROUTER_CODE] as string | undefined);
}
