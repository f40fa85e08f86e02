/**
 * GET /openapi.json: the OpenAPI 3.1 description of the gateway (docs/openapi.yaml, rendered as
 * JSON into the nginx prefix by scripts/lib/render.js). Read once in init_by_lua (the master);
 * workers inherit the bytes and never touch the disk for it.
 */
import * as util from "../util";
import * as log_line from "../log_line";
import { get_only } from "./health";

let document: string | undefined;

/** init_by_lua: reads `<dir>/openapi.json`; a missing file is a warning, the route then 404s. */
export function load(dir: string): void {
    const [file] = io.open(dir + "/openapi.json", "rb");
    if (file === undefined) {
        log_line.write(ngx.WARN, "beamline: ", dir, "/openapi.json is missing; GET /openapi.json answers 404");
        return;
    }
    document = file.read("*a") as string | undefined;
    file.close();
}

export function serve(): void {
    if (!get_only()) return;
    if (document === undefined) {
        return util.error_response(404, "not_found", "no OpenAPI document in this build");
    }
    util.json_response(200, document);
}
