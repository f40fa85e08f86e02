/**
 * beamline.cors — CORS for the API paths (CONTRACT §8). Off unless `cors.allowed_origins` lists
 * origins. Origins match exactly (scheme://host[:port], compared case-insensitively); `*` allows
 * any origin and cannot be combined with credentials (the config loader refuses that).
 *
 * - Preflight (`OPTIONS` on an API path while CORS is on): 204 without a Router call, with
 *   `Access-Control-Allow-Origin/-Methods/-Headers/-Max-Age` (and `-Allow-Credentials` when
 *   configured) for an allowed origin; a disallowed origin gets the 204 without them, which
 *   browsers treat as a refusal.
 * - Actual responses (`apply`, errors included): `Access-Control-Allow-Origin` (+ credentials,
 *   `Access-Control-Expose-Headers`) for an allowed origin, and always `Vary: Origin`.
 * With CORS off nothing here runs and OPTIONS stays a 405.
 */
import type { CorsConfig } from "./config";
import * as util from "./util";

const slower = string.lower;
const concat = table.concat;
const get_header = util.get_header;

let enabled = false;
let any_origin = false;
let credentials = false;
let origins: { [origin: string]: boolean } = {};
let allow_headers = "";
let expose_headers = "";
let max_age = "600";

export function configure(c: CorsConfig | undefined): void {
    origins = {};
    any_origin = false;
    enabled = false;
    if (c === undefined) return;
    for (const o of c.allowed_origins) {
        if (o === "*") any_origin = true;
        else origins[slower(o)] = true;
        enabled = true;
    }
    credentials = c.allow_credentials === true;
    allow_headers = concat(c.allowed_headers, ", ");
    expose_headers = concat(c.expose_headers, ", ");
    max_age = tostring(c.max_age_seconds);
}

export function is_enabled(): boolean {
    return enabled;
}

/**
 * The `Access-Control-Allow-Origin` value for a request's Origin: the origin itself when it is
 * listed, "*" when any origin is allowed, else nil.
 */
export function allow_origin(origin: string | undefined): string | undefined {
    if (!enabled || origin === undefined || origin === "") return undefined;
    if (origins[slower(origin)] === true) return origin;
    if (any_origin) return "*";
    return undefined;
}

function request_origin(): string | undefined {
    const [o] = get_header("origin");
    return o;
}

/** Sets the CORS headers of an actual (non-preflight) response on an API path. */
export function apply(): void {
    if (!enabled) return;
    const h = ngx.header;
    h["Vary"] = "Origin";
    const allowed = allow_origin(request_origin());
    if (allowed === undefined) return;
    h["Access-Control-Allow-Origin"] = allowed;
    if (credentials) h["Access-Control-Allow-Credentials"] = "true";
    if (expose_headers !== "") h["Access-Control-Expose-Headers"] = expose_headers;
}

/** Answers a preflight with 204; `methods` are the route's methods, e.g. "POST, OPTIONS". */
export function preflight(methods: string): never {
    const h = ngx.header;
    h["Allow"] = methods;
    h["Vary"] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
    const allowed = allow_origin(request_origin());
    if (allowed !== undefined) {
        h["Access-Control-Allow-Origin"] = allowed;
        h["Access-Control-Allow-Methods"] = methods;
        if (allow_headers !== "") h["Access-Control-Allow-Headers"] = allow_headers;
        h["Access-Control-Max-Age"] = max_age;
        if (credentials) h["Access-Control-Allow-Credentials"] = "true";
    }
    ngx.status = 204;
    return ngx.exit(204);
}
