/**
 * Where the Lua side connects for a host name. nginx's `resolver` (rendered from dns.*) speaks
 * DNS only and never reads the hosts file, so the renderer resolves the hosts file's names
 * (localhost among them) into gateway.json's `dns_hosts`; every other name goes to nginx's
 * resolver when the cosocket connects, each time, so a reconnect follows a server that moved
 * once the cached answer (dns.valid_seconds) has expired.
 */
const lower = string.lower;

let hosts: { [name: string]: string | undefined } = {};

/** init_by_lua: the hosts-file table from the rendered config. */
export function configure(table: { [name: string]: string } | undefined): void {
    hosts = table !== undefined ? table : {};
}

/** The address to pass to `tcpsock:connect` for `host`: its hosts-file address, else the name itself. */
export function peer_address(host: string): string {
    const addr = hosts[lower(host)];
    return addr !== undefined ? addr : host;
}
