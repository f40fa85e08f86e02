/**
 * The validated gateway config, as rendered by scripts/render.js into gateway.json.
 * Loaded once in init_by_lua (master process) and inherited by every worker on fork.
 * The schema (scripts/lib/config-schema.js) has already filled in every default.
 */
import * as cjson from "cjson.safe";

export interface RateLimitConfig {
    limit: number;
    window_seconds: number;
}

export interface RouteConfig {
    enabled: boolean;
    timeout_ms?: number;
    rate_limit: RateLimitConfig;
}

export interface NatsTlsConfig {
    ca_file?: string;
    cert_file?: string;
    key_file?: string;
    server_name?: string;
    verify: boolean;
    verify_depth: number;
}

export interface NatsConfig {
    servers: string[];
    token?: string;
    user?: string;
    password?: string;
    nkey_seed?: string;
    name: string;
    connect_timeout_ms: number;
    reconnect_wait_ms: number;
    reconnect_wait_max_ms: number;
    ping_interval_seconds: number;
    tls: NatsTlsConfig;
}

/** state.redis (CONTRACT §13); REDIS_URL is parsed into these fields by the loader. */
export interface RedisConfig {
    /** REDIS_URL: never in the rendered config (the loader parses it into the fields below). */
    url?: string;
    /** An IP address or a DNS name (names need nginx's `resolver`). */
    host: string;
    port: number;
    password?: string;
    database: number;
    timeout_ms: number;
    pool_size: number;
    keepalive_ms: number;
    key_prefix: string;
    /**
     * fail_open: go on without the failed part (rate limit counted in this instance's shared
     * dict meanwhile, no idempotency, decision not stored); fail_closed: 503.
     */
    on_error: "fail_open" | "fail_closed";
    /** After a Redis error, this worker skips Redis for this long (ms). */
    retry_after_ms: number;
}

/**
 * rate_limit: only the shared dict's size is read by the Lua side; `backend: redis` (v1) is an
 * alias of state.backend: redis, and its `redis` keys fill state.redis (scripts/lib/config.js).
 */
export interface RateLimitBackendConfig {
    backend: "shared_dict" | "redis";
    shared_dict_size_mb: number;
    redis: Omit<RedisConfig, "url">;
}

/** Where rate-limit counts, Idempotency-Key records and stored decisions live (§13). */
export interface StateConfig {
    backend: "local" | "redis";
    redis: RedisConfig;
}

export interface IdempotencyConfig {
    enabled: boolean;
    ttl_seconds: number;
    size_mb: number;
    /** Records kept per tenant (both backends); past it the tenant's own oldest go first. */
    max_keys_per_tenant: number;
    /** An in-flight marker lives the route's Router timeout plus this long. */
    in_flight_grace_seconds: number;
}

export interface ApiKeyConfig {
    tenant_id: string;
    /** SHA-256 of the key, 64 lower-case hex characters. */
    key_sha256: string;
    name?: string;
    /** May call the admin nats_routes (CONTRACT §12). */
    admin: boolean;
}

export interface AuthConfig {
    enabled: boolean;
    api_keys: ApiKeyConfig[];
}

export interface CorsConfig {
    /** Empty: CORS off. "*" (without credentials) or exact origins (scheme://host[:port]). */
    allowed_origins: string[];
    allow_credentials: boolean;
    allowed_headers: string[];
    expose_headers: string[];
    max_age_seconds: number;
}

export interface ShadowConfig {
    enabled: boolean;
    /** other: mirror to the side that did not answer; legacy / new: only towards that side. */
    direction: "other" | "legacy" | "new";
    sample_percent: number;
    max_concurrency: number;
    max_body_bytes: number;
    timeout_ms: number;
    ignore_fields: string[];
}

/** The traffic switch (beamline.traffic). */
export interface MigrationConfig {
    enabled: boolean;
    legacy_url?: string;
    share_percent: number;
    /** Unknown paths go to the old gateway (CONTRACT §14); rendered into nginx.conf. */
    proxy_unknown_paths: boolean;
    allow_override: boolean;
    /** Client networks (CIDRs) allowed to use the override (rendered into a geo map); empty: any. */
    override_from: string[];
    legacy_timeout_ms: number;
    legacy_keepalive: number;
    shadow: ShadowConfig;
}

/** OpenTelemetry trace export (beamline.tracing). */
export interface TracingConfig {
    enabled: boolean;
    /** http://host[:port][/path] of the collector's OTLP/HTTP traces endpoint. */
    endpoint: string;
    sample_ratio: number;
    service_name: string;
    queue_size: number;
    batch_size: number;
    flush_interval_ms: number;
    timeout_ms: number;
}

