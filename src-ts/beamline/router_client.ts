/**
 * The Router call of CONTRACT.md §4: one NATS request/reply on the decide subject over the
 * worker's shared connection. The HTTP handler maps the failures to statuses:
 * `no_responders` / `not_connected` → 503, `timeout` → 504, `payload_too_large` → 413.
 */
import * as connection from "./nats/connection";
import type { HeaderList } from "./nats/protocol";

const request = connection.request;

export const DEFAULT_SUBJECT = "beamline.router.v1.decide";
export const DEFAULT_TIMEOUT_MS = 5000;

export type DecideFailure = "no_responders" | "timeout" | "not_connected" | "payload_too_large" | "invalid_request";

/**
 * Sends the Router request (JSON bytes plus a flat name/value list of NATS headers) on
 * `subject` (default beamline.router.v1.decide) and returns the reply bytes unchanged, or
 * (nil, failure). Plain arguments rather than an options table: this runs once per request.
 * `invalid_request` means a header or the subject could not be encoded (CR/LF in a value,
 * whitespace in the subject): a gateway bug, not the client's, as the handler validates every
 * forwarded value first.
 */
export function decide(
    payload: string,
    headers: HeaderList | undefined,
    subject?: string,
    timeout_ms?: number,
): LuaMultiReturn<[string, undefined] | [undefined, DecideFailure]> {
    const s = subject !== undefined && subject !== "" ? subject : DEFAULT_SUBJECT;
    const t = timeout_ms !== undefined && timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
    // request() compares the whole frame (headers + payload) with the server's max_payload
    // before publishing: an oversize frame would make the server drop the connection.
    const [reply, err_or_headers, status] = request(s, headers, payload, t);
    if (reply === undefined) return $multi(undefined, err_or_headers as DecideFailure);
    // 503 is mapped to no_responders by the connection; any other status-only reply (no body)
    // is not a Router answer either.
    if (status !== undefined && status >= 300 && reply === "") return $multi(undefined, "no_responders");
    return $multi(reply, undefined);
}

/** The connected server's max_payload (bytes); the NATS default before the first connect. */
export function max_payload(): number {
    return connection.get_max_payload();
}

/** Whether this worker's NATS connection is up (for /health and /readyz). */
export function connected(): boolean {
    return connection.is_connected();
}
