/**
 * Liveness and fallback handlers. `/healthz` never touches NATS: it only proves the worker
 * runs Lua, so its body is a constant encoded once.
 */
import * as util from "../util";

const HEALTHZ_BODY = '{"status":"ok"}';

export function healthz(): void {
    const method = ngx.req.get_method();
    if (method !== "GET" && method !== "HEAD") {
        return util.method_not_allowed("GET, HEAD");
    }
    util.json_response(200, HEALTHZ_BODY);
}

/** Any path no route claims. */
export function not_found(): void {
    util.error_response(404, "not_found", "no route for " + ngx.req.get_method() + " " + (ngx.var["uri"] ?? "/"));
}