/** nginx's listener, workers and client timeouts (rendered into nginx.conf). */
export interface ServerConfig {
    listen: string;
    port: number;
    workers: number | "auto";
    worker_connections: number;
    user?: string;
    keepalive_timeout_seconds: number;
    client_header_timeout_seconds: number;
    client_body_timeout_seconds: number;
    send_timeout_seconds: number;
    worker_shutdown_timeout_seconds: number;
    max_connections_per_client: number;
    conn_limit_zone_size_mb: number;
    /** 0: inherit the open-file limit of nginx's master */
    worker_rlimit_nofile: number;
    /** collectgarbage("setpause") of each worker, percent */
    lua_gc_pause: number;
}

export interface LogConfig {
    level: "debug" | "info" | "notice" | "warn" | "error" | "crit";
    access_log: string;
    access_log_buffer_kb: number;
    access_log_flush_ms: number;
    error_log: string;
}

/** Name resolution of cosocket peers (scripts/lib/dns.js renders the resolver from it). */
export interface DnsConfig {
    resolvers: string[];
    resolv_conf: string;
    hosts_file: string;
    valid_seconds: number;
    timeout_seconds: number;
    ipv6: boolean;
}

/** An HTTP → NATS request/reply route (CONTRACT §12), served by handlers/nats_route. */
export interface NatsRouteConfig {
    name: string;
    method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
    /** `/`-separated literals and `{name}` parameters. */
    path: string;
    subject: string;
    body: "empty" | "forward" | "path_params";
    timeout_ms?: number;
    /** A key of `routes`: whose rate limit counts this route. */
    rate_limit_route: string;
    /** With auth on: only `admin: true` keys. */
    admin: boolean;
}

/** Realtime streams (CONTRACT §11, beamline.streams). */
export interface StreamsConfig {
    messages_enabled: boolean;
    results_enabled: boolean;
    events_subject_prefix: string;
    results_subject: string;
    max_per_tenant: number;
    max_per_worker: number;
    max_buffered_bytes: number;
    heartbeat_ms: number;
    results_replay_seconds: number;
    results_replay_max_mb: number;
}

export interface GatewayConfig {
    version: string;
    /** The hosts file's names resolved at render time: name (lower case) → address. */
    dns_hosts: { [name: string]: string };
    dns: DnsConfig;
    server: ServerConfig;
    log: LogConfig;
    nats: NatsConfig;
    router: { decide_subject: string; request_timeout_ms: number; admin_timeout_ms?: number };
    limits: { body_bytes: number };
    routes: {
        decide: RouteConfig;
        messages: RouteConfig;
        admin: RouteConfig;
        streams: RouteConfig;
        [name: string]: RouteConfig | undefined;
    };
    nats_routes: NatsRouteConfig[];
    streams: StreamsConfig;
    response_format: "canonical" | "flat";
    decision_cache: { ttl_seconds: number; size_mb: number; max_per_tenant: number };
    rate_limit: RateLimitBackendConfig;
    state: StateConfig;
    idempotency: IdempotencyConfig;
    auth: AuthConfig;
    cors: CorsConfig;
    metrics: { size_mb: number };
    /** /health details (NATS server, version): always, or for clients in details_from (a geo map). */
    health: { details: boolean; details_from: string[] };
    migration: MigrationConfig;
    tracing: TracingConfig;
}

let current: GatewayConfig | undefined;

/** Reads and decodes the rendered config; returns the config or nil and a reason. */
export function load(path: string): LuaMultiReturn<[GatewayConfig, undefined] | [undefined, string]> {
    const [file, openErr] = io.open(path, "rb");
    if (file === undefined) {
        return $multi(undefined, "cannot open " + path + ": " + tostring(openErr));
    }
    const text = file.read("*a");
    file.close();
    if (text === undefined) {
        return $multi(undefined, "cannot read " + path);
    }
    const [decoded, decodeErr] = cjson.decode(text);
    if (decoded === undefined || type(decoded) !== "table") {
        return $multi(undefined, "invalid JSON in " + path + ": " + tostring(decodeErr));
    }
    current = decoded as GatewayConfig;
    return $multi(current, undefined);
}

/** The loaded config. Only valid after load() (always true once nginx has started). */
export function get(): GatewayConfig {
    return current as GatewayConfig;
}

/** For unit tests: install a config table directly. */
export function set(cfg: GatewayConfig): void {
    current = cfg;
}
