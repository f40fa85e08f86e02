/**
 * Liveness, readiness, the health document (CONTRACT §1, §6) and the fallback 404.
 * `/healthz` never touches NATS: it only proves the worker runs Lua, so its body is a constant.
 * Health and readiness describe the worker that answered.
 */
import * as config from "../config";
import * as util from "../util";
import * as json from "../json";
import * as connection from "../nats/connection";

const HEALTHZ_BODY = '{"status":"ok"}';
const LIVE_BODY = '{"status":"alive"}';
const READY_BODY = '{"status":"ready"}';
const UNREADY_DRAINING = '{"status":"unready","reason":"draining"}';
const UNREADY_NATS = '{"status":"unready","reason":"nats_disconnected"}';
const GET_HEAD = "GET, HEAD";

const floor = math.floor;
const date = os.date;
const format = string.format;

function get_only(): boolean {
    const method = ngx.req.get_method();
    if (method !== "GET" && method !== "HEAD") {
        util.method_not_allowed(GET_HEAD);
        return false;
    }
    return true;
}

export function healthz(): void {
    if (get_only()) {
        util.json_response(200, HEALTHZ_BODY);
    }
}

export function live(): void {
    if (get_only()) {
        util.json_response(200, LIVE_BODY);
    }
}

/** Ready only while this worker's NATS connection is up and it is not shutting down. */
export function ready(): void {
    if (!get_only()) {
        return;
    }
    if (ngx.worker.exiting()) {
        return util.json_response(503, UNREADY_DRAINING);
    }
    if (!connection.is_connected()) {
        return util.json_response(503, UNREADY_NATS);
    }
    util.json_response(200, READY_BODY);
}

/**
 * The status document of §6. The NATS server address and the version are details for operators:
 * only with `health.details: true` or for clients in `health.details_from` (the geo map
 * `$beamline_health_details` of conf.d/00-http.conf); everyone else gets the status alone.
 */
export function health(): void {
    if (!get_only()) {
        return;
    }
    ngx.update_time();
    const now = ngx.now();
    const sec = floor(now);
    const ms = floor((now - sec) * 1000 + 0.5) % 1000;
    const st = connection.status();
    const details = ngx.var["beamline_health_details"] === "1";
    const doc = {
        status: st.connected ? "healthy" : "degraded",
        service: "beamline-gateway",
        version: details ? config.get().version : undefined,
        timestamp: (date("!%Y-%m-%dT%H:%M:%S", sec) as string) + format(".%03dZ", ms),
        timestamp_ms: floor(now * 1000),
        nats: {
            connected: st.connected,
            server: !details ? undefined : st.connected && st.server !== undefined ? st.server : json.null,
        },
    };
    util.json_response(200, doc);
}

/** Any path no route claims. */
export function not_found(): void {
    // The path is the client's own, echoed back: at most 256 bytes of it, cut before a UTF-8
    // continuation byte so a multi-byte character is not split.
    let uri = ngx.var["uri"] ?? "/";
    if (uri.length > 256) {
        let n = 256;
        while (n > 0 && string.byte(uri, n + 1) >= 0x80 && string.byte(uri, n + 1) < 0xc0) n--;
        uri = string.sub(uri, 1, n) + "…";
    }
    util.error_response(404, "not_found", "no route for " + ngx.req.get_method() + " " + uri);
}
