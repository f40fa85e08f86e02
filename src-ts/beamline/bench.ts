/**
 * beamline.bench — benchmark-only endpoints. They exist only in a config rendered with
 * `render(config, { bench: true })` (what `npm run bench` does); a normal render has no
 * `/__bench/*` location, so none of this is reachable in production.
 *
 * - `bare()`     `/__bench/bare`: a fixed JSON body and nothing else, the ceiling of the Lua
 *                content phase on this nginx (same bytes as the Router's `fast` reply, so the
 *                response size matches the decide 200 body).
 * - `info()`     `/__bench/info`: this worker's pid, Lua heap (KiB; `?gc=1` runs a full
 *                collection first) and the runtime versions, as JSON; `?dicts=1` adds each
 *                shared dict's capacity and free space (bytes; free space counts only whole free
 *                pages), `&keys=1` also its number of live keys (`get_keys(0)` locks the dict
 *                while it walks it: between runs only).
 * - `profile()`  `/__bench/profile?action=start|stop|gc_stop|gc_count|gc_restart`: the LuaJIT
 *                sampling profiler (jit.profile) and allocation counting with the GC stopped.
 */
import * as json from "./json";

// The same bytes as the reference Router's `fast` reply (docs/REFERENCE_ROUTER.md).
const BARE_BODY =
    '{"ok":true,"decision":{"provider_id":"openai","reason":"fast","priority":50,"expected_latency_ms":850,"expected_cost":0.002,"metadata":{}},"context":{"request_id":"fast","trace_id":"fast"}}';

const format = string.format;
const concat = table.concat;
const sort = table.sort;
// A variable, not the literal `require(...)`: TypeScriptToLua must not try to resolve these
// LuaJIT built-ins at compile time.
const lua_require = require;

/** GET /__bench/bare: the ceiling. */
export function bare(): void {
    ngx.status = 200;
    ngx.header["Content-Type"] = "application/json";
    ngx.print(BARE_BODY);
    return ngx.exit(200);
}

function json_string(s: unknown): string {
    const [text] = json.encode(tostring(s));
    return text ?? '""';
}

function send(body: string): void {
    ngx.status = 200;
    ngx.header["Content-Type"] = "application/json";
    ngx.print(body);
    return ngx.exit(200);
}

const DICTS = ["beamline_decisions", "beamline_ratelimit", "beamline_idempotency", "beamline_streams", "beamline_metrics"];

/** `"dicts":{name:{capacity,free_space[,keys]},…}` for /__bench/info?dicts=1 (issue 15). */
function dicts_json(keys: boolean): string {
    const parts: string[] = [];
    for (const name of DICTS) {
        const d = ngx.shared[name];
        if (d === undefined) continue;
        parts.push(
            json_string(name) +
                ':{"capacity":' +
                d.capacity() +
                ',"free_space":' +
                d.free_space() +
                (keys ? ',"keys":' + d.get_keys(0).length : "") +
                "}",
        );
    }
    return ',"dicts":{' + concat(parts, ",") + "}";
}

/** GET /__bench/info[?gc=1][&dicts=1[&keys=1]] */
export function info(): void {
    const [args] = ngx.req.get_uri_args();
    if (args["gc"] !== undefined) {
        collectgarbage("collect");
        collectgarbage("collect");
    }
    const [ok, cjson] = pcall(lua_require, "cjson");
    const cjson_version = ok ? (cjson as { _VERSION?: string })._VERSION : undefined;
    send(
        '{"pid":' +
            ngx.worker.pid() +
            ',"lua_kb":' +
            format("%.1f", collectgarbage("count")) +
            ',"nginx_version":' +
            ngx.config.nginx_version +
            ',"ngx_lua_version":' +
            ngx.config.ngx_lua_version +
            ',"jit_version":' +
            json_string(jit.version) +
            ',"cjson_version":' +
            json_string(cjson_version ?? "unknown") +
            ',"jit_status":' +
            json_string(jit.status()[0] === true ? "on" : "off") +
            (args["dicts"] !== undefined ? dicts_json(args["keys"] !== undefined) : "") +
            "}",
    );
}

// ---------------------------------------------------------------------------------------------
// Sampling profiler (per worker; the bench runs one worker when it profiles)
// ---------------------------------------------------------------------------------------------

interface JitProfile {
    start(this: void, mode: string, cb: (this: void, thread: LuaThread, samples: number, vmstate: string) => void): void;
    stop(this: void): void;
    dumpstack(this: void, thread: LuaThread, fmt: string, depth: number): string;
}

let leaf: { [k: string]: number } = {};
let stacks: { [k: string]: number } = {};
let vmstates: { [k: string]: number } = {};
let total = 0;
let gc_base = 0;
let profiling = false;

function on_sample(thread: LuaThread, samples: number, vmstate: string): void {
    const prof = lua_require("jit.profile") as JitProfile;
    total += samples;
    vmstates[vmstate] = (vmstates[vmstate] ?? 0) + samples;
    const f = prof.dumpstack(thread, "pl", 1);
    leaf[f] = (leaf[f] ?? 0) + samples;
    const s = prof.dumpstack(thread, "pF <", 6);
    stacks[s] = (stacks[s] ?? 0) + samples;
}

