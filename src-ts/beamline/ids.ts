/**
 * beamline.ids — random identifiers and the id/header validators of CONTRACT §2 and §10.
 *
 * Randomness comes from /dev/urandom, read in 4096-byte blocks through `io.open` (one open per
 * block, no descriptor kept across fork). The block is tagged with the pid that read it: a worker
 * never consumes bytes buffered by the master or a sibling, so ids do not collide across workers;
 * /dev/urandom makes them distinct across restarts. Without /dev/urandom a non-cryptographic
 * fallback (math.random seeded from time, pid, clock and a heap address, reseeded per pid) is
 * used and a warning is logged once.
 */

const byte = string.byte;
const sub = string.sub;
const find = string.find;
const match = string.match;
const lower = string.lower;
const format = string.format;
const gsub = string.gsub;
const rep = string.rep;
const char = string.char;
const floor = math.floor;

const BLOCK = 4096;

let buf = "";
let pos = 1; // next unread byte of buf (1-based)
let buf_pid = -1;
let fallback_seeded_pid = -1;
let warned = false;

function get_pid(): number {
    // `ngx` is absent under plain LuaJIT; read it without touching an undeclared global.
    const n = rawget(_G as unknown as { ngx?: NgxApi }, "ngx");
    if (n !== undefined && n.worker !== undefined) {
        return n.worker.pid();
    }
    return 0;
}

function now(): number {
    const n = rawget(_G as unknown as { ngx?: NgxApi }, "ngx");
    if (n !== undefined && n.now !== undefined) {
        return n.now();
    }
    return os.time();
}

function read_urandom(): string | undefined {
    const [f] = io.open("/dev/urandom", "rb");
    if (f === undefined) {
        return undefined;
    }
    const data = f.read(BLOCK) as string | undefined;
    f.close();
    if (data === undefined || data.length !== BLOCK) {
        return undefined;
    }
    return data;
}

function fallback_block(pid: number): string {
    if (fallback_seeded_pid !== pid) {
        const addr = tonumber(match(tostring({}), "0x(%x+)")[0] ?? "0", 16) ?? 0;
        math.randomseed((floor(now() * 1000) + pid * 65537 + floor(os.clock() * 1e6) + addr) % 2147483647);
        fallback_seeded_pid = pid;
        if (!warned) {
            warned = true;
            const n = rawget(_G as unknown as { ngx?: NgxApi }, "ngx");
            if (n !== undefined && n.log !== undefined) {
                n.log(n.WARN, "beamline.ids: /dev/urandom unavailable, using a non-cryptographic fallback");
            }
        }
    }
    const parts: string[] = [];
    for (let i = 0; i < BLOCK / 8; i++) {
        parts.push(
            char(
                math.random(0, 255),
                math.random(0, 255),
                math.random(0, 255),
                math.random(0, 255),
                math.random(0, 255),
                math.random(0, 255),
                math.random(0, 255),
                math.random(0, 255),
            ),
        );
    }
    return table.concat(parts);
}

// Ensures n bytes (n <= BLOCK) are available at `pos` for this process; returns their start.
function take(n: number): number {
    const pid = get_pid();
    if (pid !== buf_pid || pos + n - 1 > BLOCK) {
        const data = read_urandom();
        buf = data !== undefined ? data : fallback_block(pid);
        buf_pid = pid;
        pos = 1;
    }
    const p = pos;
    pos = p + n;
    return p;
}

/** `n` random bytes as a binary string ("" for n < 1). */
function random_bytes(n: number): string {
    if (n > BLOCK) {
        const parts: string[] = [];
        let left = n;
        while (left > 0) {
            const k = left > BLOCK ? BLOCK : left;
            parts.push(random_bytes(k));
            left -= k;
        }
        return table.concat(parts);
    }
    if (!(n >= 1)) {
        return "";
    }
    const p = take(n);
    return sub(buf, p, p + n - 1);
}

const HEX: { [c: string]: string } = {};
for (let i = 0; i < 256; i++) {
    HEX[char(i)] = format("%02x", i);
}

/** `n` random bytes as 2n lowercase hex characters. */
function random_hex(n: number): string {
    const [s] = gsub(random_bytes(n), ".", HEX);
    return s;
}

/** A new trace id: 32 lowercase hex characters (128 random bits). */
const HEX16_FMT = rep("%02x", 16);

function new_trace_id(): string {
    // One format call over 16 random bytes (random_hex's gsub walk is ~3x slower).
    const p = take(16);
    const [b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16] = byte(buf, p, p + 15);
    return format(HEX16_FMT, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16);
}

const UUID_FMT = "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x";

const HEX8_FMT = rep("%02x", 8);

