/** @noSelfInFile */
/**
 * Typings for the lua-nginx-module (OpenResty) API the gateway uses.
 *
 * Conventions (TypeScriptToLua):
 * - `noImplicitSelf` is on for the project, so every function declared here is called with `.`
 *   (`ngx.say(x)`), unless its first parameter is `this: T`, which makes it a method called with
 *   `:` (`sock:send(x)`). Cosockets, semaphores and shared dicts are methods; everything on the
 *   `ngx` table is a free function.
 * - APIs that return `ok, err` (or `value, err`) are typed as `LuaMultiReturn<[...]>`; destructure
 *   them: `const [ok, err] = sock.connect(host, port)`.
 * - `ngx.null` and `cjson.null` are light userdata, typed as the opaque `NgxNull`: compare with
 *   `=== ngx.null`, never test for truthiness (it is truthy in Lua).
 */

/** The `ngx.null` / `cjson.null` light userdata. Truthy in Lua. */
declare interface NgxNull {
    readonly __ngxNullBrand: unique symbol;
}

/** A light thread handle returned by `ngx.thread.spawn`. */
declare interface NgxThread {
    readonly __ngxThreadBrand: unique symbol;
}

/** Multi-value headers come back as arrays of strings. */
declare type NgxHeaderValue = string | string[];
/** What a cosocket `send()` takes inside a table: strings, numbers and nested tables of them. */
declare type NgxSendFragment = string | number | NgxSendFragment[];

/** A non-blocking TCP cosocket (`ngx.socket.tcp()`). Owned by the request or timer that made it. */
declare interface NgxTcpSocket {
    /** Connects; returns 1 on success or nil and an error string. */
    connect(
        this: NgxTcpSocket,
        host: string,
        port: number,
        options?: { pool?: string; pool_size?: number; backlog?: number },
    ): LuaMultiReturn<[1, undefined] | [undefined, string]>;
    /** TLS handshake on a connected socket. */
    sslhandshake(
        this: NgxTcpSocket,
        reused_session: undefined | boolean,
        server_name?: string,
        ssl_verify?: boolean,
        send_status_req?: boolean,
    ): LuaMultiReturn<[unknown, undefined] | [undefined, string]>;
    /**
     * Client certificate for the next sslhandshake (lua-resty-core ≥ 0.1.24 / lua-nginx-module
     * ≥ 0.10.23): `cert` from `ngx.ssl.parse_pem_cert`, `pkey` from `ngx.ssl.parse_pem_priv_key`.
     */
    setclientcert(this: NgxTcpSocket, cert: unknown, pkey: unknown): LuaMultiReturn<[true, undefined] | [undefined, string]>;
    /**
     * Sends a string, or a (1-based, hole-free) array of fragments in one write: strings, numbers
     * (written as `tostring` would) and nested arrays. Returns bytes sent or nil, err.
     */
    send(this: NgxTcpSocket, data: string | NgxSendFragment[]): LuaMultiReturn<[number, undefined] | [undefined, string]>;
    /**
     * Reads by pattern: `"*l"` a line, `"*a"` all, or a byte count. On error returns nil, err and
     * the partial data (which is then lost to later reads).
     */
    receive(
        this: NgxTcpSocket,
        pattern?: "*l" | "*a" | number,
    ): LuaMultiReturn<[string, undefined, undefined] | [undefined, string, string | undefined]>;
    /** Returns whatever is available, up to `max` bytes, as soon as anything arrives. */
    receiveany(this: NgxTcpSocket, max: number): LuaMultiReturn<[string, undefined] | [undefined, string]>;
    /** One timeout (ms) for connect, send and read. */
    settimeout(this: NgxTcpSocket, ms: number): void;
    /** Separate connect, send and read timeouts (ms). */
    settimeouts(this: NgxTcpSocket, connect_ms: number, send_ms: number, read_ms: number): void;
    setoption(
        this: NgxTcpSocket,
        option: "keepalive" | "reuseaddr" | "tcp-nodelay" | "sndbuf" | "rcvbuf",
        value: number | boolean,
    ): LuaMultiReturn<[1, undefined] | [undefined, string]>;
    setkeepalive(this: NgxTcpSocket, max_idle_ms?: number, pool_size?: number): LuaMultiReturn<[1, undefined] | [undefined, string]>;
    getreusedtimes(this: NgxTcpSocket): LuaMultiReturn<[number, undefined] | [undefined, string]>;
    close(this: NgxTcpSocket): LuaMultiReturn<[1, undefined] | [undefined, string]>;
}

