/**
 * NATS client protocol codec: frame encoders, an incremental frame parser and the header block
 * parser. Pure Lua (no `ngx` calls) so busted can test it under plain LuaJIT.
 *
 * Lua strings are byte strings, so every `#`/length here is a byte count, as the protocol wants.
 * Hot paths use the Lua `string` library directly (TSTL's lualib string helpers are slower).
 */
import cjson = require("cjson.safe");
import tableClear = require("table.clear");

const sfind = string.find;
const smatch = string.match;
const ssub = string.sub;
const sbyte = string.byte;
const supper = string.upper;
const sformat = string.format;
const sgsub = string.gsub;
const concat = table.concat;
const tonum = tonumber;
const tostr = tostring;
const ltype = type;
const json_decode = cjson.decode;

/** Header value(s): a string, or a list when the name was repeated. Names keep their case. */
export type HeaderMap = { [name: string]: string | string[] };
/**
 * Headers to send: a flat list `[name1, value1, name2, value2, …]` in order. Flat, so a request
 * builds one table instead of one per header.
 */
export type HeaderList = string[];

/** One parsed server frame. `op` is upper-case whatever case the server used. */
export interface Frame {
    op: "INFO" | "MSG" | "HMSG" | "PING" | "PONG" | "+OK" | "-ERR";
    /** MSG/HMSG */
    subject?: string;
    sid?: string;
    reply?: string;
    payload?: string;
    /** HMSG: parsed header block */
    headers?: HeaderMap;
    /** HMSG: inline status code (`NATS/1.0 503` → 503), nil when absent */
    status?: number;
    description?: string;
    /** INFO: the decoded JSON object */
    info?: { [key: string]: unknown };
    /** -ERR: the message without quotes */
    message?: string;
}

export interface ParserOptions {
    /** Largest MSG/HMSG size accepted (bytes); bigger declarations are a protocol error. */
    max_payload?: number;
    /** Longest control line accepted without CRLF (bytes). */
    max_control_line?: number;
}

export interface Parser {
    feed(this: Parser, chunk: string): void;
    /** One frame, or (nil, nil) when more bytes are needed, or (nil, err) on malformed input (sticky). */
    next(this: Parser): LuaMultiReturn<[Frame, undefined] | [undefined, string | undefined]>;
    set_max_payload(this: Parser, n: number): void;
    /** Bytes buffered and not yet consumed. */
    buffered(this: Parser): number;
}

interface ParserState extends Parser {
    buf: string;
    pos: number;
    parts: string[];
    nparts: number;
    parts_len: number;
    /** Do not try to parse again until this many unconsumed bytes are available. */
    need: number;
    /** Offset from pos where the CRLF search resumes (avoids rescanning a long partial line). */
    scan: number;
    err: string | undefined;
    max_payload: number;
    max_control_line: number;
}

const DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024;
const DEFAULT_MAX_CONTROL_LINE = 4096;

// ---------------------------------------------------------------------------------------------
// Encoders
// ---------------------------------------------------------------------------------------------

export const PING = "PING\r\n";
export const PONG = "PONG\r\n";

export function ping(): string {
    return PING;
}

export function pong(): string {
    return PONG;
}

/** A subject/reply/queue token: non-empty, no whitespace or control characters. */
export function bad_token(s: unknown): boolean {
    return ltype(s) !== "string" || s === "" || sfind(s as string, "[%s%c]")[0] !== undefined;
}

function json_string(s: string): string {
    // Escape quote, backslash and control characters; everything else passes through as bytes.
    const [escaped] = sgsub(s, '[%c"\\]', (c: string) => {
        if (c === '"') return '\\"';
        if (c === "\\") return "\\\\";
        if (c === "\n") return "\\n";
        if (c === "\r") return "\\r";
        if (c === "\t") return "\\t";
        return sformat("\\u%04x", sbyte(c));
    });
    return '"' + escaped + '"';
}

