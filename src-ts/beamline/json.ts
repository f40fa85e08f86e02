/**
 * beamline.json — JSON on lua-cjson that never raises and keeps `[]` / `{}` apart.
 *
 * - `decode(text, max_depth?)` → `value, nil, is_object` or `nil, err, detail`, where err is
 *   `ERR_INVALID` ("invalid JSON") or `ERR_TOO_DEEP` ("too deeply nested"); `detail` is cjson's
 *   message, for logs only. JSON `null` decodes to `null` (= cjson.null, truthy: use `is_null`).
 *   Non-standard numbers (hex, NaN, Infinity) are rejected.
 * - `encode(value)` → `text, nil` or `nil, err`; never raises (functions, cycles, NaN/±inf fail).
 * - Empty arrays: `array(t?)` marks a table as a JSON array, `EMPTY_ARRAY` is a shared `[]`.
 *   With OpenResty's cjson (has `array_mt` / `empty_array` / `decode_array_with_array_mt`) the
 *   markers are cjson's own and decoded arrays carry `array_mt`, so `[]` round-trips natively.
 *   With Debian's lua-cjson 2.1.0 (none of those), this module does it itself:
 *     decode: when the text contains `[` + optional whitespace + `]` outside strings, each such
 *       empty array is rewritten to `["<placeholder>"]` before cjson sees it (same nesting depth),
 *       and afterwards those one-element tables are emptied and given the array marker;
 *     encode: marked empty tables are swapped for the placeholder string in place, cjson encodes,
 *       the caller's tables are restored, and `"<placeholder>"` is replaced by `[]` in the output.
 *   The placeholder holds a control character and 128 random bits, so client data cannot forge
 *   it. Cost: one scan of the text when it has an empty array.
 * - Numbers: cjson prints them with %.14g (Debian's refuses a precision above 14, OpenResty's stops
 *   at 16), which would round client values such as 1234567890123456 or 3.141592653589793. On
 *   both flavours `encode` walks the tables once (the same walk as the Debian empty arrays) and
 *   swaps each number that %.14g would not print exactly for a placeholder string holding its
 *   index; after cjson, those placeholders are replaced by the exact text: integers below 1e16 as
 *   plain digits, anything else as the shortest of %.15g / %.16g / %.17g that reads back equal.
 *   Integers below 1e14 and short decimals (the usual case) stay cjson's, decided with a few
 *   arithmetic operations; other numbers cost a %.14g format to check. NaN and ±inf are left to
 *   cjson (error).
 *   The caller's tables are restored after cjson, as for the empty arrays.
 * Decoded JSON arrays are recognised by `is_array` on both flavours (marked, or key 1 present:
 * decoded objects only have string keys); `is_object` is the complement for tables.
 */
import cjsonSafe = require("cjson.safe");
import ids = require("./ids");
import tableClear = require("table.clear");

/** A Lua table seen from TypeScript: any key, any value (`get(1)` is Lua's first array slot). */
type AnyTable = LuaTable<AnyNotNil, unknown>;

export type JsonDecodeError = "invalid JSON" | "too deeply nested";
/** Opaque `[]` marker: cjson's `empty_array` userdata on OpenResty, a locked table on Debian. */
export interface JsonEmptyArray {
    readonly __jsonEmptyArrayBrand: unique symbol;
}

const ERR_INVALID: JsonDecodeError = "invalid JSON";
const ERR_TOO_DEEP: JsonDecodeError = "too deeply nested";
const DEFAULT_MAX_DEPTH = 64;
/** cjson recurses in C: never allow more than its own default. */
const MAX_DEPTH_CAP = 1000;

const find = string.find;
const gsub = string.gsub;
const sub = string.sub;
const byte = string.byte;
const format = string.format;
const concat = table.concat;
const floor = math.floor;

// Own instance: our settings (depth, strict numbers) must not leak into other cjson users.
const codec: CjsonSafeModule = cjsonSafe.new !== undefined ? cjsonSafe.new() : cjsonSafe;
codec.decode_invalid_numbers(false);

/** The JSON null sentinel (cjson.null, same light userdata as ngx.null). */
const null_: NgxNull = codec.null;

const NATIVE_ARRAY_MT: object | undefined = codec.array_mt;
/** True when cjson itself encodes marked tables as arrays (OpenResty flavour). */
const NATIVE_EMPTY_ARRAY = NATIVE_ARRAY_MT !== undefined;
/** True when cjson marks decoded arrays itself (OpenResty flavour). */
const decode_array_with_array_mt = codec.decode_array_with_array_mt;
const NATIVE_DECODE_ARRAY_MT = NATIVE_EMPTY_ARRAY && decode_array_with_array_mt !== undefined;
if (NATIVE_DECODE_ARRAY_MT && decode_array_with_array_mt !== undefined) {
    decode_array_with_array_mt(true);
}