/** A `lua_shared_dict` zone: one store shared by all workers. */
declare interface NgxSharedDict {
    get(this: NgxSharedDict, key: string): LuaMultiReturn<[string | number | boolean | undefined, number | undefined]>;
    get_stale(this: NgxSharedDict, key: string): LuaMultiReturn<[string | number | boolean | undefined, number | undefined, boolean]>;
    /** Returns success, err, forcible (another key was evicted to make room). */
    set(
        this: NgxSharedDict,
        key: string,
        value: string | number | boolean | undefined,
        exptime?: number,
        flags?: number,
    ): LuaMultiReturn<[boolean, string | undefined, boolean]>;
    /** Like set, but never evicts: fails with "no memory" instead. */
    safe_set(
        this: NgxSharedDict,
        key: string,
        value: string | number | boolean | undefined,
        exptime?: number,
        flags?: number,
    ): LuaMultiReturn<[boolean, string | undefined]>;
    /** Stores only when the key is absent: err "exists" otherwise. */
    add(
        this: NgxSharedDict,
        key: string,
        value: string | number | boolean,
        exptime?: number,
        flags?: number,
    ): LuaMultiReturn<[boolean, string | undefined, boolean]>;
    safe_add(
        this: NgxSharedDict,
        key: string,
        value: string | number | boolean,
        exptime?: number,
        flags?: number,
    ): LuaMultiReturn<[boolean, string | undefined]>;
    replace(
        this: NgxSharedDict,
        key: string,
        value: string | number | boolean,
        exptime?: number,
        flags?: number,
    ): LuaMultiReturn<[boolean, string | undefined, boolean]>;
    delete(this: NgxSharedDict, key: string): void;
    /** Atomic add; with `init` it creates a missing key (with `init_ttl` seconds to live). */
    incr(
        this: NgxSharedDict,
        key: string,
        value: number,
        init?: number,
        init_ttl?: number,
    ): LuaMultiReturn<[number, undefined, boolean] | [undefined, string, boolean]>;
    /** Remaining seconds to live: 0 = never expires, below 0 = expired (not yet removed); nil, "not found" when absent. */
    ttl(this: NgxSharedDict, key: string): LuaMultiReturn<[number, undefined] | [undefined, string]>;
    expire(this: NgxSharedDict, key: string, exptime: number): LuaMultiReturn<[boolean, string | undefined]>;
    get_keys(this: NgxSharedDict, max_count?: number): string[];
    flush_all(this: NgxSharedDict): void;
    flush_expired(this: NgxSharedDict, max_count?: number): number;
    capacity(this: NgxSharedDict): number;
    free_space(this: NgxSharedDict): number;
}

declare interface NgxReMatchCaptures {
    [index: number]: string | false | undefined;
    [name: string]: string | false | undefined;
}

/** @noSelf */
declare interface NgxReApi {
    /** PCRE match; returns the captures (index 0 = whole match) or nil, and an error on failure. */
    match(
        subject: string,
        regex: string,
        options?: string,
        ctx?: { pos?: number },
        res?: NgxReMatchCaptures,
    ): LuaMultiReturn<[NgxReMatchCaptures | undefined, string | undefined]>;
    /** Returns the 1-based start and end of the match, or nil. */
    find(
        subject: string,
        regex: string,
        options?: string,
        ctx?: { pos?: number },
        nth?: number,
    ): LuaMultiReturn<[number | undefined, number | undefined, string | undefined]>;
    sub(
        subject: string,
        regex: string,
        replace: string,
        options?: string,
    ): LuaMultiReturn<[string | undefined, number, string | undefined]>;
    gsub(
        subject: string,
        regex: string,
        replace: string,
        options?: string,
    ): LuaMultiReturn<[string | undefined, number, string | undefined]>;
}

