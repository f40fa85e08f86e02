/**
 * beamline.util — request/response helpers shared by the HTTP handlers (CONTRACT §2, §5).
 *
 * Header rule: names match case-insensitively. A header sent more than once arrives as an array;
 * `get_header` then returns `nil, "multiple"` (with the values as a third return) so the caller
 * can answer 400 for single-valued headers (X-Tenant-ID, X-Trace-ID, X-Request-ID,
 * Idempotency-Key, Content-Type...). The request headers are fetched once per request and cached
 * in `ngx.ctx`.
 */
import json = require("./json");
import utf8 = require("./utf8");
import * as log_line from "./log_line";

const lower = string.lower;
const find = string.find;
const type_ = type;
const json_decode = json.decode;
const json_encode = json.encode;
const ERR_TOO_DEEP = json.ERR_TOO_DEEP;

export type BodyErrorCode = "payload_too_large" | "invalid_json" | "invalid_utf8" | "not_object" | "too_deep" | "empty_body" | "internal";

export interface ErrorContext {
    request_id?: string;
    trace_id?: string;
    tenant_id?: string;
}

export type HeaderMap = { [name: string]: string | number | string[] | undefined };

/** CONTRACT §5: gateway error code → HTTP status. */
const ERROR_STATUS: { [code: string]: number } = {
    invalid_request: 400,
    unauthorized: 401,
    forbidden: 403,
    not_found: 404,
    method_not_allowed: 405,
    conflict: 409,
    payload_too_large: 413,
    unsupported_media_type: 415,
    rate_limit_exceeded: 429,
    internal: 500,
    bad_gateway: 502,
    unavailable: 503,
    timeout: 504,
};

/** Gateway error code → status (§5); unknown codes → 500. */
function error_status(code: string): number {
    const s = ERROR_STATUS[code];
    return s !== undefined ? s : 500;
}

const HEADERS_CTX_KEY = "beamline_req_headers";

/**
 * The request headers (names lower-cased, repeated headers as arrays), fetched once per request.
 * No count limit (0): nginx's header buffers already bound it, and a cap would let a client hide
 * a header past the limit.
 */
function request_headers(): { [name: string]: NgxHeaderValue | undefined } {
    const ctx = ngx.ctx;
    let h = ctx[HEADERS_CTX_KEY] as { [name: string]: NgxHeaderValue | undefined } | undefined;
    if (h === undefined) {
        [h] = ngx.req.get_headers(0);
        ctx[HEADERS_CTX_KEY] = h;
    }
    return h;
}

/**
 * One request header, name matched case-insensitively.
 * Returns `value, nil` when sent once; `default, nil` when absent (an empty value is returned as
 * "", not as absent); `nil, "multiple", values` when sent more than once, even with equal values.
 */
function get_header<D extends string | undefined = undefined>(
    name: string,
    default_?: D,
): LuaMultiReturn<[string | D, undefined, undefined] | [undefined, "multiple", string[]]> {
    const v = request_headers()[lower(name)];
    if (v === undefined) {
        return $multi(default_ as D, undefined, undefined);
    }
    if (type_(v) === "table") {
        const list = v as string[];
        if (list.length === 1) {
            return $multi(list[0], undefined, undefined);
        }
        return $multi(undefined, "multiple", list);
    }
    return $multi(v as string, undefined, undefined);
}

/**
 * Reads the raw request body (memory or nginx's temp file), at most `limit_bytes`.
 * Returns `body, nil` ("" when there is none) or `nil, "payload_too_large" | "internal", message`.
 * A Content-Length above the limit is refused before anything is read.
 */
