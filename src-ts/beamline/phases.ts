/**
 * The one entry point of every `*_by_lua_block` in the rendered nginx config: each block is a
 * single call into a function here, and all logic lives in the modules it dispatches to.
 */
import * as config from "./config";
import * as health from "./handlers/health";
import * as api from "./handlers/api";
import * as connection from "./nats/connection";
import * as auth from "./auth";
import * as cors from "./cors";
import * as dns from "./dns";
import * as idempotency from "./idempotency";
import * as metrics from "./metrics";
import * as traffic from "./traffic";

type Handler = () => void;

/** Route name (as rendered into nginx.conf by scripts/lib/render.js) → content handler. */
const handlers: { [route: string]: Handler | undefined } = {
    healthz: health.healthz,
    health: health.health,
    ready: health.ready,
    live: health.live,
    decide: api.decide,
    messages: api.messages,
    decision_lookup: api.decision_lookup,
    metrics: metrics.serve,
    not_found: health.not_found,
};

/** The API routes' own handlers: what the traffic switch wraps, and what its shadow listener runs. */
const api_handlers: { [route: string]: Handler } = {
    decide: api.decide,
    messages: api.messages,
    decision_lookup: api.decision_lookup,
};

/** Shadow mode on: the log phase looks for a request to mirror (beamline.traffic). */
let shadow_log = false;

/**
 * With migration.enabled, every API route first goes through the traffic switch (new side or
 * the old gateway). Off, the handlers stay as they are: no per-request cost at all.
 */
function install_traffic_switch(cfg: config.GatewayConfig): void {
    traffic.configure(cfg.migration, cfg.limits.body_bytes);
    shadow_log = traffic.shadow_enabled();
    for (const [route, handler] of pairs(api_handlers)) {
        handlers[route as string] = cfg.migration.enabled ? () => traffic.dispatch(handler) : handler;
    }
}

/** How often each worker adds its NATS counters to the shared metrics (seconds). */
const METRICS_FLUSH_SECONDS = 1;

/**
 * init_by_lua: load the validated config in the master so every worker inherits it. Loading
 * this module here also pulls in every handler module before the fork, so workers never read
 * Lua files from disk (they may run as an unprivileged user).
 */
export function init(configPath: string): void {
    const [cfg, err] = config.load(configPath);
    if (cfg === undefined) {
        // Raising here makes nginx refuse to start (and `nginx -t` fail) with this message.
        error("beamline: " + err, 0);
    }
    // The NATS client certificate is read here, in the master: workers may not read the key.
    const [tok, terr] = connection.load_client_cert(cfg.nats.tls);
    if (tok === undefined) error("beamline: " + terr, 0);
    // Lookup tables built once here are inherited by every worker.
    dns.configure(cfg.dns_hosts);
    auth.configure(cfg.auth);
    cors.configure(cfg.cors);
    install_traffic_switch(cfg);
}

/** init_worker_by_lua: start this worker's NATS connection (a background timer owns it). */
export function init_worker(): void {
    const cfg = config.get();
    const [ok, err] = connection.start({ ...cfg.nats, request_timeout_ms: cfg.router.request_timeout_ms });
    if (ok === undefined) {
        // The config was validated, so this is a bug; the worker still serves health and errors.
        ngx.log(ngx.ERR, "beamline: cannot start the NATS connection: ", err);
    }
    const [tok, terr] = ngx.timer.every(METRICS_FLUSH_SECONDS, metrics.on_timer);
    if (tok === undefined) {
        ngx.log(ngx.ERR, "beamline: cannot start the metrics timer: ", terr);
    }
}

/** content_by_lua: run the handler of the route nginx matched. */
export function content(route: string): void {
    const handler = handlers[route];
    if (handler === undefined) {
        // A template names a route the Lua side does not know: a build bug, not a client error.
        ngx.log(ngx.ERR, "beamline: no handler for route ", route);
        return ngx.exit(500);
    }
    handler();
}

/**
 * log_by_lua (every request): request metrics, and the release of an Idempotency-Key whose
 * request ended without completing (only then is `$beamline_idem_pending` set).
 */
export function log(): void {
    if (ngx.var["beamline_idem_pending"] === "1") {
        idempotency.release_unfinished();
    }
    metrics.log_request();
    if (shadow_log) {
        traffic.after_response();
    }
}

/** body_filter_by_lua of the API routes, rendered only with migration.shadow on. */
export function body_filter(): void {
    traffic.capture_chunk();
}

/** content_by_lua of the shadow listener: the API route's own handler, without the split. */
export function shadow_content(route: string): void {
    const handler = api_handlers[route];
    if (handler === undefined) {
        ngx.log(ngx.ERR, "beamline: no handler for route ", route);
        return ngx.exit(500);
    }
    handler();
}