export interface ConnectOptions {
    name?: string;
    lang?: string;
    version?: string;
    auth_token?: string;
    user?: string;
    pass?: string;
    /** nkey public key (`U...`) and the base64url signature of the INFO nonce */
    nkey?: string;
    sig?: string;
    jwt?: string;
    echo?: boolean;
    /** the connection was upgraded to TLS */
    tls_required?: boolean;
}

/** `CONNECT {json}\r\n` with a fixed key order (so the bytes are predictable in tests). */
export function connect(opts: ConnectOptions): string {
    const parts: string[] = [
        '"verbose":false',
        '"pedantic":false',
        opts.tls_required === true ? '"tls_required":true' : '"tls_required":false',
        '"headers":true',
        '"no_responders":true',
        // protocol 1: the server sends async INFO (connect_urls, lame-duck mode)
        '"protocol":1',
        '"lang":' + json_string(opts.lang !== undefined ? opts.lang : "lua"),
        '"version":' + json_string(opts.version !== undefined ? opts.version : "0.1.0"),
        '"name":' + json_string(opts.name !== undefined ? opts.name : "beamline-gateway"),
    ];
    if (opts.echo !== undefined) parts[parts.length] = '"echo":' + (opts.echo ? "true" : "false");
    if (opts.auth_token !== undefined) parts[parts.length] = '"auth_token":' + json_string(opts.auth_token);
    if (opts.user !== undefined) parts[parts.length] = '"user":' + json_string(opts.user);
    if (opts.pass !== undefined) parts[parts.length] = '"pass":' + json_string(opts.pass);
    if (opts.jwt !== undefined) parts[parts.length] = '"jwt":' + json_string(opts.jwt);
    if (opts.nkey !== undefined) parts[parts.length] = '"nkey":' + json_string(opts.nkey);
    if (opts.sig !== undefined) parts[parts.length] = '"sig":' + json_string(opts.sig);
    return "CONNECT {" + concat(parts, ",") + "}\r\n";
}

/** `SUB subject [queue] sid\r\n`, or (nil, err) for an invalid subject/queue/sid. */
export function sub(subject: string, sid: string | number, queue?: string): LuaMultiReturn<[string, undefined] | [undefined, string]> {
    if (bad_token(subject)) return $multi(undefined, "invalid subject");
    const sids = tostr(sid);
    if (bad_token(sids)) return $multi(undefined, "invalid sid");
    if (queue !== undefined && queue !== "") {
        if (bad_token(queue)) return $multi(undefined, "invalid queue group");
        return $multi("SUB " + subject + " " + queue + " " + sids + "\r\n", undefined);
    }
    return $multi("SUB " + subject + " " + sids + "\r\n", undefined);
}

/** `UNSUB sid [max]\r\n` */
export function unsub(sid: string | number, max?: number): string {
    if (max !== undefined) return "UNSUB " + tostr(sid) + " " + sformat("%d", max) + "\r\n";
    return "UNSUB " + tostr(sid) + "\r\n";
}

/** `PUB subject [reply] #bytes\r\npayload\r\n`, or (nil, err). */
export function pub(
    subject: string,
    reply: string | undefined,
    payload: string,
): LuaMultiReturn<[string, undefined] | [undefined, string]> {
    if (bad_token(subject)) return $multi(undefined, "invalid subject");
    if (reply !== undefined && reply !== "") {
        if (bad_token(reply)) return $multi(undefined, "invalid reply subject");
        return $multi("PUB " + subject + " " + reply + " " + payload.length + "\r\n" + payload + "\r\n", undefined);
    }
    return $multi("PUB " + subject + " " + payload.length + "\r\n" + payload + "\r\n", undefined);
}

// Reused across calls: nothing in here yields, so one buffer per worker is safe. A frame is
// built as parts in this buffer and joined once: string `+` chains would allocate every
// intermediate string (about ten per HPUB).
const fbuf: (string | number)[] = [];

// Header names already seen valid (callers use a handful of constant names): a table lookup
// instead of a pattern match per header per request. Bounded, so odd callers cannot grow it.
const valid_names: { [name: string]: true | undefined } = {};
let valid_name_count = 0;