function read_body(limit_bytes: number): LuaMultiReturn<[string, undefined, undefined] | [undefined, BodyErrorCode, string]> {
    const [cl, multi] = get_header("content-length");
    if (multi === undefined && cl !== undefined) {
        const n = tonumber(cl);
        if (n !== undefined && n > limit_bytes) {
            return $multi(undefined, "payload_too_large", "request body exceeds " + limit_bytes + " bytes");
        }
    }
    const [ok] = pcall(ngx.req.read_body);
    if (!ok) {
        return $multi(undefined, "internal", "failed to read the request body");
    }
    let data = ngx.req.get_body_data();
    if (data === undefined) {
        const path = ngx.req.get_body_file();
        if (path === undefined) {
            return $multi("", undefined, undefined);
        }
        const [f] = io.open(path, "rb");
        if (f === undefined) {
            log_line.write(ngx.ERR, "beamline.util: cannot open request body file");
            return $multi(undefined, "internal", "failed to read the request body");
        }
        const [size] = f.seek("end");
        if (size !== undefined && size > limit_bytes) {
            f.close();
            return $multi(undefined, "payload_too_large", "request body exceeds " + limit_bytes + " bytes");
        }
        f.seek("set");
        data = f.read("*a") as string | undefined;
        f.close();
        if (data === undefined) {
            return $multi(undefined, "internal", "failed to read the request body");
        }
    }
    if (data.length > limit_bytes) {
        return $multi(undefined, "payload_too_large", "request body exceeds " + limit_bytes + " bytes");
    }
    return $multi(data, undefined, undefined);
}

/**
 * Decodes a raw body that must be a JSON object.
 * Returns `object, nil` or `nil, code, message` with code `empty_body` (empty or whitespace),
 * `invalid_utf8` (RFC 8259: the text must be UTF-8),
 * `too_deep` (nesting beyond `max_depth`, default 64), `invalid_json`, `not_object`.
 */
function decode_body_json(
    raw: string,
    max_depth?: number,
): LuaMultiReturn<[{ [key: string]: unknown }, undefined, undefined] | [undefined, BodyErrorCode, string]> {
    if (find(raw, "^[ \t\n\r]*$")[0] !== undefined) {
        return $multi(undefined, "empty_body", "request body is empty");
    }
    // RFC 8259: JSON text is UTF-8; cjson does not check. One scan for a byte >= 0x80 first.
    if (utf8.invalid_at(raw) !== undefined) {
        return $multi(undefined, "invalid_utf8", "request body is not valid UTF-8");
    }
    const [value, err, is_object] = json_decode(raw, max_depth);
    if (err !== undefined) {
        if (err === ERR_TOO_DEEP) {
            return $multi(undefined, "too_deep", "request body is too deeply nested");
        }
        return $multi(undefined, "invalid_json", "request body is not valid JSON");
    }
    if (is_object !== true) {
        return $multi(undefined, "not_object", "request body must be a JSON object");
    }
    return $multi(value as { [key: string]: unknown }, undefined, undefined);
}

/**
 * `read_body` + `decode_body_json`. Returns `object, nil, raw_body` (raw bytes, e.g. for the
 * idempotency hash) or `nil, code, message`; code is one of `payload_too_large` (→ 413),
 * `empty_body`, `invalid_json`, `not_object`, `too_deep` (→ 400 invalid_request, details {}),
 * `internal` (→ 500).
 */
function read_body_json(
    limit_bytes: number,
    max_depth?: number,
): LuaMultiReturn<[{ [key: string]: unknown }, undefined, string] | [undefined, BodyErrorCode, string]> {
    const [raw, code, msg] = read_body(limit_bytes);
    if (raw === undefined) {
        return $multi(undefined, code as BodyErrorCode, msg as string);
    }
    const [obj, code2, msg2] = decode_body_json(raw, max_depth);
    if (obj === undefined) {
        return $multi(undefined, code2 as BodyErrorCode, msg2 as string);
    }
    return $multi(obj, undefined, raw);
}

const INTERNAL_BODY =
    '{"ok":false,"error":{"code":"internal","message":"internal error","intake_error_code":null,"details":{}},"context":{"request_id":"","trace_id":"","tenant_id":""}}';

