/**
 * The one entry point of every `*_by_lua_block` in the rendered nginx config: each block is a
 * single call into a function here, and all logic lives in the modules it dispatches to.
 */
import * as config from "./config";
import * as health from "./handlers/health";
import * as api from "./handlers/api";
import * as openapi from "./handlers/openapi";
import * as nats_route from "./handlers/nats_route";
import * as stream_routes from "./handlers/streams";
import * as streams from "./streams";
import * as connection from "./nats/connection";
import * as auth from "./auth";
import * as cors from "./cors";
import * as dns from "./dns";
import * as idempotency from "./idempotency";
import * as metrics from "./metrics";
import * as traffic from "./traffic";
import * as utf8 from "./utf8";
import * as log_line from "./log_line";
import * as tracing from "./tracing";
import * as log_fields from "./log_fields";

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
    messages_stream: stream_routes.messages_stream,
    results_stream: stream_routes.results_stream,
    metrics: metrics.serve,
    openapi: openapi.serve,
    ui_metrics: metrics.serve_ui,
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

/** The JSON access log is on: the log phase makes its path valid UTF-8. */
let access_log_on = true;

/**
 * With migration.enabled, every API route first goes through the traffic switch (new side or
 * the old gateway). Off, the handlers stay as they are: no per-request cost at all.
 */
function install_traffic_switch(cfg: config.GatewayConfig): void {
    traffic.configure(cfg.migration, cfg.limits.body_bytes);
    shadow_log = traffic.shadow_enabled();
    // With auth on, the front door (key, tenant, rate limit) runs before the split (issue 17).
    const admit = cfg.auth.enabled ? api.admit : undefined;
    for (const [route, handler] of pairs(api_handlers)) {
        const name = route as string;
        handlers[name] = cfg.migration.enabled ? () => traffic.dispatch(name, handler, admit) : handler;
    }
}

/** How often each worker adds its NATS counters to the shared metrics (seconds). */
const METRICS_FLUSH_SECONDS = 1;

/**
 * At info and debug nginx itself writes request headers into the error log (e.g. `client sent
 * duplicate header line: "Authorization: Bearer <key>"`): said once at start, where operators
 * look (issue 17; the default is notice).
 */
function warn_log_level(level: string): void {
    if (level === "info" || level === "debug") {
        log_line.write(
            ngx.WARN,
            "beamline: log.level is ",
            level,
            ": nginx writes request headers, API keys included, into the error log at this level; use notice or above outside debugging",
        );
    }
}

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
    warn_log_level(cfg.log.level);
    // Lookup tables built once here are inherited by every worker.
    dns.configure(cfg.dns_hosts);
    auth.configure(cfg.auth);
    cors.configure(cfg.cors);
    install_traffic_switch(cfg);
    tracing.configure(cfg.tracing, cfg.version, cfg.nats_routes);
    access_log_on = cfg.log.access_log !== "off";
    log_fields.configure(access_log_on, tracing.enabled(), cfg.migration.enabled);
    // The rendered OpenAPI document lies next to gateway.json in the prefix.
    const [dir] = string.match(configPath, "^(.*)/[^/]*$");
    openapi.load(dir !== undefined ? dir : ".");
    install_nats_routes(cfg);
}

/**
 * The configured NATS routes (§12): one handler per nginx location (a path), named after its
 * first route; their requests count as API requests for /_metrics.
 */
function install_nats_routes(cfg: config.GatewayConfig): void {
    for (const name of nats_route.configure(cfg)) {
        handlers[name] = () => nats_route.serve(name);
    }
    const names: string[] = [];
    for (const r of cfg.nats_routes) names.push(r.name);
    metrics.add_ui_routes(names);
}

/** init_worker_by_lua: start this worker's NATS connection (a background timer owns it). */
export function init_worker(): void {
    const cfg = config.get();
    // Fewer, larger GC cycles: the decide path allocates ~3.6 KB a request (issue 15).
    collectgarbage("setpause", cfg.server.lua_gc_pause);
    const [ok, err] = connection.start({ ...cfg.nats, request_timeout_ms: cfg.router.request_timeout_ms });
    if (ok === undefined) {
        // The config was validated, so this is a bug; the worker still serves health and errors.
        log_line.write(ngx.ERR, "beamline: cannot start the NATS connection: ", err);
    }
    // after connection.start: the results subscription goes out with the first handshake
    streams.init_worker();
    const [tok, terr] = ngx.timer.every(METRICS_FLUSH_SECONDS, metrics.on_timer);
    if (tok === undefined) {
        log_line.write(ngx.ERR, "beamline: cannot start the metrics timer: ", terr);
    }
    tracing.start_worker();
}

/** content_by_lua: run the handler of the route nginx matched. */
export function content(route: string): void {
    const handler = handlers[route];
    if (handler === undefined) {
        // A template names a route the Lua side does not know: a build bug, not a client error.
        log_line.write(ngx.ERR, "beamline: no handler for route ", route);
        return ngx.exit(500);
    }
    handler();
}

/**
 * log_by_lua (every request): the access log's path made valid UTF-8, request metrics, and the
 * release of an Idempotency-Key whose request ended without completing (only then is
 * `$beamline_idem_pending` set). Each step that reads an nginx variable runs only when its
 * feature can need it (a variable read costs about 0.3 µs; issue 15).
 */
export function log(): void {
    // The access log's path is the decoded URI: `%ff` would make the JSON line invalid UTF-8
    // (dropped by strict pipelines). Runs before the access log is written; ASCII costs one scan.
    if (access_log_on) {
        const path = ngx.var["beamline_log_path"];
        if (path !== undefined && utf8.has_high(path)) {
            ngx.var["beamline_log_path_utf8"] = utf8.sanitize(path);
        }
    }
    if (idempotency.claims_open() && ngx.var["beamline_idem_pending"] === "1") {
        idempotency.release_unfinished();
    }
    metrics.log_request();
    if (tracing.enabled()) {
        tracing.log_phase();
    }
    if (shadow_log) {
        traffic.after_response();
    }
}

/** content_by_lua of the error_page location of nginx's own `status` (413, CONTRACT §14). */
export function nginx_error(status: number): void {
    if (status === 413) {
        return api.nginx_413();
    }
    log_line.write(ngx.ERR, "beamline: no handler for nginx error ", status);
    return ngx.exit(500);
}

/** body_filter_by_lua of the API routes, rendered only with migration.shadow on. */
export function body_filter(): void {
    traffic.capture_chunk();
}

/** content_by_lua of the shadow listener: the API route's own handler, without the split. */
export function shadow_content(route: string): void {
    const handler = api_handlers[route];
    if (handler === undefined) {
        log_line.write(ngx.ERR, "beamline: no handler for route ", route);
        return ngx.exit(500);
    }
    handler();
}