function bad_header_name(name: unknown): boolean {
    if (ltype(name) !== "string") return true;
    if (valid_names[name as string] === true) return false;
    if (name === "" || sfind(name as string, "[%s%c:]")[0] !== undefined) return true;
    if (valid_name_count < 64) {
        valid_names[name as string] = true;
        valid_name_count++;
    }
    return false;
}

function bad_header_value(value: unknown): boolean {
    // Two plain searches are several times faster than one character-class pattern.
    return (
        ltype(value) !== "string" ||
        sfind(value as string, "\r", 1, true)[0] !== undefined ||
        sfind(value as string, "\n", 1, true)[0] !== undefined
    );
}

/**
 * Checks a flat name/value header list: names non-empty without CR, LF, ':' or whitespace;
 * values without CR or LF. Returns nil or an error.
 */
export function check_headers(headers: HeaderList | undefined): string | undefined {
    if (headers === undefined) return undefined;
    const n = headers.length;
    if (n % 2 !== 0) return "header list needs name/value pairs";
    for (let k = 0; k < n; k += 2) {
        if (bad_header_name(headers[k])) return "invalid header name: " + tostr(headers[k]);
        if (bad_header_value(headers[k + 1])) return "invalid header value for " + headers[k];
    }
    return undefined;
}

/**
 * Appends the header block (`NATS/1.0\r\n`, `name: value\r\n`…, blank line) of an already
 * checked header list to `fbuf` from Lua index `i` (1-based). Returns the next index and the
 * block's byte length.
 */
function fill_headers(i: number, headers: HeaderList | undefined): LuaMultiReturn<[number, number]> {
    fbuf[i - 1] = "NATS/1.0\r\n";
    i += 1;
    let len = 12; // "NATS/1.0\r\n" and the closing "\r\n"
    if (headers !== undefined) {
        const n = headers.length;
        for (let k = 0; k < n; k += 2) {
            const name = headers[k];
            const value = headers[k + 1];
            fbuf[i - 1] = name;
            fbuf[i] = ": ";
            fbuf[i + 1] = value;
            fbuf[i + 2] = "\r\n";
            i += 4;
            len += name.length + value.length + 4;
        }
    }
    fbuf[i - 1] = "\r\n";
    return $multi(i + 1, len);
}

/** Joins fbuf[1 .. last] (Lua indices) and drops the references it held. */
function take_frame(last: number): string {
    const frame = concat(fbuf as string[], "", 1, last);
    tableClear(fbuf);
    return frame;
}

/** The header block alone (for tests and tools); the same rules as in `hpub`. */
export function header_block(headers: HeaderList | undefined): LuaMultiReturn<[string, undefined] | [undefined, string]> {
    const err = check_headers(headers);
    if (err !== undefined) return $multi(undefined, err);
    const [next] = fill_headers(1, headers);
    return $multi(take_frame(next - 1), undefined);
}

/** The frame of `hpub` once its arguments are checked. */
function hpub_checked(
    subject: string,
    reply: string | undefined,
    headers: HeaderList | undefined,
    payload: string,
): LuaMultiReturn<[string, number]> {
    // Lua indices: 1 "HPUB ", 2 subject, 3 " ", [4 reply, 5 " "], then #hdr " " #total "\r\n".
    fbuf[0] = "HPUB ";
    fbuf[1] = subject;
    fbuf[2] = " ";
    let i = 4;
    if (reply !== undefined && reply !== "") {
        fbuf[3] = reply;
        fbuf[4] = " ";
        i = 6;
    }
    const hlen_at = i;
    fbuf[i] = " ";
    const total_at = i + 2;
    fbuf[i + 2] = "\r\n";
    const [next, hlen] = fill_headers(i + 4, headers);
    const total = hlen + payload.length;
    fbuf[hlen_at - 1] = hlen;
    fbuf[total_at - 1] = total;
    fbuf[next - 1] = payload;
    fbuf[next] = "\r\n";
    return $multi(take_frame(next + 1), total);
}