/**
 * Sends a JSON response and ends the request with `ngx.exit(status)`.
 * `body`: a string is sent as is, a table is encoded (an encoding failure is logged and answered
 * with a 500 internal error body), nil sends no body; 204/304 never carry one.
 * `headers`: extra response headers, set after Content-Type (so they may override it).
 */
function json_response(status: number, body: unknown, headers?: HeaderMap): never {
    let out: string | undefined;
    if (type_(body) === "string") {
        out = body as string;
    } else if (body !== undefined) {
        const [text, err] = json_encode(body);
        if (text === undefined) {
            log_line.write(ngx.ERR, "beamline.util: cannot encode response body: ", err);
            status = 500;
            out = INTERNAL_BODY;
        } else {
            out = text;
        }
    }
    // Every JSON body is valid UTF-8 (echoed paths, Router replies): invalid bytes become U+FFFD.
    if (out !== undefined) out = utf8.sanitize(out);
    ngx.status = status;
    ngx.header["Content-Type"] = "application/json";
    if (headers !== undefined) {
        for (const [k, v] of pairs(headers)) {
            ngx.header[k as string] = v;
        }
    }
    if (out !== undefined && status !== 204 && status !== 304) {
        ngx.print(out);
    }
    return ngx.exit(status);
}

function json_string(s: unknown): string {
    if (type_(s) !== "string") {
        return '""';
    }
    const [text] = json_encode(s);
    return text !== undefined ? text : '""';
}

function details_json(details: unknown): string {
    if (type_(details) !== "table" || next(details as object)[0] === undefined) {
        return "{}";
    }
    const [text, err] = json_encode(details);
    if (text === undefined || find(text, "{", 1, true)[0] !== 1) {
        log_line.write(ngx.ERR, "beamline.util: error details are not a JSON object: ", err);
        return "{}";
    }
    return text;
}

/**
 * The exact CONTRACT §5 error body as a string (fixed key order):
 * `{"ok":false,"error":{"code":..,"message":..,"intake_error_code":null,"details":{..}},
 *   "context":{"request_id":..,"trace_id":..,"tenant_id":..}}`.
 * Missing/non-string context fields become "", missing/empty details `{}`.
 */
function error_body(code: string, message: string, details?: object, context?: ErrorContext): string {
    const c = context !== undefined ? context : ({} as ErrorContext);
    return (
        '{"ok":false,"error":{"code":' +
        json_string(code) +
        ',"message":' +
        json_string(message) +
        ',"intake_error_code":null,"details":' +
        details_json(details) +
        '},"context":{"request_id":' +
        json_string(c.request_id) +
        ',"trace_id":' +
        json_string(c.trace_id) +
        ',"tenant_id":' +
        json_string(c.tenant_id) +
        "}}"
    );
}

/**
 * Sends a §5 gateway error and ends the request. `status` may be nil: then it comes from the
 * code (`error_status`).
 */
function error_response(
    status: number | undefined,
    code: string,
    message: string,
    details?: object,
    context?: ErrorContext,
    headers?: HeaderMap,
): never {
    const s = typeof status === "number" ? status : error_status(code);
    return json_response(s, error_body(code, message, details, context), headers);
}

/** 405 `method_not_allowed` with the `Allow` header (e.g. "GET, HEAD"), then ends the request. */
function method_not_allowed(allow: string, context?: ErrorContext, headers?: HeaderMap): never {
    const h: HeaderMap = headers !== undefined ? headers : {};
    h["Allow"] = allow;
    return error_response(405, "method_not_allowed", "method " + ngx.req.get_method() + " not allowed", undefined, context, h);
}

export {
    ERROR_STATUS,
    error_status,
    request_headers,
    get_header,
    read_body,
    decode_body_json,
    read_body_json,
    json_response,
    error_body,
    error_response,
    method_not_allowed,
};
