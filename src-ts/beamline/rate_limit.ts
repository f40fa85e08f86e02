/**
 * beamline.rate_limit — per tenant and route, fixed windows aligned to the epoch (CONTRACT §5,
 * §10): the window of time `now` with length W starts at `floor(now / W) * W` and resets at
 * start + W. Counted with `incr(key, 1, 0, W)` in the shared dict `beamline_ratelimit`, so every
 * worker of this instance shares one count; with `state.backend: redis` in Redis (INCR and
 * EXPIRE in one pipeline, one round trip: beamline.state_redis), so every instance shares it. When Redis fails
 * with `on_error: fail_open` the request is counted in the shared dict meanwhile (the limit then
 * holds per instance instead of not at all); `fail_closed` answers 503. The key holds the window start, so a new window
 * is a new key and old ones simply expire.
 *
 * `check` sets `X-RateLimit-Limit`, `-Remaining` and `-Reset` (epoch seconds of the window's
 * end) on the response; they stay on whatever the handler answers afterwards, errors included.
 * A request over the limit also gets `X-RateLimit-Remaining: 0`; the caller answers 429 with
 * `Retry-After` = seconds left in the window (at least 1).
 */
import * as config from "./config";
import * as metrics from "./metrics";
import * as state_redis from "./state_redis";
import * as log_line from "./log_line";

const DICT = "beamline_ratelimit";
const floor = math.floor;
const ceil = math.ceil;

export type Outcome = "allowed" | "limited" | "unavailable";

/** Start (epoch seconds) of the fixed window that holds `now`. */
export function window_start(now: number, window: number): number {
    return floor(now / window) * window;
}

/** Requests left in the window after `count` of `limit` were used (never negative). */
export function remaining(limit: number, count: number): number {
    return count >= limit ? 0 : limit - count;
}

/** Seconds until `reset` (the window's end), rounded up, at least 1. */
export function retry_after(now: number, reset: number): number {
    const s = ceil(reset - now);
    return s < 1 ? 1 : s;
}

/** The shared-dict / Redis key of one window: route, tenant and window start. */
export function counter_key(route: string, tenant: string, start: number): string {
    // Tenant ids are [A-Za-z0-9._:-], so "|" cannot be forged by a tenant.
    return route + "|" + tenant + "|" + start;
}

let dict: NgxSharedDict | undefined;

function count_local(key: string, window: number): number {
    if (dict === undefined) {
        dict = ngx.shared[DICT];
        if (dict === undefined) {
            log_line.write(ngx.ERR, "beamline: lua_shared_dict ", DICT, " is missing; rate limits are off");
            return 0;
        }
    }
    const [n, err] = dict.incr(key, 1, 0, window);
    if (n === undefined) {
        // Only "no memory" when even eviction cannot make room: let the request through.
        log_line.write(ngx.ERR, "beamline: rate limit counter failed: ", err);
        return 0;
    }
    return n;
}

/**
 * Counts one request of `tenant` against the limit of config route `route` and sets the
 * X-RateLimit-* headers. Returns the outcome ("unavailable": Redis failed and
 * `on_error: fail_closed`), the limit, the window length and the seconds left in the window.
 */
export function check(route: string, tenant: string): LuaMultiReturn<[Outcome, number, number, number]> {
    const cfg = config.get();
    // A key of the validated `routes` section (nats_routes name theirs: rate_limit_route).
    const rl = (cfg.routes[route] as config.RouteConfig).rate_limit;
    const limit = rl.limit;
    const window = rl.window_seconds;
    const now = ngx.time();
    const start = window_start(now, window);
    const reset = start + window;
    const key = counter_key(route, tenant, start);
    let count: number | undefined;
    const st = cfg.state;
    if (st.backend === "redis") {
        const [n] = state_redis.run("rate_limit", state_redis.RATE, st.redis.key_prefix + "rl:" + key, window);
        if (typeof n === "number") {
            count = n;
        } else {
            const mode = st.redis.on_error;
            // The v1 counter of this condition, kept for existing dashboards.
            metrics.rate_limit_backend_error(mode);
            if (mode === "fail_closed") {
                return $multi("unavailable", limit, window, retry_after(now, reset));
            }
        }
    }
    if (count === undefined) {
        count = count_local(key, window);
    }
    const h = ngx.header;
    h["X-RateLimit-Limit"] = limit;
    h["X-RateLimit-Remaining"] = remaining(limit, count);
    h["X-RateLimit-Reset"] = reset;
    if (count > limit) {
        metrics.rate_limit_hit(route);
        return $multi("limited", limit, window, retry_after(now, reset));
    }
    return $multi("allowed", limit, window, 0);
}
