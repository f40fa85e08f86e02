/**
 * beamline.router_reply — what the client gets for a Router reply (CONTRACT §4). Pure.
 *
 * - `{"ok":true,…}` → 200 with the Router's bytes untouched (no re-encoding on the hot path;
 *   checked by beamline.json_check without decoding, so `decoded` is then absent).
 * - `{"ok":false,"error":{"code":C,…}}` → the status of C; the Router's body, completed with
 *   `error.intake_error_code: null` and `error.details: {}` where absent (re-encoded only then).
 * - anything else (not JSON, no boolean `ok`, `error` missing / not an object / no string
 *   `code`) → 502 bad_gateway, produced by the caller as a gateway error.
 */
import * as json from "./json";
import { ok_true } from "./json_check";

/** Router error code → HTTP status; any other code is 500. */
const STATUS_BY_CODE: { [code: string]: number | undefined } = {
    invalid_request: 400,
    unsupported_protocol_version: 400,
    unauthorized: 401,
    validator_blocked: 403,
    policy_not_found: 404,
    extension_not_found: 404,
    rate_limit_exceeded: 429,
    extension_unavailable: 503,
    extension_timeout: 504,
};

export function status_for_code(code: string): number {
    return STATUS_BY_CODE[code] ?? 500;
}

/** A successful or Router-error reply ready to send, or a malformed one (`status` 502). */
export interface MappedReply {
    status: number;
    /** Body to send; undefined when the reply is malformed (the caller answers 502). */
    body?: string;
    /** The decoded reply; undefined when malformed, and for an ok:true reply checked undecoded. */
    decoded?: { [key: string]: unknown };
    /** Router error code, when `ok` is false. */
    code?: string;
    /** Why the reply was rejected, for the error log (never sent to clients). */
    problem?: string;
}

export function map_reply(bytes: string): MappedReply {
    if (ok_true(bytes)) return { status: 200, body: bytes };
    const [decoded, err] = json.decode(bytes);
    if (decoded === undefined) {
        return { status: 502, problem: "reply is not JSON (" + tostring(err) + ")" };
    }
    if (!json.is_object(decoded)) {
        return { status: 502, problem: "reply is not a JSON object" };
    }
    const reply = decoded as { [key: string]: unknown };
    const ok = reply["ok"];
    if (ok === true) {
        return { status: 200, body: bytes, decoded: reply };
    }
    if (ok !== false) {
        return { status: 502, problem: "reply has no boolean ok" };
    }
    const error = reply["error"];
    if (!json.is_object(error)) {
        return { status: 502, problem: "ok:false reply without an error object" };
    }
    const e = error as { [key: string]: unknown };
    const code = e["code"];
    if (typeof code !== "string") {
        return { status: 502, problem: "ok:false reply without a string error.code" };
    }
    const status = status_for_code(code);
    if (e["intake_error_code"] !== undefined && e["details"] !== undefined) {
        return { status, body: bytes, decoded: reply, code };
    }
    if (e["intake_error_code"] === undefined) {
        e["intake_error_code"] = json.null;
    }
    if (e["details"] === undefined) {
        e["details"] = {};
    }
    const [body, encodeErr] = json.encode(reply);
    if (body === undefined) {
        return { status: 502, problem: "cannot re-encode the Router's error body: " + tostring(encodeErr) };
    }
    return { status, body, decoded: reply, code };
}