/** @noSelf */
declare interface NgxReqApi {
    /** Request headers, names lower-cased; multi-value headers are arrays. err is "truncated" past `max`. */
    get_headers(max?: number, raw?: boolean): LuaMultiReturn<[{ [name: string]: NgxHeaderValue | undefined }, string | undefined]>;
    get_method(): string;
    get_uri_args(
        max?: number,
    ): LuaMultiReturn<[{ [name: string]: string | boolean | (string | boolean)[] | undefined }, string | undefined]>;
    /** Reads the client body into memory or a temp file (yields). */
    read_body(): void;
    /** The in-memory body, or nil when there is none or it went to a file. */
    get_body_data(max_bytes?: number): string | undefined;
    /** The temp file holding the body, when nginx buffered it to disk. */
    get_body_file(): string | undefined;
    discard_body(): void;
    http_version(): number | undefined;
    start_time(): number;
    /** True for a request that reached its location by an internal redirect (error_page, ngx.exec). */
    is_internal(): boolean;
    set_header(name: string, value: string | string[] | undefined): void;
    clear_header(name: string): void;
}

/** @noSelf */
declare interface NgxRespApi {
    get_headers(max?: number, raw?: boolean): LuaMultiReturn<[{ [name: string]: NgxHeaderValue | undefined }, string | undefined]>;
}

/** @noSelf */
declare interface NgxThreadApi {
    /** Starts a light thread running `fn(...args)` in the current request or timer. */
    spawn<A extends unknown[]>(fn: (...args: A) => unknown, ...args: A): NgxThread;
    /** Waits for any of the threads; returns true plus its results, or false plus an error. */
    wait(...threads: NgxThread[]): LuaMultiReturn<[boolean, ...unknown[]]>;
    kill(thread: NgxThread): LuaMultiReturn<[boolean, string | undefined]>;
}

/** @noSelf */
declare interface NgxTimerApi {
    /** Runs `cb(premature, ...args)` after `delay` seconds in a detached context. */
    at<A extends unknown[]>(
        delay: number,
        cb: (premature: boolean, ...args: A) => void,
        ...args: A
    ): LuaMultiReturn<[true, undefined] | [undefined, string]>;
    every<A extends unknown[]>(
        delay: number,
        cb: (premature: boolean, ...args: A) => void,
        ...args: A
    ): LuaMultiReturn<[true, undefined] | [undefined, string]>;
    running_count(): number;
    pending_count(): number;
}

/** @noSelf */
declare interface NgxWorkerApi {
    /** True once this worker is shutting down (reload or quit). */
    exiting(): boolean;
    pid(): number;
    /** 0-based worker index, or nil outside a worker process. */
    id(): number | undefined;
    count(): number;
}

/** @noSelf */
declare interface NgxSocketApi {
    tcp(): NgxTcpSocket;
}

/** @noSelf */
declare interface NgxConfigApi {
    readonly subsystem: "http" | "stream";
    readonly debug: boolean;
    readonly nginx_version: number;
    readonly ngx_lua_version: number;
    prefix(): string;
    nginx_configure(): string;
}

/** @noSelf */
declare interface NgxApi {
    readonly OK: 0;
    readonly ERROR: -1;
    readonly AGAIN: -2;
    readonly DONE: -4;
    readonly DECLINED: -5;
    readonly HTTP_OK: 200;
    readonly HTTP_NOT_FOUND: 404;
    readonly HTTP_INTERNAL_SERVER_ERROR: 500;
    readonly STDERR: number;
    readonly EMERG: number;
    readonly ALERT: number;
    readonly CRIT: number;
    readonly ERR: number;
    readonly WARN: number;
    readonly NOTICE: number;
    readonly INFO: number;
    readonly DEBUG: number;