/** A new span id: 16 lowercase hex characters (64 random bits). */
function new_span_id(): string {
    const p = take(8);
    const [b1, b2, b3, b4, b5, b6, b7, b8] = byte(buf, p, p + 7);
    return format(HEX8_FMT, b1, b2, b3, b4, b5, b6, b7, b8);
}

/** A random RFC 4122 version-4 UUID, lowercase. */
function uuid4(): string {
    const p = take(16);
    const [b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16] = byte(buf, p, p + 15);
    return format(
        UUID_FMT,
        b1,
        b2,
        b3,
        b4,
        b5,
        b6,
        (b7 % 16) + 0x40,
        b8, // version 4
        (b9 % 64) + 0x80,
        b10, // RFC 4122 variant
        b11,
        b12,
        b13,
        b14,
        b15,
        b16,
    );
}

const HEX32_PATTERN = "^" + rep("%x", 32) + "$";
const UUID_PATTERN = "^" + rep("%x", 8) + "%-" + rep("%x", 4) + "%-" + rep("%x", 4) + "%-" + rep("%x", 4) + "%-" + rep("%x", 12) + "$";

/**
 * CONTRACT §2 trace id: 32 hex characters or a UUID (8-4-4-4-12 hex), any case.
 * Returns it lower-cased (keeping its form), or nil when invalid or not a string.
 */
function normalize_trace_id(s: unknown): string | undefined {
    if (typeof s !== "string") {
        return undefined;
    }
    const len = s.length;
    if ((len === 32 && find(s, HEX32_PATTERN)[0] !== undefined) || (len === 36 && find(s, UUID_PATTERN)[0] !== undefined)) {
        return lower(s);
    }
    return undefined;
}

const LHEX = "[0-9a-f]";
const TRACEPARENT_PATTERN = "^(" + LHEX + LHEX + ")%-(" + rep(LHEX, 32) + ")%-(" + rep(LHEX, 16) + ")%-" + LHEX + LHEX;
const ZERO_TRACE = rep("0", 32);
const ZERO_PARENT = rep("0", 16);

/**
 * CONTRACT §10 W3C traceparent. Version `00`: exactly 55 characters
 * `00-<32 lowercase hex trace id>-<16 lowercase hex parent id>-<2 lowercase hex flags>`;
 * other versions (lowercase hex, not `ff`): the first 55 characters must parse so, and the whole
 * value must be printable ASCII (it is forwarded verbatim as a NATS header). Trace and parent
 * ids must not be all zeros. Returns the trace id (32 lowercase hex) or nil.
 */
function parse_traceparent(s: unknown): string | undefined {
    if (typeof s !== "string") {
        return undefined;
    }
    const len = s.length;
    if (len < 55) {
        return undefined;
    }
    const [version, trace_id, parent_id] = match(s, TRACEPARENT_PATTERN);
    if (version === undefined || version === "ff") {
        return undefined;
    }
    if (len !== 55 && (version === "00" || find(s, "[^ -~]")[0] !== undefined)) {
        return undefined;
    }
    if (trace_id === ZERO_TRACE || parent_id === ZERO_PARENT) {
        return undefined;
    }
    return trace_id;
}

/**
 * W3C tracestate, CONTRACT §10: 1..512 printable ASCII characters (0x20-0x7E). An empty value
 * is treated as absent (W3C), so it is not valid for forwarding.
 */
function valid_tracestate(s: unknown): boolean {
    return typeof s === "string" && s.length >= 1 && s.length <= 512 && find(s, "[^ -~]")[0] === undefined;
}

/** X-Tenant-ID / tenant_id, CONTRACT §2: 1..128 characters of [A-Za-z0-9._:-]. */
function valid_tenant_id(s: unknown): boolean {
    return typeof s === "string" && s.length >= 1 && s.length <= 128 && find(s, "[^A-Za-z0-9._:%-]")[0] === undefined;
}

/** X-Request-ID / request_id, CONTRACT §10: 1..128 printable ASCII characters, no spaces (0x21-0x7E). */
function valid_request_id(s: unknown): boolean {
    return typeof s === "string" && s.length >= 1 && s.length <= 128 && find(s, "[^!-~]")[0] === undefined;
}

/** Idempotency-Key, CONTRACT §2/§10: 1..256 printable ASCII characters (0x20-0x7E, spaces allowed). */
function valid_idempotency_key(s: unknown): boolean {
    return typeof s === "string" && s.length >= 1 && s.length <= 256 && find(s, "[^ -~]")[0] === undefined;
}

export {
    random_bytes,
    random_hex,
    new_trace_id,
    new_span_id,
    uuid4,
    normalize_trace_id,
    parse_traceparent,
    valid_tracestate,
    valid_tenant_id,
    valid_request_id,
    valid_idempotency_key,
};