/**
 * `HPUB subject [reply] #hdr #total\r\n<headers><payload>\r\n`, checking the subject, the
 * reply subject and the headers first. Returns the frame and its total size (headers + payload:
 * what the server compares with max_payload), or (nil, err).
 */
export function hpub(
    subject: string,
    reply: string | undefined,
    headers: HeaderList | undefined,
    payload: string,
): LuaMultiReturn<[string, number] | [undefined, string]> {
    if (bad_token(subject)) return $multi(undefined, "invalid subject");
    if (reply !== undefined && reply !== "" && bad_token(reply)) return $multi(undefined, "invalid reply subject");
    const err = check_headers(headers);
    if (err !== undefined) return $multi(undefined, err);
    return hpub_checked(subject, reply, headers, payload);
}

/** Byte length of the header block `hpub` would write for an already checked header list. */
export function header_block_len(headers: HeaderList | undefined): number {
    let len = 12; // "NATS/1.0\r\n" and the closing "\r\n"
    if (headers !== undefined) {
        const n = headers.length;
        for (let k = 0; k < n; k += 2) len += headers[k].length + headers[k + 1].length + 4;
    }
    return len;
}

/**
 * The request hot path's HPUB: appends the frame's parts to `out` from (0-based) index `n`
 * instead of joining them, for a cosocket `send()` of the whole table (it takes strings and
 * numbers). No frame string is created: interning one ~0.5 KB string per request that differs
 * from the last only in a few bytes (ids, inbox token) cost 3–4 µs in LuaJIT's string table.
 * The reply subject is `reply_prefix .. reply_token`, also not joined. The caller has checked
 * the subject and headers and computed `hlen` with `header_block_len`. Returns the next index.
 */
export function append_hpub(
    out: (string | number)[],
    n: number,
    subject: string,
    reply_prefix: string,
    reply_token: string,
    headers: HeaderList | undefined,
    hlen: number,
    payload: string,
): number {
    out[n] = "HPUB ";
    out[n + 1] = subject;
    out[n + 2] = " ";
    out[n + 3] = reply_prefix;
    out[n + 4] = reply_token;
    out[n + 5] = " ";
    out[n + 6] = hlen;
    out[n + 7] = " ";
    out[n + 8] = hlen + payload.length;
    out[n + 9] = "\r\nNATS/1.0\r\n";
    return append_headers_payload(out, n + 10, headers, payload);
}

/** The header lines `name: value\r\n` of an HPUB frame and the blank line after them. */
function append_header_lines(out: (string | number)[], n: number, headers: HeaderList): number {
    const hn = headers.length;
    for (let k = 0; k < hn; k += 2) {
        out[n] = headers[k];
        out[n + 1] = ": ";
        out[n + 2] = headers[k + 1];
        out[n + 3] = "\r\n";
        n += 4;
    }
    out[n] = "\r\n";
    return n + 1;
}

/** The header lines, the blank line and the payload of an HPUB frame (after `NATS/1.0\r\n`). */
function append_headers_payload(out: (string | number)[], n: number, headers: HeaderList | undefined, payload: string): number {
    if (headers !== undefined) {
        n = append_header_lines(out, n, headers);
    } else {
        out[n] = "\r\n";
        n++;
    }
    out[n] = payload;
    out[n + 1] = "\r\n";
    return n + 2;
}

/**
 * A publish without a reply subject, as frame parts appended to `out` from (0-based) index `n`
 * (see append_hpub): `HPUB subject #hdr #total` when `headers` is given (`hlen` from
 * header_block_len), else `PUB subject #bytes`. The caller has checked subject and headers.
 * Returns the next index.
 */
export function append_pub(
    out: (string | number)[],
    n: number,
    subject: string,
    headers: HeaderList | undefined,
    hlen: number,
    payload: string,
): number {
    if (headers === undefined) {
        out[n] = "PUB ";
        out[n + 1] = subject;
        out[n + 2] = " ";
        out[n + 3] = payload.length;
        out[n + 4] = "\r\n";
        out[n + 5] = payload;
        out[n + 6] = "\r\n";
        return n + 7;
    }
    return append_headers_payload(out, append_hpub_line(out, n, subject, hlen, hlen + payload.length), headers, payload);
}