const ARRAY_MT: object = NATIVE_ARRAY_MT !== undefined ? NATIVE_ARRAY_MT : { __name: "beamline.json.array" };

function refuse_write(this: void): never {
    error("beamline.json.EMPTY_ARRAY is shared and read-only", 2);
}

function make_empty_array(): JsonEmptyArray {
    if (NATIVE_EMPTY_ARRAY) {
        if (codec.empty_array !== undefined) {
            return codec.empty_array as JsonEmptyArray;
        }
        return setmetatable({}, ARRAY_MT as LuaMetatable<object>) as unknown as JsonEmptyArray;
    }
    return setmetatable({}, { __newindex: refuse_write }) as unknown as JsonEmptyArray;
}

/** A shared, read-only value that always encodes as `[]`. */
const EMPTY_ARRAY: JsonEmptyArray = make_empty_array();

// Placeholder for the Debian fallback: \1 keeps it out of ordinary text, 128 random bits out of
// reach of clients. PLACEHOLDER_JSON is how it appears in JSON text (cjson writes \1 as \u0001).
const PLACEHOLDER = "\u0001blEmptyArray" + ids.random_hex(16);
const PLACEHOLDER_JSON = '"\\u0001blEmptyArray' + sub(PLACEHOLDER, 14) + '"';
const EMPTY_ARRAY_TEXT_PATTERN = "%[[ \t\n\r]*%]";
const EMPTY_ARRAY_AT_PATTERN = "^[ \t\n\r]*%]";

let current_depth = -1;

function set_depth(depth: number): void {
    if (depth !== current_depth) {
        codec.decode_max_depth(depth);
        current_depth = depth;
    }
}

function clamp_depth(max_depth: number | undefined): number {
    if (typeof max_depth !== "number" || max_depth !== max_depth || max_depth < 1) {
        return DEFAULT_MAX_DEPTH;
    }
    const d = math.floor(max_depth);
    return d > MAX_DEPTH_CAP ? MAX_DEPTH_CAP : d;
}

// Debian decode, step 1: rewrite every `[ ]` outside strings to `["<placeholder>"]`.
// Returns the new text and the number of rewrites (0 → text unchanged).
function mark_empty_arrays_in_text(text: string): LuaMultiReturn<[string, number]> {
    const parts: string[] = [];
    let count = 0;
    let pos = 1;
    let last = 1;
    while (true) {
        const [i] = find(text, '["%[]', pos);
        if (i === undefined) {
            break;
        }
        if (byte(text, i) === 34) {
            // Skip the string literal, honouring backslash escapes.
            let j = i + 1;
            while (true) {
                const [k] = find(text, '["\\]', j);
                if (k === undefined) {
                    // Unterminated string: leave the text alone, cjson reports it.
                    return $multi(text, 0);
                }
                if (byte(text, k) === 92) {
                    j = k + 2;
                } else {
                    pos = k + 1;
                    break;
                }
            }
        } else {
            const [, e] = find(text, EMPTY_ARRAY_AT_PATTERN, i + 1);
            if (e !== undefined) {
                parts.push(sub(text, last, i));
                parts.push(PLACEHOLDER_JSON);
                last = e;
                pos = e + 1;
                count += 1;
            } else {
                pos = i + 1;
            }
        }
    }
    if (count === 0) {
        return $multi(text, 0);
    }
    parts.push(sub(text, last));
    return $multi(concat(parts), count);
}

function is_placeholder_array(v: AnyTable): boolean {
    return v.get(1) === PLACEHOLDER && v.get(2) === undefined;
}

// Debian decode, step 2: turn each decoded ["<placeholder>"] into an empty marked array.
// Decoded data is a tree, so no visited set is needed.
function unmark_decoded(t: AnyTable): void {
    for (const [, v] of pairs(t)) {
        if (type(v) === "table") {
            const child = v as AnyTable;
            if (is_placeholder_array(child)) {
                child.set(1, undefined);
                setmetatable(child, ARRAY_MT as LuaMetatable<AnyTable>);
            } else {
                unmark_decoded(child);
            }
        }
    }
}

/**
 * Decodes JSON text without ever raising.
 * Returns `value, nil, is_object` (is_object: the top level is a JSON object) or
 * `nil, ERR_INVALID | ERR_TOO_DEEP, detail`. `max_depth` (default 64, capped at 1000) counts
 * nested arrays/objects: `[[1]]` has depth 2.
 */
