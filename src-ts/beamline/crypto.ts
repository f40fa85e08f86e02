/**
 * beamline.crypto — OpenSSL libcrypto through LuaJIT ffi (Debian has no lua-resty-string), and
 * the small primitives the gateway needs from it:
 *
 * - `load_libcrypto(cdefs, probe, what)`: the one loader of libcrypto. nginx already links it,
 *   so inside nginx the symbols resolve through `ffi.C`; under plain LuaJIT (busted) the library
 *   is loaded by name. Each declaration is `cdef`ed separately (another module may have declared
 *   some of them already). Results are cached per `what`.
 * - `sha256(s)` / `sha256_hex(s)`: one-shot SHA-256 (`SHA256()`), into a reused buffer.
 * - `ct_equal(a, b)`: constant-time comparison of two equal-length strings.
 *
 * Nothing touches ffi at load time: the library is loaded on first use.
 */

/** Minimal LuaJIT ffi typings (the gateway's ffi users share these). */
export interface FfiCdata {
    [index: number]: number;
}
export interface Ffi {
    cdef(this: void, decl: string): void;
    load(this: void, name: string): unknown;
    C: unknown;
    new: (this: void, ct: string, ...init: unknown[]) => FfiCdata;
    string(this: void, p: FfiCdata, len?: number): string;
    /** A pointer view of a value, e.g. `cast("const uint8_t *", s)` over a Lua string's bytes. */
    cast(this: void, ct: string, value: unknown): FfiCdata;
}

const LIB_NAMES = ["crypto", "libcrypto.so.3", "libcrypto.so"];
const loaded: { [what: string]: unknown } = {};
const failed: { [what: string]: string | undefined } = {};

/**
 * libcrypto with the given declarations; `probe(lib)` must return true when the symbols the
 * caller needs resolve (it runs under pcall). Returns `lib, nil` or `nil, what` (the caller's
 * error text) when no candidate has them.
 */
export function load_libcrypto<L>(
    cdefs: string[],
    probe: (this: void, lib: L) => boolean,
    what: string,
): LuaMultiReturn<[L, undefined] | [undefined, string]> {
    const hit = loaded[what];
    if (hit !== undefined) return $multi(hit as L, undefined);
    const err = failed[what];
    if (err !== undefined) return $multi(undefined, err);
    const ffi = require("ffi") as Ffi;
    for (const d of cdefs) pcall(ffi.cdef, d);
    const [okc, hasc] = pcall(probe, ffi.C as L);
    if (okc && hasc === true) {
        loaded[what] = ffi.C;
        return $multi(ffi.C as L, undefined);
    }
    for (const name of LIB_NAMES) {
        const [ok, lib] = pcall(ffi.load, name);
        if (ok) {
            const [okp, has] = pcall(probe, lib as L);
            if (okp && has === true) {
                loaded[what] = lib;
                return $multi(lib as L, undefined);
            }
        }
    }
    failed[what] = what;
    return $multi(undefined, what);
}

interface ShaLib {
    SHA256(this: void, d: string, n: number, md: FfiCdata): FfiCdata | undefined;
}

const SHA_CDEFS = ["unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);"];
const SHA_ERR = "libcrypto with SHA256 not found";
const HEX32 = string.rep("%02x", 32);
const sformat = string.format;
const sbyte = string.byte;
const bitop = require("bit") as typeof bit;
const bor = bitop.bor;
const bxor = bitop.bxor;

let sha_lib: ShaLib | undefined;
let sha_buf: FfiCdata | undefined;
let ffi_string: Ffi["string"] | undefined;

function sha_probe(this: void, lib: ShaLib): boolean {
    return lib.SHA256 !== undefined;
}

/** The raw 32-byte SHA-256 digest of `s`, or nil and an error when libcrypto is missing. */
export function sha256(s: string): LuaMultiReturn<[string, undefined] | [undefined, string]> {
    if (sha_lib === undefined) {
        const [lib, err] = load_libcrypto<ShaLib>(SHA_CDEFS, sha_probe, SHA_ERR);
        if (lib === undefined) return $multi(undefined, err as string);
        const ffi = require("ffi") as Ffi;
        sha_buf = ffi.new("unsigned char[32]");
        ffi_string = ffi.string;
        sha_lib = lib;
    }
    // One reused output buffer: SHA256() never yields, so no other caller can interleave.
    sha_lib.SHA256(s, s.length, sha_buf as FfiCdata);
    return $multi((ffi_string as Ffi["string"])(sha_buf as FfiCdata, 32), undefined);
}

/** Lower-case hex of a 32-byte string (a SHA-256 digest). */
export function hex32(d: string): string {
    return sformat(HEX32, ...sbyte(d, 1, 32));
}

/** The SHA-256 of `s` as 64 lower-case hex characters, or nil and an error. */
export function sha256_hex(s: string): LuaMultiReturn<[string, undefined] | [undefined, string]> {
    const [d, err] = sha256(s);
    if (d === undefined) return $multi(undefined, err as string);
    return $multi(hex32(d), undefined);
}

/**
 * Constant-time equality for strings of equal length (the time depends only on the length,
 * which is public for digests). Different lengths → false at once.
 */
export function ct_equal(a: string, b: string): boolean {
    const n = a.length;
    if (n !== b.length) return false;
    let acc = 0;
    for (let i = 1; i <= n; i++) {
        acc = bor(acc, bxor(sbyte(a, i), sbyte(b, i)));
    }
    return acc === 0;
}
