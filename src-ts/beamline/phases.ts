/**
 * The one entry point of every `*_by_lua_block` in the rendered nginx config: each block is a
 * single call into a function here, and all logic lives in the modules it dispatches to.
 */
import * as config from "./config";
import * as health from "./handlers/health";
import * as api from "./handlers/api";
import * as connection from "./nats/connection";

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
    not_found: health.not_found,
};

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
}

/** init_worker_by_lua: start this worker's NATS connection (a background timer owns it). */
export function init_worker(): void {
    const cfg = config.get();
    const [ok, err] = connection.start({ ...cfg.nats, request_timeout_ms: cfg.router.request_timeout_ms });
    if (ok === undefined) {
        // The config was validated, so this is a bug; the worker still serves health and errors.
        ngx.log(ngx.ERR, "beamline: cannot start the NATS connection: ", err);
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