/** `HPUB subject #hdr #total\r\nNATS/1.0\r\n` of a publish without a reply subject. */
function append_hpub_line(out: (string | number)[], n: number, subject: string, hlen: number, total: number): number {
    out[n] = "HPUB ";
    out[n + 1] = subject;
    out[n + 2] = " ";
    out[n + 3] = hlen;
    out[n + 4] = " ";
    out[n + 5] = total;
    out[n + 6] = "\r\nNATS/1.0\r\n";
    return n + 7;
}

/**
 * append_pub with the payload given as `np` string parts (`parts[0..np-1]`, 0-based) of `plen`
 * bytes in all: the payload is never joined into one string (see append_hpub). Returns the next
 * index.
 */
export function append_pub_parts(
    out: (string | number)[],
    n: number,
    subject: string,
    headers: HeaderList,
    hlen: number,
    parts: string[],
    np: number,
    plen: number,
): number {
    n = append_header_lines(out, append_hpub_line(out, n, subject, hlen, hlen + plen), headers);
    for (let i = 0; i < np; i++) {
        out[n] = parts[i];
        n++;
    }
    out[n] = "\r\n";
    return n + 1;
}

// ---------------------------------------------------------------------------------------------
// Header block parser
// ---------------------------------------------------------------------------------------------

function add_header(headers: HeaderMap, name: string, value: string): void {
    const prev = headers[name];
    if (prev === undefined) {
        headers[name] = value;
    } else if (ltype(prev) === "string") {
        headers[name] = [prev as string, value];
    } else {
        const list = prev as string[];
        list[list.length] = value;
    }
}

/**
 * Parses bytes [s, e] of `buf` as a header block into `frame.headers/status/description`.
 * Returns an error string or nil.
 */
function parse_header_block_into(frame: Frame, buf: string, s: number, e: number): string | undefined {
    // "NATS/1.0" + "\r\n\r\n" at the very least
    if (e - s + 1 < 12) return "header block too short";
    if (ssub(buf, s, s + 7) !== "NATS/1.0") return "header block without NATS/1.0";
    if (ssub(buf, e - 3, e) !== "\r\n\r\n") return "header block not terminated by CRLFCRLF";
    const [lend] = sfind(buf, "\r\n", s, true);
    const status_line_end = (lend as number) - 1;
    const headers: HeaderMap = {};
    frame.headers = headers;
    if (status_line_end > s + 7) {
        // NATS/1.0 <code>[ <description>]
        const rest = ssub(buf, s + 8, status_line_end);
        const [code, desc] = smatch(rest, "^[ \t]+(%d%d%d)[ \t]*(.-)[ \t]*$");
        if (code === undefined) {
            if (sfind(rest, "^[ \t]*$")[0] === undefined) return "bad header status line";
        } else {
            frame.status = tonum(code);
            if (desc !== undefined && desc !== "") frame.description = desc;
        }
    }
    let p = (lend as number) + 2;
    // the final "\r\n" (the blank line) starts at e - 1
    while (p < e - 1) {
        const [le] = sfind(buf, "\r\n", p, true);
        const line_end = (le as number) - 1;
        const [colon] = sfind(buf, ":", p, true);
        if (colon === undefined || colon > line_end) return "bad header line";
        const name = ssub(buf, p, colon - 1);
        if (name === "" || sfind(name, "[%s%c]")[0] !== undefined) return "bad header name";
        const raw = ssub(buf, colon + 1, line_end);
        // a bare CR or LF inside a header line is malformed, not a line break
        if (sfind(raw, "[\r\n]")[0] !== undefined) return "bad header value";
        const [value] = smatch(raw, "^[ \t]*(.-)[ \t]*$");
        add_header(headers, name, value as string);
        p = (le as number) + 2;
    }
    return undefined;
}

