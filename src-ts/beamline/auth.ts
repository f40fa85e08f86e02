/**
 * beamline.auth — API keys per tenant (CONTRACT §2), when `auth.enabled` is set.
 *
 * The config holds SHA-256 digests of the keys (`auth.api_keys[].key_sha256`), never the keys.
 * A request presents its key as `Authorization: Bearer <key>` or `X-API-Key: <key>`; the key is
 * hashed (libcrypto via ffi) and the digest looked up in a table built once from the config.
 * The lookup hashes the digest, it never compares key bytes; the digest is then confirmed with a
 * constant-time compare (against a dummy when nothing matched, so both paths do the same work).
 * Missing or unknown key → 401 `unauthorized`; the key's tenant differs from the request's
 * tenant → 403 `forbidden` (the handler checks that once the tenant is known).
 * The key itself is never logged and never forwarded (only named headers go to the Router).
 */
import type { AuthConfig } from "./config";
import * as crypto from "./crypto";
import * as util from "./util";
import * as log_line from "./log_line";

const sfind = string.find;
const slower = string.lower;
const get_header = util.get_header;
const ct_equal = crypto.ct_equal;
const sha256_hex = crypto.sha256_hex;

interface KeyEntry {
    digest: string;
    tenant_id: string;
    /** May call the admin nats_routes (CONTRACT §12). */
    admin: boolean;
}

const DUMMY_DIGEST = string.rep("0", 64);
let enabled = false;
let by_digest: { [digest: string]: KeyEntry | undefined } = {};

/** Builds the digest table from the config (init_by_lua, so workers inherit it). */
export function configure(c: AuthConfig | undefined): void {
    by_digest = {};
    enabled = c !== undefined && c.enabled === true;
    if (c === undefined) return;
    for (const k of c.api_keys) {
        const d = slower(k.key_sha256);
        by_digest[d] = { digest: d, tenant_id: k.tenant_id, admin: k.admin === true };
    }
}

export function is_enabled(): boolean {
    return enabled;
}

/** The token of an `Authorization: Bearer <token>` value (scheme case-insensitive), or nil. */
export function parse_bearer(value: string): string | undefined {
    const [, , token] = sfind(value, "^[ \t]*[Bb][Ee][Aa][Rr][Ee][Rr][ \t]+([!-~]+)[ \t]*$");
    return token as string | undefined;
}

/**
 * The key the request presents: a Bearer token, else `X-API-Key`. A repeated header, an empty
 * value or another Authorization scheme (without X-API-Key) count as no key.
 */
export function presented_key(): string | undefined {
    const [authz] = get_header("authorization");
    if (authz !== undefined) {
        const token = parse_bearer(authz);
        if (token !== undefined) return token;
    }
    const [k] = get_header("x-api-key");
    if (k !== undefined) {
        const [, , trimmed] = sfind(k, "^[ \t]*([!-~]+)[ \t]*$");
        return trimmed as string | undefined;
    }
    return undefined;
}

/**
 * The tenant of a key and whether it is an admin key, or nil when it is not configured (or
 * libcrypto is missing).
 */
export function tenant_for_key(key: string): LuaMultiReturn<[string | undefined, boolean]> {
    const [digest, err] = sha256_hex(key);
    if (digest === undefined) {
        log_line.write(ngx.ERR, "beamline: cannot hash the API key: ", err);
        return $multi(undefined, false);
    }
    const entry = by_digest[digest];
    const ok = ct_equal(entry !== undefined ? entry.digest : DUMMY_DIGEST, digest);
    if (ok && entry !== undefined) return $multi(entry.tenant_id, entry.admin);
    return $multi(undefined, false);
}

/**
 * Authenticates the request: returns the key's tenant, or nil when auth is on and the key is
 * missing or unknown (the caller answers 401). With auth off: nil, and `off` = true. The third
 * value says whether the key may call the admin routes.
 */
export function authenticate(): LuaMultiReturn<[string | undefined, boolean, boolean]> {
    if (!enabled) return $multi(undefined, true, false);
    const key = presented_key();
    if (key === undefined) return $multi(undefined, false, false);
    const [tenant, admin] = tenant_for_key(key);
    return $multi(tenant, false, admin);
}