    /** The JSON/Lua null sentinel (light userdata, truthy in Lua). */
    readonly null: NgxNull;

    /** Per-request context table: lives for the request, shared by its phases. */
    ctx: { [key: string]: unknown };
    /** Response status; assign before the headers are sent. */
    status: number;
    /** Response headers; assign `undefined` to clear one. */
    header: { [name: string]: string | string[] | number | undefined };
    /** nginx variables (`$name`); assignable only for variables declared with `set`. */
    var: { [name: string]: string | undefined };

    req: NgxReqApi;
    resp: NgxRespApi;
    re: NgxReApi;
    thread: NgxThreadApi;
    timer: NgxTimerApi;
    worker: NgxWorkerApi;
    socket: NgxSocketApi;
    config: NgxConfigApi;
    /** `lua_shared_dict` zones by name. */
    shared: { [zone: string]: NgxSharedDict | undefined };

    log(level: number, ...parts: unknown[]): void;
    /** Writes the arguments (plus a newline for say) to the response body. */
    say(...parts: unknown[]): LuaMultiReturn<[1, undefined] | [undefined, string]>;
    print(...parts: unknown[]): LuaMultiReturn<[1, undefined] | [undefined, string]>;
    flush(wait?: boolean): LuaMultiReturn<[1, undefined] | [undefined, string]>;
    /** Ends the request (status >= 200) or the current phase (ngx.OK). */
    exit(status: number): never;
    eof(): LuaMultiReturn<[1, undefined] | [undefined, string]>;
    send_headers(): LuaMultiReturn<[1, undefined] | [undefined, string]>;
    headers_sent: boolean;
    sleep(seconds: number): void;
    /** Cached time in seconds with millisecond precision. */
    now(): number;
    time(): number;
    update_time(): void;
    today(): string;
    utctime(): string;
    localtime(): string;
    http_time(sec: number): string;
    get_phase(): string;
    on_abort(cb: () => void): LuaMultiReturn<[1, undefined] | [undefined, string]>;
    md5(str: string): string;
    md5_bin(str: string): string;
    sha1_bin(str: string): string;
    hmac_sha1(key: string, str: string): string;
    crc32_short(str: string): number;
    crc32_long(str: string): number;
    encode_base64(str: string, no_padding?: boolean): string;
    decode_base64(str: string): string | undefined;
    escape_uri(str: string, type?: 0 | 2): string;
    unescape_uri(str: string): string;
}

declare const ngx: NgxApi;

/** `require("ngx.semaphore")` from lua-resty-core. */
declare interface NgxSemaphore {
    /** Wakes up to `n` waiters (default 1), or banks the resource if nobody waits. */
    post(this: NgxSemaphore, n?: number): void;
    /** Waits up to `timeout` seconds; returns true, or false and "timeout". */
    wait(this: NgxSemaphore, timeout: number): LuaMultiReturn<[true, undefined] | [false, string]>;
    /** Resources available (> 0) or waiters (< 0). */
    count(this: NgxSemaphore): number;
}

declare module "ngx.semaphore" {
    function new_(n?: number): LuaMultiReturn<[NgxSemaphore, undefined] | [undefined, string]>;
    export { new_ as new };
}

declare module "ngx.process" {
    function type(): "master" | "worker" | "single" | "signaller" | "privileged agent";
    function get_master_pid(): number | undefined;
}

declare module "ngx.base64" {
    function encode_base64url(str: string): string;
    function decode_base64url(str: string): LuaMultiReturn<[string, undefined] | [undefined, string]>;
}

/** LuaJIT's `table.new(narr, nrec)`: a pre-sized table. */
declare module "table.new" {
    function tableNew<T = unknown>(narr: number, nrec: number): T;
    export = tableNew;
}

/** LuaJIT's `table.clear(t)`: empties a table but keeps its allocated size. */
declare module "table.clear" {
    function tableClear(t: object): void;
    export = tableClear;
}