/** Parses a complete header block (`NATS/1.0[ code[ description]]\r\n...\r\n\r\n`). */
export function parse_headers(
    block: string,
): LuaMultiReturn<[{ headers: HeaderMap; status?: number; description?: string }, undefined] | [undefined, string]> {
    const frame: Frame = { op: "HMSG" };
    const err = parse_header_block_into(frame, block, 1, block.length);
    if (err !== undefined) return $multi(undefined, err);
    return $multi({ headers: frame.headers as HeaderMap, status: frame.status, description: frame.description }, undefined);
}

// ---------------------------------------------------------------------------------------------
// Incremental frame parser
// ---------------------------------------------------------------------------------------------

// Shared read-only frames for the argument-less ops.
const FRAME_PING: Frame = { op: "PING" };
const FRAME_PONG: Frame = { op: "PONG" };
const FRAME_OK: Frame = { op: "+OK" };

// Argument tokens of the current control line (reused; control lines have at most 6 tokens).
const toks: string[] = [];

/** Splits `line` on spaces/tabs into `toks`; returns the count (stops counting past 8). */
function tokenize(line: string): number {
    let n = 0;
    let i = 1;
    while (n < 8) {
        const [s, e] = sfind(line, "[^ \t]+", i);
        if (s === undefined) break;
        toks[n] = ssub(line, s, e as number);
        n++;
        i = (e as number) + 1;
    }
    return n;
}

function parse_size(s: string, max: number): number | undefined {
    // digits only (so no sign, no hex, no exponent) and a bounded length before tonumber
    if (s.length > 15 || sfind(s, "^%d+$")[0] === undefined) return undefined;
    const n = tonum(s) as number;
    if (n > max) return undefined;
    return n;
}

/** Consumes up to (not including) byte index `np` of the buffer. */
function advance(p: ParserState, np: number): void {
    p.need = 0;
    if (np > p.buf.length) {
        // release the (possibly big) buffer as soon as it is fully consumed
        p.buf = "";
        p.pos = 1;
    } else {
        p.pos = np;
    }
}

function fail(p: ParserState, err: string): LuaMultiReturn<[undefined, string]> {
    p.err = err;
    // drop buffered bytes: the stream is unusable after a protocol error
    p.buf = "";
    p.pos = 1;
    tableClear(p.parts);
    p.nparts = 0;
    p.parts_len = 0;
    return $multi(undefined, err);
}

function parser_feed(this: ParserState, chunk: string): void {
    if (this.err !== undefined || chunk === "") return;
    const n = this.nparts + 1;
    this.parts[n - 1] = chunk;
    this.nparts = n;
    this.parts_len += chunk.length;
}

function parser_buffered(this: ParserState): number {
    return this.buf.length - this.pos + 1 + this.parts_len;
}

function parser_set_max_payload(this: ParserState, n: number): void {
    this.max_payload = n;
}

