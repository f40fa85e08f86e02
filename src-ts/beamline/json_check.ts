/**
 * beamline.json_check — a structural check of a Router reply without decoding it (issue 15).
 *
 * `ok_true(s)` is true only when `s` is one JSON text (RFC 8259) whose top level is an object
 * whose last "ok" member is `true`: exactly the replies §4 passes through as a 200 untouched.
 * It builds nothing (no Lua table, no string): one pass over the bytes through an FFI pointer,
 * which LuaJIT compiles, where cjson built a table of every member only to read `ok`.
 *
 * It may say false for text cjson would accept — `\u` escapes (cjson rejects lone surrogates),
 * control characters in strings, an escaped top-level key (it could decode to "ok"), nesting
 * deeper than MAX_DEPTH — and the caller then decodes as before; so it never says true for text
 * cjson would refuse, and a malformed reply still gets its 502.
 */
import type { Ffi } from "./crypto";

const cast = (require("ffi") as Ffi).cast;

/** Below beamline.json's DEFAULT_MAX_DEPTH (64): deeper replies take the decoding path. */
const MAX_DEPTH = 60;

const QUOTE = 34;
const BACKSLASH = 92;
const LBRACE = 123;
const RBRACE = 125;
const LBRACKET = 91;
const RBRACKET = 93;
const COMMA = 44;
const COLON = 58;
const MINUS = 45;
const PLUS = 43;
const DOT = 46;
const ZERO = 48;
const NINE = 57;
const LOWER_E = 101;
const UPPER_E = 69;

/** Open containers, innermost last: true for an object, false for an array (scratch, never yields). */
const in_object: boolean[] = [];

/** Mode of the scan: a value is next, a value just ended, an object key is next. */
const VALUE = 0;
const AFTER = 1;
const KEY = 2;

function is_ws(c: number): boolean {
    return c === 32 || c === 10 || c === 13 || c === 9;
}

function is_digit(c: number): boolean {
    return c >= ZERO && c <= NINE;
}

/**
 * The end of the string whose opening quote is at `i` (the index after its closing quote), or
 * -1 for one this check does not accept (control character, `\u` escape, unknown escape, no end).
 * `p[n]` is the terminating NUL of the Lua string, so the scan never reads past it.
 */
function string_end(p: { [i: number]: number }, i: number, n: number): number {
    i += 1;
    while (i < n) {
        const c = p[i];
        if (c === QUOTE) return i + 1;
        if (c < 32) return -1;
        if (c === BACKSLASH) {
            const e = p[i + 1];
            // \" \\ \/ \b \f \n \r \t; \u is left to cjson (a lone surrogate is its error)
            if (e === QUOTE || e === BACKSLASH || e === 47 || e === 98 || e === 102 || e === 110 || e === 114 || e === 116) {
                i += 2;
            } else {
                return -1;
            }
        } else {
            i += 1;
        }
    }
    return -1;
}

/** The end of the number starting at `i` (RFC 8259 grammar), or -1. */
function number_end(p: { [i: number]: number }, i: number): number {
    if (p[i] === MINUS) i += 1;
    const first = p[i];
    if (first === ZERO) {
        i += 1;
    } else if (first > ZERO && first <= NINE) {
        i += 1;
        while (is_digit(p[i])) i += 1;
    } else {
        return -1;
    }
    if (p[i] === DOT) {
        i += 1;
        if (!is_digit(p[i])) return -1;
        while (is_digit(p[i])) i += 1;
    }
    const e = p[i];
    if (e === LOWER_E || e === UPPER_E) {
        i += 1;
        const sign = p[i];
        if (sign === PLUS || sign === MINUS) i += 1;
        if (!is_digit(p[i])) return -1;
        while (is_digit(p[i])) i += 1;
    }
    return i;
}

/** True when `s` is a JSON object whose last top-level "ok" member is `true` (see above). */
export function ok_true(s: string): boolean {
    const n = s.length;
    const p = cast("const uint8_t *", s);
    let i = 0;
    while (is_ws(p[i])) i += 1;
    if (p[i] !== LBRACE) return false;
    let depth = 0;
    let mode = VALUE;
    let ok = false;
    // The value being read is the one of a top-level "ok" member.
    let ok_value = false;
    while (true) {
        while (is_ws(p[i])) i += 1;
        const c = p[i];
        if (mode === VALUE) {
            let is_true = false;
            if (c === LBRACE || c === LBRACKET) {
                if (depth >= MAX_DEPTH) return false;
                depth += 1;
                const obj = c === LBRACE;
                in_object[depth] = obj;
                i += 1;
                while (is_ws(p[i])) i += 1;
                if (p[i] === (obj ? RBRACE : RBRACKET)) {
                    i += 1;
                    depth -= 1;
                    mode = AFTER;
                } else {
                    mode = obj ? KEY : VALUE;
                }
            } else if (c === QUOTE) {
                i = string_end(p, i, n);
                if (i < 0) return false;
                mode = AFTER;
            } else if (c === 116) {
                // true
                if (p[i + 1] !== 114 || p[i + 2] !== 117 || p[i + 3] !== 101) return false;
                i += 4;
                is_true = true;
                mode = AFTER;
            } else if (c === 102) {
                // false
                if (p[i + 1] !== 97 || p[i + 2] !== 108 || p[i + 3] !== 115 || p[i + 4] !== 101) return false;
                i += 5;
                mode = AFTER;
            } else if (c === 110) {
                // null
                if (p[i + 1] !== 117 || p[i + 2] !== 108 || p[i + 3] !== 108) return false;
                i += 4;
                mode = AFTER;
            } else {
                i = number_end(p, i);
                if (i < 0) return false;
                mode = AFTER;
            }
            if (ok_value) {
                ok = is_true;
                ok_value = false;
            }
        } else if (mode === AFTER) {
            if (depth === 0) {
                // The top-level object ended: only whitespace may follow.
                return i === n && ok;
            }
            if (c === COMMA) {
                i += 1;
                mode = in_object[depth] ? KEY : VALUE;
            } else if (c === (in_object[depth] ? RBRACE : RBRACKET)) {
                i += 1;
                depth -= 1;
            } else {
                return false;
            }
        } else {
            // KEY
            if (c !== QUOTE) return false;
            const start = i;
            i = string_end(p, i, n);
            if (i < 0) return false;
            if (depth === 1) {
                // An escaped top-level key might decode to "ok": left to cjson.
                for (let j = start + 1; j < i - 1; j++) {
                    if (p[j] === BACKSLASH) return false;
                }
                ok_value = i - start === 4 && p[start + 1] === 111 && p[start + 2] === 107;
            }
            while (is_ws(p[i])) i += 1;
            if (p[i] !== COLON) return false;
            i += 1;
            mode = VALUE;
        }
    }
}
