'use strict';
// docker-compose.yml (no Docker engine here): parsed and checked against the Dockerfile and
// the gateway config — services, images and build targets, ports, environment, health checks,
// start order, and the gateway's hardening (read-only root, tmpfs prefix, graceful stop).
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');
const { parseDockerfile, parseAssignments, stageVars } = require('./dockerfile');
const { loadConfig } = require('../../scripts/lib/config');

const ROOT = path.resolve(__dirname, '..', '..');
const doc = YAML.parseDocument(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { uniqueKeys: true });
const compose = doc.toJS();
const { stages } = parseDockerfile(fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
const stage = (name) => stages.find((s) => s.name === name);
const runtimeVars = stageVars(stages[stages.length - 1]);

/** "[ip:]host:container" → {ip, host, container}. */
function portMapping(p) {
  const parts = String(p).split(':');
  const container = Number(parts.pop());
  const host = Number(parts.pop());
  return { ip: parts.pop() || null, host, container };
}

/** Seconds of a compose duration ("20s", "1m30s", "500ms"). */
function seconds(d) {
  let total = 0;
  for (const [, n, u] of String(d).matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(n) * { ms: 0.001, s: 1, m: 60, h: 3600 }[u];
  return total;
}

/** The gateway's config as the container sees it: gateway.yaml + image ENV + compose env. */
function gatewayConfig() {
  const imageEnv = {};
  for (const ins of stages[stages.length - 1].instructions.filter((i) => i.cmd === 'ENV'))
    Object.assign(imageEnv, parseAssignments(ins.rest));
  return loadConfig({ file: path.join(ROOT, 'gateway.yaml'), env: { ...imageEnv, ...compose.services.gateway.environment } }).config;
}

describe('docker-compose.yml', () => {
  test('parses, and has exactly the nats, redis, router and gateway services', () => {
    expect(doc.errors).toEqual([]);
    expect(compose.name).toBe('beamline');
    expect(Object.keys(compose.services).sort()).toEqual(['gateway', 'nats', 'redis', 'router']);
  });

  test('redis: the official 7 image, nothing persisted, bounded memory, health by PING; the gateway uses it (CONTRACT §13)', () => {
    const r = compose.services.redis;
    expect(r.image).toMatch(/^redis:7(-alpine)?$/);
    const args = r.command;
    expect(args[0]).toBe('redis-server');
    expect(args[args.indexOf('--save') + 1]).toBe('');
    expect(args[args.indexOf('--appendonly') + 1]).toBe('no');
    expect(args[args.indexOf('--maxmemory') + 1]).toMatch(/^\d+mb$/);
    // Every key the gateway writes has a TTL: evict among those, never refuse writes.
    expect(args[args.indexOf('--maxmemory-policy') + 1]).toBe('volatile-lru');
    expect(r.healthcheck.test).toEqual(['CMD', 'redis-cli', 'ping']);
    expect(r.ports.map(portMapping)).toEqual([{ ip: '127.0.0.1', host: 6379, container: 6379 }]);
    expect(r.read_only).toBe(true);
    const g = compose.services.gateway;
    expect(g.depends_on.redis).toEqual({ condition: 'service_healthy' });
    const config = gatewayConfig();
    expect(config.state.backend).toBe('redis');
    expect(config.state.redis).toMatchObject({ host: 'redis', port: 6379, database: 0 });
  });

  test('every service has an exec-form health check with interval, timeout and retries', () => {
    for (const [name, s] of Object.entries(compose.services)) {
      const hc = s.healthcheck;
      expect({ name, test: Array.isArray(hc && hc.test) && hc.test[0] }).toEqual({ name, test: 'CMD' });
      for (const k of ['interval', 'timeout', 'retries']) expect({ name, k, set: hc[k] !== undefined }).toEqual({ name, k, set: true });
      expect(seconds(hc.timeout)).toBeLessThan(seconds(hc.interval) + 1);
    }
  });

  test('nats: the official 2.9 image, client port 4222, health from the monitoring endpoint', () => {
    const n = compose.services.nats;
    expect(n.image).toMatch(/^nats:2\.9(-alpine)?$/);
    const args = n.command;
    expect(args[args.indexOf('--port') + 1]).toBe('4222');
    const monitor = args[args.indexOf('--http_port') + 1];
    expect(n.healthcheck.test).toEqual(['CMD', 'wget', '-q', '-O', '/dev/null', `http://127.0.0.1:${monitor}/healthz`]);
    expect(n.ports.map(portMapping)).toEqual(expect.arrayContaining([{ ip: '127.0.0.1', host: 4222, container: 4222 }]));
  });

  test('router: the Dockerfile reference-router stage, NATS_URL at the nats service, after nats is healthy', () => {
    const r = compose.services.router;
    expect(r.build).toEqual({ context: '.', dockerfile: 'Dockerfile', target: 'reference-router' });
    expect(stage('reference-router')).toBeDefined();
    expect(r.environment.NATS_URL).toBe('nats://nats:4222');
    expect(r.depends_on).toEqual({ nats: { condition: 'service_healthy' } });
    expect(r.healthcheck.test).toEqual(['CMD', 'node', '/opt/beamline/deploy/router-healthcheck.js']);
    expect(r.environment.ROUTER_DECIDE_SUBJECT).toBe(gatewayConfig().router.decide_subject);
  });

  test('gateway: the default (runtime) stage, depends on nats, NATS_URL and port consistent with the config', () => {
    const g = compose.services.gateway;
    expect(g.build.target).toBe(stages[stages.length - 1].name);
    expect(g.depends_on.nats).toEqual({ condition: 'service_healthy' });
    expect(g.environment.NATS_URL).toBe('nats://nats:4222');
    // every environment value is a string (compose would turn 8080 into a number otherwise)
    for (const [k, v] of Object.entries(g.environment)) expect({ k, type: typeof v }).toEqual({ k, type: 'string' });
    const config = gatewayConfig();
    expect(config.nats.servers).toEqual(['nats://nats:4222']);
    expect(config.server.listen).toBe('0.0.0.0');
    const [port] = g.ports.map(portMapping);
    expect(port).toEqual({ ip: '127.0.0.1', host: 8080, container: config.server.port });
  });

  test('gateway: read-only root, the prefix on a tmpfs owned by the image user, no capabilities', () => {
    const g = compose.services.gateway;
    expect(g.read_only).toBe(true);
    const user = stages[stages.length - 1].instructions.filter((i) => i.cmd === 'USER').pop().rest;
    const [uid, gid] = user.split(':');
    expect(g.tmpfs).toHaveLength(1);
    const [mountPath, opts] = g.tmpfs[0].split(':');
    expect(mountPath).toBe(runtimeVars.GATEWAY_PREFIX);
    const o = Object.fromEntries(opts.split(',').map((kv) => kv.split('=')));
    expect(o).toMatchObject({ uid, gid, mode: '0700' });
    expect(g.cap_drop).toEqual(['ALL']);
    expect(g.security_opt).toContain('no-new-privileges:true');
  });

  test('gateway: graceful stop with SIGQUIT and a grace period longer than worker_shutdown_timeout', () => {
    const g = compose.services.gateway;
    expect(g.stop_signal).toBe('SIGQUIT');
    expect(seconds(g.stop_grace_period)).toBeGreaterThan(gatewayConfig().server.worker_shutdown_timeout_seconds);
  });

  test('gateway: the health check is the image script on the tmpfs prefix, probing readiness', () => {
    const test = compose.services.gateway.healthcheck.test;
    expect(test.slice(0, 3)).toEqual(['CMD', 'node', `${runtimeVars.BEAMLINE_HOME}/deploy/healthcheck.js`]);
    expect(test[test.indexOf('--prefix') + 1]).toBe(runtimeVars.GATEWAY_PREFIX);
    expect(test[test.indexOf('--path') + 1]).toBe('/readyz');
  });
});
