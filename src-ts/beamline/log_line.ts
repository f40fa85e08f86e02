/**
 * beamline.log_line — the one way the gateway's Lua writes to nginx's error log (issue 17).
 *
 * Every part of a line is escaped before it reaches the log: every control byte (0x00-0x1f,
 * 0x7f) and every byte >= 0x80 becomes `\xHH`, so a value that came from a client, the Router,
 * a NATS server or the old gateway can neither end the line, nor carry a terminal escape, nor
 * make the line invalid UTF-8. Values logged as `name=value` fields go through `field` first,
 * which escapes backslashes, spaces and quotes as well: a value cannot forge another field, and
 * a `\xHH` in a field is always an escape.
 * Not on a hot path: lines are written for failures and state changes only.
 */
const sgsub = string.gsub;
const sfind = string.find;
const sformat = string.format;
const schar = string.char;
const tostr = tostring;

/** Replacement of each byte that is escaped: `\xHH`. */
const ESCAPES: { [ch: string]: string } = {};
for (let b = 0; b < 256; b++) ESCAPES[schar(b)] = sformat("\\x%02x", b);

// Built from bytes: a "\x80" in TypeScript source would be emitted as UTF-8 (two bytes).
const HIGH = schar(128) + "-" + schar(255);
/** Control bytes (%c: 0x00-0x1f and 0x7f) and bytes >= 0x80. */
const UNSAFE = "[%c" + HIGH + "]";
/** The same, plus backslash, white space and quotes: for `name=value` fields. */
const UNSAFE_FIELD = "[\\%c%s\"'" + HIGH + "]";

/** `s` with every unsafe byte written as `\xHH` (unchanged, and not copied, when all are safe). */
export function escape(s: string): string {
    if (sfind(s, UNSAFE)[0] === undefined) return s;
    const [out] = sgsub(s, UNSAFE, ESCAPES);
    return out;
}

/** A value of a `name=value` field: `escape` plus white space and quotes; "" shows as `-`. */
export function field(s: string | undefined): string {
    if (s === undefined || s === "") return "-";
    if (sfind(s, UNSAFE_FIELD)[0] === undefined) return s;
    const [out] = sgsub(s, UNSAFE_FIELD, ESCAPES);
    return out;
}

/**
 * `ngx.log(level, ...)` with every part converted with `tostring` and escaped. Use this instead
 * of ngx.log everywhere (spec/unit/log_line_spec.lua checks no module calls ngx.log directly).
 */
export function write(level: number, ...parts: unknown[]): void {
    const n = parts.length;
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
        const p = parts[i];
        out[i] = escape(typeof p === "string" ? p : tostr(p));
    }
    ngx.log(level, table.concat(out));
}