function decode(text: string, max_depth?: number): LuaMultiReturn<[unknown, undefined, boolean] | [undefined, JsonDecodeError, string]> {
    if (typeof text !== "string") {
        return $multi(undefined, ERR_INVALID, "not a string");
    }
    set_depth(clamp_depth(max_depth));
    let src = text;
    let marked = 0;
    // A plain search for "[" first: most texts (Router replies, small bodies) have no array,
    // and the pattern scan costs about a microsecond on every one of them.
    if (!NATIVE_DECODE_ARRAY_MT && find(text, "[", 1, true)[0] !== undefined && find(text, EMPTY_ARRAY_TEXT_PATTERN)[0] !== undefined) {
        [src, marked] = mark_empty_arrays_in_text(text);
    }
    const [value, err] = codec.decode(src);
    if (err !== undefined) {
        if (find(err, "nested", 1, true)[0] !== undefined) {
            return $multi(undefined, ERR_TOO_DEEP, err);
        }
        return $multi(undefined, ERR_INVALID, err);
    }
    if (marked > 0 && type(value) === "table") {
        const top = value as AnyTable;
        if (is_placeholder_array(top)) {
            top.set(1, undefined);
            setmetatable(top, ARRAY_MT as LuaMetatable<AnyTable>);
        } else {
            unmark_decoded(top);
        }
    }
    return $multi(value, undefined, find(text, "^[ \t\n\r]*{")[0] !== undefined);
}

// Encode: slots (table, key, original value) swapped for a placeholder during one encode call:
// marked empty tables (Debian only) and numbers that %.14g would round (both flavours).
// Module-level scratch is safe: the walk and cjson never yield or re-enter.
const slot_t: (AnyTable | undefined)[] = [];
const slot_k: (AnyNotNil | undefined)[] = [];
const slot_v: unknown[] = [];
let slot_n = 0;
/** How many of the slots are empty arrays / numbers. */
let empty_n = 0;
let number_n = 0;
const seen: LuaTable<object, boolean> = new LuaTable();
/** Exact text of each swapped number, by the index written into its placeholder ("1", "2", ...). */
const number_text: Record<string, string> = {};

// Number placeholder: NUMBER_PREFIX .. index. Same protection as PLACEHOLDER (\1 + 128 random
// bits); in cjson's output it reads "\u0001blNumber<hex><index>", matched by NUMBER_JSON_PATTERN
// (only `"`, `\`, letters and hex before the capture: no magic characters).
const NUMBER_KEY = ids.random_hex(16);
const NUMBER_PREFIX = "\u0001blNumber" + NUMBER_KEY;
const NUMBER_JSON_PATTERN = '"\\u0001blNumber' + NUMBER_KEY + '(%d+)"';

/**
 * The text that reads back as exactly `v`, when cjson's %.14g would not; undefined when cjson
 * prints `v` exactly (the fast path) or cannot print it at all (NaN, ±inf: cjson reports those).
 */
function exact_number_text(v: number): string | undefined {
    if (v === floor(v)) {
        if (v > -1e14 && v < 1e14) {
            return undefined;
        }
        if (v > -1e16 && v < 1e16) {
            // At most 16 digits: %.16g writes every one of them, without an exponent.
            return format("%.16g", v);
        }
        if (v - v !== 0) {
            return undefined; // ±inf
        }
    } else {
        // A decimal with at most 8 fractional digits and 14 significant ones (0.7, 19.99, 2.5e-6):
        // m / 1e8 is the double nearest to that decimal, and %.14g prints any decimal of up to
        // 15 digits back from its nearest double. No string: the JIT compiles this, not format.
        const m = floor(v * 1e8 + 0.5);
        if (m > -1e14 && m < 1e14 && m / 1e8 === v) {
            return undefined;
        }
        if (v !== v) {
            return undefined; // NaN
        }
    }
    if (tonumber(format("%.14g", v)) === v) {
        return undefined;
    }
    let s = format("%.15g", v);
    if (tonumber(s) === v) {
        return s;
    }
    s = format("%.16g", v);
    if (tonumber(s) === v) {
        return s;
    }
    return format("%.17g", v);
}

function is_marked_empty(v: unknown): boolean {
    return v === EMPTY_ARRAY || (getmetatable(v) === ARRAY_MT && next(v as object)[0] === undefined);
}

function add_slot(t: AnyTable, k: AnyNotNil, v: unknown): void {
    slot_n += 1;
    slot_t[slot_n - 1] = t;
    slot_k[slot_n - 1] = k;
    slot_v[slot_n - 1] = v;
}

