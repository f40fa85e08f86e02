/**
 * beamline.redis_counter — the optional Redis backend of the rate limiter (CONTRACT §5): one
 * fixed-window counter per key, shared by every gateway instance that uses the same Redis.
 *
 * One `EVAL` per counted request runs INCR and, on the window's first hit, EXPIRE atomically in
 * Redis (so a counter can never be left without an expiry). Connections come from the cosocket
 * keepalive pool (`set_keepalive`); a fresh one authenticates and selects the database first.
 * After any Redis error this worker skips Redis for `retry_after_ms`, so an outage costs one
 * timeout per worker per interval instead of one per request.
 *
 * The client is lua-resty-redis: `resty.redis` on OpenResty, Debian's `lua-nginx-redis`
 * (the same code, 0.27) installs it as `nginx.redis`.
 */
import type { RedisConfig } from "./config";

interface RedisClient {
    connect(this: RedisClient, host: string, port: number): LuaMultiReturn<[number, undefined] | [undefined, string]>;
    set_timeout(this: RedisClient, ms: number): void;
    get_reused_times(this: RedisClient): LuaMultiReturn<[number, undefined] | [undefined, string]>;
    auth(this: RedisClient, password: string): LuaMultiReturn<[unknown, string | undefined]>;
    select(this: RedisClient, db: number): LuaMultiReturn<[unknown, string | undefined]>;
    eval(this: RedisClient, script: string, numkeys: number, ...args: (string | number)[]): LuaMultiReturn<[unknown, string | undefined]>;
    set_keepalive(this: RedisClient, idle_ms: number, pool_size: number): LuaMultiReturn<[number, undefined] | [undefined, string]>;
    close(this: RedisClient): LuaMultiReturn<[number, undefined] | [undefined, string]>;
}

interface RedisModule {
    /** Quoted: a bare `new()` would declare a construct signature. */
    "new"(this: RedisModule): LuaMultiReturn<[RedisClient, undefined] | [undefined, string]>;
}

/** INCR, and EXPIRE on the first hit of the window: atomic inside Redis. */
export const SCRIPT = "local n = redis.call('INCR', KEYS[1]) " + "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end " + "return n";

const ltype = type;

let mod: RedisModule | undefined;
let mod_err: string | undefined;
let down_until = 0;

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

function fail(red: RedisClient, err: string, retry_ms: number): LuaMultiReturn<[undefined, string]> {
    red.close();
    down_until = ngx.now() + retry_ms / 1000;
    return $multi(undefined, err);
}

/**
 * Adds one to `key` (expiring `ttl_seconds` after its first hit) and returns the new count, or
 * nil and an error (connection, auth, script, or "skipped" while Redis is marked down).
 */
export function incr(c: RedisConfig, key: string, ttl_seconds: number): LuaMultiReturn<[number, undefined] | [undefined, string]> {
    if (down_until > 0) {
        if (ngx.now() < down_until) return $multi(undefined, "skipped: Redis marked down");
        down_until = 0;
    }
    const m = load();
    if (m === undefined) return $multi(undefined, mod_err as string);
    const [red, nerr] = m["new"]();
    if (red === undefined) return $multi(undefined, "redis: " + nerr);
    red.set_timeout(c.timeout_ms);
    const [ok, cerr] = red.connect(c.host, c.port);
    if (ok === undefined) return fail(red, "connect: " + cerr, c.retry_after_ms);
    const [reused] = red.get_reused_times();
    if (reused === 0) {
        if (c.password !== undefined) {
            const [a, aerr] = red.auth(c.password);
            if (a === undefined || a === false) return fail(red, "auth: " + tostring(aerr), c.retry_after_ms);
        }
        if (c.database !== 0) {
            const [s, serr] = red.select(c.database);
            if (s === undefined || s === false) return fail(red, "select: " + tostring(serr), c.retry_after_ms);
        }
    }
    const [n, eerr] = red.eval(SCRIPT, 1, c.key_prefix + key, ttl_seconds);
    if (typeof n !== "number") return fail(red, "eval: " + tostring(eerr), c.retry_after_ms);
    red.set_keepalive(c.keepalive_ms, c.pool_size);
    return $multi(n, undefined);
}

/** For tests: forget that Redis was marked down. */
export function reset(): void {
    down_until = 0;
}
