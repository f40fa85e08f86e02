/**
 * The one entry point of every `*_by_lua_block` in the rendered nginx config: each block is a
 * single call into a function here, and all logic lives in the modules it dispatches to.
 */
import * as config from "./config";
import * as health from "./handlers/health";

type Handler = () => void;

/** Route name (as rendered into nginx.conf by scripts/lib/render.js) → content handler. */
const handlers: { [route: string]: Handler | undefined } = {
    healthz: health.healthz,
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

/** init_worker_by_lua: per-worker background work (the NATS connection, once it exists). */
export function init_worker(): void {
    // Nothing yet; the NATS connection manager starts here.
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