// The one walk before cjson: swaps marked empty tables (Debian) and inexact numbers.
function swap_values(t: AnyTable): void {
    seen.set(t, true);
    for (const [k, v] of pairs(t)) {
        const tv = type(v);
        if (tv === "table") {
            if (!seen.has(v as object)) {
                if (!NATIVE_EMPTY_ARRAY && is_marked_empty(v)) {
                    add_slot(t, k, v);
                    empty_n += 1;
                    t.set(k, PLACEHOLDER);
                } else {
                    swap_values(v as AnyTable);
                }
            }
        } else if (tv === "number") {
            const text = exact_number_text(v as number);
            if (text !== undefined) {
                add_slot(t, k, v);
                number_n += 1;
                const index = tostring(number_n);
                number_text[index] = text;
                t.set(k, NUMBER_PREFIX + index);
            }
        }
    }
}

function restore_slots(): void {
    for (let i = slot_n - 1; i >= 0; i--) {
        const t = slot_t[i] as AnyTable;
        t.set(slot_k[i] as AnyNotNil, slot_v[i]);
        slot_t[i] = undefined;
        slot_k[i] = undefined;
        slot_v[i] = undefined;
    }
    slot_n = 0;
    empty_n = 0;
    number_n = 0;
    tableClear(seen);
}

const PLACEHOLDER_JSON_PATTERN = PLACEHOLDER_JSON; // only `"`, `\`, letters and hex: no magic characters

// cjson escapes "/" as "\/" (valid, but noisy in URLs and messages). OpenResty's fork can turn
// that off; with Debian's, "\/" is rewritten: cjson escapes every "/", so each "\/" in its
// output is exactly one escaped slash (a literal backslash is "\\", never followed by a bare "/").
const encode_escape_forward_slash = codec.encode_escape_forward_slash;
const SLASH_ESCAPED = encode_escape_forward_slash === undefined;
if (encode_escape_forward_slash !== undefined) {
    encode_escape_forward_slash(false);
}

/** Encodes a Lua value as JSON without raising: `text, nil` or `nil, err`. */
function encode(value: unknown): LuaMultiReturn<[string, undefined] | [undefined, string]> {
    const [text, err] = encode_raw(value);
    if (text !== undefined && SLASH_ESCAPED && find(text, "\\/", 1, true)[0] !== undefined) {
        const [unescaped] = gsub(text, "\\/", "/");
        return $multi(unescaped, undefined);
    }
    return $multi(text as string, err as undefined);
}

function encode_raw(value: unknown): LuaMultiReturn<[string, undefined] | [undefined, string]> {
    const tv = type(value);
    if (tv === "number") {
        const exact = exact_number_text(value as number);
        if (exact !== undefined) {
            return $multi(exact, undefined);
        }
        return codec.encode(value);
    }
    if (tv !== "table") {
        return codec.encode(value);
    }
    if (!NATIVE_EMPTY_ARRAY && is_marked_empty(value)) {
        return $multi("[]", undefined);
    }
    swap_values(value as AnyTable);
    if (slot_n === 0) {
        tableClear(seen);
        return codec.encode(value);
    }
    const has_empty = empty_n > 0;
    const has_numbers = number_n > 0;
    const [text, err] = codec.encode(value);
    restore_slots();
    let out = text;
    if (out !== undefined) {
        if (has_empty) {
            [out] = gsub(out, PLACEHOLDER_JSON_PATTERN, "[]");
        }
        if (has_numbers) {
            [out] = gsub(out, NUMBER_JSON_PATTERN, number_text);
        }
    }
    if (has_numbers) {
        tableClear(number_text);
    }
    if (out === undefined) {
        return $multi(undefined, err as string);
    }
    return $multi(out, undefined);
}

/** Marks `t` (default: a new table) as a JSON array, so it encodes as `[]` even when empty. */
function array<T extends object>(t?: T): T {
    const a = (t === undefined ? {} : t) as T;
    setmetatable(a, ARRAY_MT as LuaMetatable<T>);
    return a;
}

/** True for JSON null (cjson.null / ngx.null). */
function is_null(v: unknown): boolean {
    return v === null_;
}

/** True for decoded JSON arrays (both flavours), `array()` tables and `EMPTY_ARRAY`. */
function is_array(v: unknown): boolean {
    if (v === EMPTY_ARRAY) {
        return true;
    }
    if (type(v) !== "table") {
        return false;
    }
    return getmetatable(v) === ARRAY_MT || (v as AnyTable).get(1) !== undefined;
}

/** True for decoded JSON objects (a table that is not an array). */
function is_object(v: unknown): boolean {
    return type(v) === "table" && v !== EMPTY_ARRAY && getmetatable(v) !== ARRAY_MT && (v as AnyTable).get(1) === undefined;
}

export {
    decode,
    encode,
    array,
    is_null,
    is_array,
    is_object,
    null_ as null,
    EMPTY_ARRAY,
    ERR_INVALID,
    ERR_TOO_DEEP,
    DEFAULT_MAX_DEPTH,
    MAX_DEPTH_CAP,
    NATIVE_EMPTY_ARRAY,
    NATIVE_DECODE_ARRAY_MT,
};