function top(t: { [k: string]: number }, n: number): string {
    const keys: string[] = [];
    for (const [k] of pairs(t)) {
        keys.push(k as string);
    }
    sort(keys, (a, b) => t[a] > t[b]);
    const parts: string[] = [];
    for (let i = 0; i < keys.length && i < n; i++) {
        parts.push("[" + json_string(keys[i]) + "," + t[keys[i]] + "]");
    }
    return "[" + concat(parts, ",") + "]";
}

const COST_VALUE = BARE_BODY;

/** Times `n` calls of each OpenResty API the decide handler uses; JSON {name: ns_per_call}. */
function ngx_costs(n: number): string {
    const out: string[] = [];
    const time = (name: string, f: (i: number) => unknown): void => {
        for (let i = 0; i < 1000; i++) f(i);
        ngx.update_time();
        const t0 = ngx.now();
        for (let i = 0; i < n; i++) f(i);
        ngx.update_time();
        out.push(json_string(name) + ":" + format("%.0f", ((ngx.now() - t0) * 1e9) / n));
    };
    const dict = ngx.shared["beamline_decisions"];
    time("ngx.req.get_headers(0)", () => ngx.req.get_headers(0));
    time("ngx.var.http_content_length", () => ngx.var["http_content_length"]);
    time("ngx.req.get_method()", () => ngx.req.get_method());
    time("ngx.ctx read", () => ngx.ctx["beamline_req_headers"]);
    time("ngx.header[X-Trace-Id] = v", () => {
        ngx.header["X-Trace-Id"] = "4bf92f3577b34da6a3ce929d0e0e4736";
    });
    time("ngx.var.beamline_router_code = v", () => {
        ngx.var["beamline_router_code"] = "ok";
    });
    time("ngx.update_time()", () => ngx.update_time());
    time("ngx.worker.pid()", () => ngx.worker.pid());
    if (dict !== undefined) {
        time("shdict:set(new key, 190 B, ttl)", (i) => dict.set("bench-costs|" + i, COST_VALUE, 300));
        time("shdict:get(key)", (i) => dict.get("bench-costs|" + i));
        time("shdict:ttl(key)", (i) => dict.ttl("bench-costs|" + i));
        time("shdict:incr(key, 1)", () => dict.incr("bench-costs|n", 1, 0));
        for (let i = 0; i < n; i++) dict.delete("bench-costs|" + i);
        dict.delete("bench-costs|n");
    }
    time("tostring(i) (inbox token)", (i) => tostring(i));
    return "{" + concat(out, ",") + "}";
}

/**
 * GET /__bench/profile?action=…
 * - `start` / `stop`: jit.profile at 1 ms intervals; `stop` returns the sample counts by VM state
 *   (N compiled, I interpreted, C in C code, G garbage collector, J JIT compiler), by leaf line and
 *   by stack (6 frames, leaf first).
 * - `gc_stop` / `gc_count` / `gc_restart`: stops the collector and reports the Lua heap growth
 *   since `gc_stop` (KiB): divided by the requests in between, the bytes each one allocates.
 * - `ngx_costs[&n=20000]`: ns per call of the OpenResty APIs the decide path uses, timed in a
 *   loop inside this request (send it with the decide request's headers).
 */
export function profile(): void {
    const [args] = ngx.req.get_uri_args();
    const action = args["action"];
    if (action === "start") {
        const prof = lua_require("jit.profile") as JitProfile;
        if (profiling) prof.stop();
        leaf = {};
        stacks = {};
        vmstates = {};
        total = 0;
        profiling = true;
        prof.start("li1", on_sample);
        return send('{"profiling":true}');
    }
    if (action === "stop") {
        const prof = lua_require("jit.profile") as JitProfile;
        prof.stop();
        profiling = false;
        return send(
            '{"samples":' + total + ',"vmstate":' + top(vmstates, 10) + ',"leaf":' + top(leaf, 40) + ',"stacks":' + top(stacks, 40) + "}",
        );
    }
    if (action === "gc_stop") {
        collectgarbage("collect");
        collectgarbage("stop");
        gc_base = collectgarbage("count");
        return send('{"lua_kb":' + format("%.1f", gc_base) + "}");
    }
    if (action === "gc_count") {
        return send('{"allocated_kb":' + format("%.1f", collectgarbage("count") - gc_base) + "}");
    }
    if (action === "gc_restart") {
        collectgarbage("restart");
        collectgarbage("collect");
        return send('{"lua_kb":' + format("%.1f", collectgarbage("count")) + "}");
    }
    if (action === "ngx_costs") {
        return send(ngx_costs(tonumber(args["n"]) ?? 20000));
    }
    ngx.status = 400;
    ngx.print('{"error":"action must be start, stop, gc_stop, gc_count, gc_restart or ngx_costs"}');
    return ngx.exit(400);
}
