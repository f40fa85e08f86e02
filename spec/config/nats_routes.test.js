'use strict';
// `nats_routes` (CONTRACT §12): the schema and the cross-route checks name the field at fault;
// the defaults are the four Router admin routes; the render gives one location per path (nginx -t).
const fs = require('fs');
const path = require('path');
const { loadConfig, ConfigError } = require('../../scripts/lib/config');
const { render } = require('../../scripts/lib/render');
const { testConfig } = require('../../scripts/lib/nginx');
const { compileLua } = require('../../scripts/lib/build');
const { ADMIN_ROUTES } = require('../../scripts/lib/config-schema');
const { tmpRoot } = require('../support/processes');

const load = (raw, env = {}) => {
  const dir = fs.mkdtempSync(path.join(tmpRoot(), 'natsroutes-'));
  const file = path.join(dir, 'gateway.yaml');
  fs.writeFileSync(file, JSON.stringify(raw));
  return loadConfig({ file, env }).config;
};
const problems = (raw, env) => {
  try {
    load(raw, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err.problems;
  }
  throw new Error('config was accepted');
};
const route = (extra) => ({ name: 'ops', method: 'GET', path: '/api/v1/ops', subject: 'ops.get', ...extra });
const withRoutes = (...routes) => ({ nats_routes: [...ADMIN_ROUTES, ...routes] });

describe('defaults', () => {
  test('the four admin routes of §12, body modes and the admin rate limit (60 / 60 s)', () => {
    const c = load({});
    expect(c.nats_routes.map((r) => [r.method, r.path, r.subject, r.body])).toEqual([
      ['GET', '/api/v1/extensions/health', 'beamline.router.v1.admin.get_extension_health', 'empty'],
      ['GET', '/api/v1/extensions/circuit-breakers', 'beamline.router.v1.admin.get_circuit_breaker_states', 'empty'],
      ['POST', '/api/v1/policies/dry-run', 'beamline.router.v1.admin.dry_run_pipeline', 'forward'],
      ['GET', '/api/v1/policies/{tenant_id}/{policy_id}/complexity', 'beamline.router.v1.admin.get_pipeline_complexity', 'path_params'],
    ]);
    for (const r of c.nats_routes) expect(r).toMatchObject({ rate_limit_route: 'admin', admin: true });
    expect(c.routes.admin.rate_limit).toEqual({ limit: 60, window_seconds: 60 });
    expect(c.router.admin_timeout_ms).toBeUndefined();
  });

  test('GATEWAY_RATE_LIMIT_ADMIN sets the admin limit; GATEWAY_RATE_LIMIT_TTL_SECONDS its window too', () => {
    const c = load({}, { GATEWAY_RATE_LIMIT_ADMIN: '7', GATEWAY_RATE_LIMIT_TTL_SECONDS: '30' });
    expect(c.routes.admin.rate_limit).toEqual({ limit: 7, window_seconds: 30 });
    expect(problems({}, { GATEWAY_RATE_LIMIT_ADMIN: 'many' })).toEqual([
      'routes.admin.rate_limit.limit (from GATEWAY_RATE_LIMIT_ADMIN): must be integer',
    ]);
  });

  test('an operator route gets the defaults: body empty, rate_limit_route admin, admin keys only', () => {
    const c = load(withRoutes(route()));
    expect(c.nats_routes[4]).toEqual({ ...route(), body: 'empty', rate_limit_route: 'admin', admin: true });
  });
});

describe('rejected, with the field named', () => {
  test.each([
    ['a subject with a wildcard', { subject: 'ops.*' }, 'nats_routes[4].subject: must be a NATS subject without wildcards'],
    ['a subject with >', { subject: 'ops.>' }, 'nats_routes[4].subject: must be a NATS subject without wildcards'],
    ['a subject with an empty token', { subject: 'ops..get' }, 'nats_routes[4].subject: must be a NATS subject without wildcards'],
    ['a subject with a space', { subject: 'ops get' }, 'nats_routes[4].subject: must be a NATS subject without wildcards'],
    ['an empty subject', { subject: '' }, 'nats_routes[4].subject: must be a NATS subject without wildcards'],
    ['a path without a leading /', { path: 'api/v1/ops' }, 'nats_routes[4].path: must be a path of /-separated segments'],
    ['a path with an empty segment', { path: '/api//ops' }, 'nats_routes[4].path: must be a path of /-separated segments'],
    ['a path with nginx syntax', { path: '/api/v1/ops;return' }, 'nats_routes[4].path: must be a path of /-separated segments'],
    ['a half parameter', { path: '/api/v1/{ops' }, 'nats_routes[4].path: must be a path of /-separated segments'],
    ['a parameter inside a segment', { path: '/api/v1/x{id}' }, 'nats_routes[4].path: must be a path of /-separated segments'],
    ['a trailing /', { path: '/api/v1/ops/' }, 'nats_routes[4].path: must be a path of /-separated segments'],
    ['an unknown method', { method: 'TRACE' }, 'nats_routes[4].method: must be one of'],
    ['an unknown body mode', { body: 'raw' }, 'nats_routes[4].body: must be one of "empty", "forward", "path_params"'],
    ['a zero timeout', { timeout_ms: 0 }, 'nats_routes[4].timeout_ms: must be >= 1'],
    ['a name with capitals', { name: 'Ops' }, 'nats_routes[4].name: must be a name of a-z 0-9 _'],
    ['an unknown key', { headers: {} }, 'nats_routes[4].headers: unknown key'],
    ['a rate-limit route that does not exist', { rate_limit_route: 'ops' }, 'nats_routes[4].rate_limit_route: must be one of'],
    ['a parameter named twice', { path: '/api/v1/{a}/{a}' }, 'nats_routes[4].path: parameter {a} appears twice'],
    ['an internal path', { path: '/__beamline_error/x' }, 'nats_routes[4].path: paths starting with /__ are reserved'],
  ])('%s', (_w, extra, message) => {
    const p = problems(withRoutes(route(extra)));
    expect(p.some((x) => x.startsWith(message))).toBe(true);
  });

  test('a missing subject', () => {
    const { subject, ...noSubject } = route();
    expect(subject).toBe('ops.get');
    expect(problems(withRoutes(noSubject))).toContain("nats_routes[4].subject: must have required property 'subject'");
  });

  test.each([
    ['/api/v1/routes/decide', 'decide'],
    ['/api/v1/messages', 'messages'],
    ['/healthz', 'healthz'],
    ['/metrics', 'metrics'],
    ['/_metrics', 'ui_metrics'],
    ['/api/v1/routes/decide/{id}', 'decision_lookup'],
    ['/api/v1/routes/decide/abc', 'decision_lookup'],
    ['/api/v1/routes/{x}', 'decide'],
    ['/api/v1/{a}/{b}/{c}', 'decision_lookup'],
  ])('%s collides with the built-in route %s', (p, name) => {
    const msgs = problems(withRoutes(route({ path: p })));
    expect(msgs.some((m) => m.startsWith(`nats_routes[4].path: ${p} collides with the built-in route ${name}`))).toBe(true);
  });

  test('paths that overlap without being the same path collide; the field and the other route are named', () => {
    expect(
      problems(withRoutes(route({ path: '/api/v1/other/{x}' }), route({ name: 'ops2', path: '/api/v1/policies/{y}/z/complexity' }))),
    ).toEqual([
      'nats_routes[5].path: /api/v1/policies/{y}/z/complexity collides with nats_routes[3].path /api/v1/policies/{tenant_id}/{policy_id}/complexity',
    ]);
    expect(problems(withRoutes(route({ path: '/api/v1/extensions/{which}' })))).toEqual([
      'nats_routes[4].path: /api/v1/extensions/{which} collides with nats_routes[0].path /api/v1/extensions/health',
      'nats_routes[4].path: /api/v1/extensions/{which} collides with nats_routes[1].path /api/v1/extensions/circuit-breakers',
    ]);
  });

  test('the same method and path twice, and a duplicate name', () => {
    expect(problems(withRoutes(route(), route({ name: 'ops2' })))).toEqual([
      'nats_routes[5].path: GET /api/v1/ops is already nats_routes[4]',
    ]);
    expect(problems(withRoutes(route(), route({ method: 'DELETE' })))).toEqual([
      'nats_routes[5].name: "ops" is already the name of nats_routes[4]',
    ]);
    expect(problems(withRoutes(route({ name: 'decide', path: '/api/v1/ops' })))).toEqual([
      'nats_routes[4].name: "decide" is the name of a built-in route',
    ]);
  });
});

describe('rendering', () => {
  test('one location per path (two methods share it), a regex for parameters; nginx -t passes', () => {
    compileLua();
    const c = load({
      ...withRoutes(
        route({ name: 'ops_put', method: 'PUT', path: '/api/v1/ops/{item}' }),
        route({ name: 'ops_del', method: 'DELETE', path: '/api/v1/ops/{id}' }),
        route({ name: 'ops_dot', path: '/api/v1/x.y' }),
      ),
      server: { listen: '127.0.0.1', port: 8080 },
    });
    const prefix = fs.mkdtempSync(path.join(tmpRoot(), 'natsroutes-render-'));
    render(c, { prefix });
    const conf = fs.readFileSync(path.join(prefix, 'conf.d', '20-gateway.conf'), 'utf8');
    expect(conf).toContain('location = /api/v1/extensions/health {');
    expect(conf).toContain('location ~ ^/api/v1/policies/[^/]+/[^/]+/complexity$ {');
    expect(conf.match(/location ~ \^\/api\/v1\/ops\/\[\^\/\]\+\$ \{/g)).toHaveLength(1);
    expect(conf).toContain('content_by_lua_block { require("beamline.phases").content("ops_put") }');
    expect(conf).not.toContain('content("ops_del")');
    expect(conf).toContain('location = /api/v1/x.y {');
    const http = fs.readFileSync(path.join(prefix, 'conf.d', '00-http.conf'), 'utf8');
    expect(http).toContain('"~^/api/v1/ops/[^/?]+(\\?|$)" "PUT, DELETE";');
    const t = testConfig(prefix);
    expect(t.output).toMatch(/syntax is ok/);
    expect(t.ok).toBe(true);
  });
});