function parser_next(this: ParserState): LuaMultiReturn<[Frame, undefined] | [undefined, string | undefined]> {
    if (this.err !== undefined) return $multi(undefined, this.err);
    let buf = this.buf;
    let pos = this.pos;
    const avail = buf.length - pos + 1 + this.parts_len;
    if (avail === 0 || avail < this.need) return $multi(undefined, undefined);
    if (this.nparts > 0) {
        // Merge pending chunks only once enough bytes are there (keeps big payloads O(n)).
        const tail = concat(this.parts, "", 1, this.nparts);
        buf = pos > buf.length ? tail : ssub(buf, pos) + tail;
        pos = 1;
        this.buf = buf;
        this.pos = 1;
        tableClear(this.parts);
        this.nparts = 0;
        this.parts_len = 0;
    }
    const blen = buf.length;

    // Control line
    const [crlf] = sfind(buf, "\r\n", pos + this.scan, true);
    if (crlf === undefined) {
        if (avail > this.max_control_line) return fail(this, "control line too long");
        // resume the search at the last byte (it may be the '\r' of a split CRLF)
        this.scan = avail > 1 ? avail - 1 : 0;
        this.need = avail + 1;
        return $multi(undefined, undefined);
    }
    if (crlf - pos > this.max_control_line) return fail(this, "control line too long");
    this.scan = 0;
    const line = ssub(buf, pos, crlf - 1);
    const ntok = tokenize(line);
    if (ntok === 0) return fail(this, "empty control line");
    const op = supper(toks[0]);
    const after = crlf + 2;

    if (op === "MSG" || op === "HMSG") {
        const is_h = op === "HMSG";
        let reply: string | undefined;
        let hdr = 0;
        let size: number | undefined;
        const maxp = this.max_payload;
        if (is_h) {
            if (ntok !== 5 && ntok !== 6) return fail(this, "bad HMSG arguments");
            const h = parse_size(toks[ntok - 2], maxp);
            size = parse_size(toks[ntok - 1], maxp);
            if (h === undefined || size === undefined) return fail(this, "bad HMSG size");
            if (h > size) return fail(this, "HMSG header size exceeds total size");
            if (h < 12) return fail(this, "HMSG header size too small");
            hdr = h;
            if (ntok === 6) reply = toks[3];
        } else {
            if (ntok !== 4 && ntok !== 5) return fail(this, "bad MSG arguments");
            size = parse_size(toks[ntok - 1], maxp);
            if (size === undefined) return fail(this, "bad MSG size");
            if (ntok === 5) reply = toks[3];
        }
        const pend = after + size; // index of the '\r' after the payload
        if (pend + 1 > blen) {
            this.need = pend + 1 - pos + 1;
            return $multi(undefined, undefined);
        }
        if (sbyte(buf, pend) !== 13 || sbyte(buf, pend + 1) !== 10) return fail(this, "missing CRLF after payload");
        const frame: Frame = { op: op as "MSG" | "HMSG", subject: toks[1], sid: toks[2], reply: reply };
        if (is_h) {
            const herr = parse_header_block_into(frame, buf, after, after + hdr - 1);
            if (herr !== undefined) return fail(this, herr);
            frame.payload = size > hdr ? ssub(buf, after + hdr, pend - 1) : "";
        } else {
            frame.payload = size > 0 ? ssub(buf, after, pend - 1) : "";
        }
        advance(this, pend + 2);
        return $multi(frame, undefined);
    }

    let frame: Frame;
    if (op === "PING" || op === "PONG" || op === "+OK") {
        if (ntok !== 1) return fail(this, "unexpected arguments to " + op);
        frame = op === "PING" ? FRAME_PING : op === "PONG" ? FRAME_PONG : FRAME_OK;
    } else if (op === "INFO") {
        const [js] = smatch(line, "^[ \t]*[^ \t]+[ \t]+(.-)[ \t]*$");
        if (js === undefined || js === "") return fail(this, "INFO without JSON");
        const [info] = json_decode(js);
        if (ltype(info) !== "table") return fail(this, "INFO with invalid JSON");
        frame = { op: "INFO", info: info as { [key: string]: unknown } };
    } else if (op === "-ERR") {
        const [msg] = smatch(line, "^[ \t]*[^ \t]+[ \t]*(.-)[ \t]*$");
        let m = msg as string;
        if (m.length >= 2 && ssub(m, 1, 1) === "'" && ssub(m, -1) === "'") m = ssub(m, 2, -2);
        frame = { op: "-ERR", message: m };
    } else {
        return fail(this, "unknown protocol operation");
    }
    advance(this, after);
    return $multi(frame, undefined);
}

export function new_parser(opts?: ParserOptions): Parser {
    const p: ParserState = {
        buf: "",
        pos: 1,
        parts: [],
        nparts: 0,
        parts_len: 0,
        need: 0,
        scan: 0,
        err: undefined,
        max_payload: opts !== undefined && opts.max_payload !== undefined ? opts.max_payload : DEFAULT_MAX_PAYLOAD,
        max_control_line: opts !== undefined && opts.max_control_line !== undefined ? opts.max_control_line : DEFAULT_MAX_CONTROL_LINE,
        feed: parser_feed,
        next: parser_next as (this: Parser) => LuaMultiReturn<[Frame, undefined] | [undefined, string | undefined]>,
        set_max_payload: parser_set_max_payload,
        buffered: parser_buffered,
    };
    return p;
}
