'use strict';
// Name resolution for the peers the Lua side connects to (NATS servers, and any other cosocket
// peer). nginx's `resolver` speaks DNS only: it reads neither /etc/hosts nor resolv.conf (no
// `search` domains). So at render time the name servers come from dns.resolvers or resolv.conf,
// and the names of the hosts file (localhost among them) are resolved here, into gateway.json.
const fs = require('fs');

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

function isIp(host) {
  return IPV4.test(host) || host.includes(':') || /^\[.*\]$/.test(host);
}

/** The `nameserver` lines of a resolv.conf, written for nginx (`[v6]`); zone ids are skipped. */
function resolvConfServers(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    return [];
  }
  const out = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m || m[1].includes('%')) continue;
    if (IPV4.test(m[1])) out.push(m[1]);
    else if (/^[0-9A-Fa-f:.]+$/.test(m[1]) && m[1].includes(':')) out.push(`[${m[1]}]`);
  }
  return out;
}

/**
 * name (lower case) → address from a hosts file; IPv4 first, an IPv6-only name keeps its first
 * address. At most 10,000 names (the Lua side holds the table in every worker).
 */
function hostsFile(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    return {};
  }
  const v4 = {};
  const v6 = {};
  let n = 0;
  for (const raw of text.split('\n')) {
    const fields = raw.replace(/#.*/, '').trim().split(/\s+/);
    if (fields.length < 2) continue;
    const addr = fields[0];
    const table = IPV4.test(addr) ? v4 : /^[0-9A-Fa-f:.]+$/.test(addr) && addr.includes(':') ? v6 : null;
    if (!table) continue;
    for (const name of fields.slice(1)) {
      const key = name.toLowerCase();
      if (!/^[a-z0-9._-]{1,253}$/.test(key) || key in table) continue;
      if (++n > 10000) break;
      table[key] = addr;
    }
  }
  return { ...v6, ...v4 };
}

/** What the templates and the Lua side need: the resolver line's parts and the hosts table. */
function dnsView(dns) {
  const servers = dns.resolvers.length ? dns.resolvers : resolvConfServers(dns.resolv_conf);
  return {
    servers,
    resolver: servers.join(' '),
    valid_seconds: dns.valid_seconds,
    timeout_seconds: dns.timeout_seconds,
    ipv6: dns.ipv6 ? 'on' : 'off',
    hosts: hostsFile(dns.hosts_file),
  };
}

/** The host of a URL (nats://, tls://, http://). */
function natsUrlHost(url) {
  const m = /^[a-z]+:\/\/(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)/.exec(url);
  return m ? m[1] : '';
}

/**
 * Config problems: a NATS server (or the state Redis) given by a name that neither the hosts file nor a name server
 * can answer (no `resolver` would be rendered, and nginx would fail every connect).
 */
function dnsProblems(raw) {
  const view = dnsView(raw.dns);
  if (view.servers.length) return [];
  const out = [];
  const check = (field, host) => {
    if (host && !isIp(host) && !(host.toLowerCase() in view.hosts)) {
      out.push(
        `${field}: the host name ${host} cannot be resolved: it is not in ${raw.dns.hosts_file} and no name server is known (set dns.resolvers, or give nameserver lines in ${raw.dns.resolv_conf})`,
      );
    }
  };
  raw.nats.servers.forEach((url, i) => check(`nats.servers[${i}]`, natsUrlHost(url)));
  const st = raw.state;
  if (st && st.backend === 'redis') check('state.redis.host', st.redis.host);
  const tr = raw.tracing;
  if (tr && tr.enabled) check('tracing.endpoint', natsUrlHost(tr.endpoint));
  return out;
}

module.exports = { dnsView, dnsProblems, resolvConfServers, hostsFile, isIp };
