'use strict';
// Rendering: Handlebars in strict mode, one-line *_by_lua_block calls, secrets file mode,
// and the result passes `nginx -t`.
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { loadConfig } = require('../../scripts/lib/config');
const { render } = require('../../scripts/lib/render');
const { compileLua } = require('../../scripts/lib/build');
const { testConfig, nginxBin, prefixArgs } = require('../../scripts/lib/nginx');
const { tmpRoot } = require('../support/processes');

const ROOT = path.resolve(__dirname, '..', '..');
let seq = 0;
const freshPrefix = () => path.join(tmpRoot(), `render-${++seq}`);
const cfg = (overrides) => loadConfig({ file: path.join(ROOT, 'gateway.yaml'), env: {}, overrides }).config;

beforeAll(() => compileLua());

function renderedText(prefix) {
  const confd = path.join(prefix, 'conf.d');
  return [path.join(prefix, 'nginx.conf'), ...fs.readdirSync(confd).map((f) => path.join(confd, f))]
    .map((f) => fs.readFileSync(f, 'utf8'))
    .join('\n');
}

test('renders nginx.conf, conf.d and gateway.json', () => {
  const prefix = freshPrefix();
  const out = render(cfg(), { prefix });
  expect(out.files.map((f) => path.relative(prefix, f)).sort()).toEqual([
    'conf.d/00-http.conf',
    'conf.d/10-lua.conf',
    'conf.d/20-gateway.conf',
    'gateway.json',
    'nginx.conf',
  ]);
  const text = renderedText(prefix);
  expect(text).toContain('listen 127.0.0.1:8080');
  expect(text).toContain('server_tokens off;');
  expect(text).toContain(`lua_package_path "${path.join(ROOT, 'dist-lua')}/?.lua;`);
});

test('every *_by_lua_block is a one-line call into a module', () => {
  const prefix = freshPrefix();
  render(cfg(), { prefix });
  const blocks = renderedText(prefix)
    .split('\n')
    .filter((l) => /_by_lua_block/.test(l));
  expect(blocks.length).toBeGreaterThanOrEqual(4);
  for (const line of blocks) {
    expect(line).toMatch(/^\s*\w+_by_lua_block \{ require\("beamline\.[a-z_.]+"\)\.\w+\([^;{}]*\) \}$/);
  }
});

test('gateway.json holds the validated config and is readable by its owner only', () => {
  const prefix = freshPrefix();
  const config = cfg((raw) => {
    raw.nats = { ...raw.nats, user: 'gw', password: 'secret-pw' };
  });
  render(config, { prefix });
  const f = path.join(prefix, 'gateway.json');
  expect(fs.statSync(f).mode & 0o777).toBe(0o600);
  const json = JSON.parse(fs.readFileSync(f, 'utf8'));
  expect(json.nats.password).toBe('secret-pw');
  expect(json.version).toBe(require('../../package.json').version);
  // The secret never lands in the world-readable nginx config.
  expect(renderedText(prefix)).not.toContain('secret-pw');
});

test('strict rendering: a missing key is an error, not an empty string', () => {
  const config = cfg();
  delete config.server.worker_connections;
  expect(() => render(config, { prefix: freshPrefix() })).toThrow(/worker_connections/);
});

test('the OpenResty runtime renders without load_module lines', () => {
  const prefix = freshPrefix();
  render(cfg(), { prefix, runtime: 'openresty' });
  expect(fs.readFileSync(path.join(prefix, 'nginx.conf'), 'utf8')).not.toMatch(/load_module/);
  const debian = freshPrefix();
  render(cfg(), { prefix: debian, runtime: 'debian' });
  expect(fs.readFileSync(path.join(debian, 'nginx.conf'), 'utf8')).toMatch(
    /load_module \/usr\/lib\/nginx\/modules\/ngx_http_lua_module\.so;/,
  );
});

test('nginx errors answer in the contract JSON shape', () => {
  const prefix = freshPrefix();
  render(
    cfg((raw) => {
      raw.limits = { body_bytes: 4096 };
    }),
    { prefix },
  );
  const conf = fs.readFileSync(path.join(prefix, 'conf.d', '20-gateway.conf'), 'utf8');
  // The 413 is answered by the Lua with the request's ids (CONTRACT §14), not by a constant.
  expect(conf).not.toMatch(/return 413 /);
  expect(conf).toMatch(
    /location = \/__beamline_error\/413 \{[^}]*content_by_lua_block \{ require\("beamline.phases"\).nginx_error\(413\) \}/,
  );
  // Every other body is JSON as it stands.
  for (const [, body] of conf.matchAll(/return (?!413)\d+ '([^']+)';/g)) expect(JSON.parse(body).ok).toBe(false);
  expect(conf).toMatch(/error_page 494 =400 \/__beamline_error\/494;/);
  expect(conf).toMatch(/error_page 414 =400 \/__beamline_error\/414;/);
  expect(conf).toMatch(/error_page 413 \/__beamline_error\/413;/);
  expect(conf).toMatch(/error_page 405 = \/__beamline_error\/405;/);
});

test('the rendered config passes nginx -t', () => {
  const prefix = freshPrefix();
  render(
    cfg((raw) => {
      raw.server = { ...raw.server, workers: 'auto' };
    }),
    { prefix },
  );
  const t = testConfig(prefix);
  expect(t.output).toMatch(/syntax is ok/);
  expect(t.ok).toBe(true);
});

test('nginx refuses to start when init_by_lua cannot load the config', () => {
  // `nginx -t` does not run init_by_lua, so this is checked with a real start.
  const prefix = freshPrefix();
  render(
    cfg((raw) => {
      raw.server = { ...raw.server, port: 1 };
    }),
    { prefix },
  );
  fs.writeFileSync(path.join(prefix, 'gateway.json'), '{not json');
  const r = spawnSync(nginxBin(), prefixArgs(prefix), { encoding: 'utf8', timeout: 10000 });
  expect(r.status).not.toBe(0);
  expect(r.stderr).toMatch(/init_by_lua error: beamline: invalid JSON in .*gateway\.json/);
});

describe('make check (scripts/check.js)', () => {
  const check = (args, env = {}) =>
    spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'check.js'), ...args], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, ...env },
    });

  test('passes on the shipped config', () => {
    const r = check(['--prefix', freshPrefix()]);
    expect(r.stdout).toMatch(/ok: .*nginx\.conf/);
    expect(r.status).toBe(0);
  });

  test('without --prefix it renders into a temporary prefix and leaves nginx/ alone', () => {
    const tmp = path.join(tmpRoot(), `check-tmp-${process.pid}`);
    fs.mkdirSync(tmp, { recursive: true });
    const live = path.join(ROOT, 'nginx', 'conf.d', '20-gateway.conf');
    const before = fs.existsSync(live) ? fs.statSync(live).mtimeMs : null;
    const r = check([], { TMPDIR: tmp, GATEWAY_PORT: '18999' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/ok: .*gateway\.yaml renders to a config that passes nginx -t/);
    expect(fs.existsSync(live) ? fs.statSync(live).mtimeMs : null).toBe(before);
    expect(fs.readdirSync(tmp)).toEqual([]); // removed after the pass
  });

  test('stops with the field and rule and a non-zero exit on a bad config', () => {
    const bad = path.join(tmpRoot(), 'bad.yaml');
    fs.writeFileSync(bad, 'server:\n  port: 99999\n');
    const r = check(['--config', bad, '--prefix', freshPrefix()]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('server.port: must be <= 65535');
  });

  test('names the environment variable that broke it', () => {
    const r = check(['--prefix', freshPrefix()], { GATEWAY_PORT: 'http' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('server.port (from GATEWAY_PORT): must be integer');
  });
});

test('renders the shared dicts, the JSON access log and the log phase (issue 6)', () => {
  const prefix = freshPrefix();
  render(
    cfg((raw) => {
      raw.rate_limit = { shared_dict_size_mb: 3 };
      raw.idempotency = { size_mb: 5 };
      raw.metrics = { size_mb: 2 };
      raw.auth = { enabled: true, api_keys: [{ tenant_id: 't1', key_sha256: 'b'.repeat(64) }] };
    }),
    { prefix },
  );
  const lua = fs.readFileSync(path.join(prefix, 'conf.d', '10-lua.conf'), 'utf8');
  expect(lua).toContain('lua_shared_dict beamline_ratelimit 3m;');
  expect(lua).toContain('lua_shared_dict beamline_idempotency 5m;');
  expect(lua).toContain('lua_shared_dict beamline_metrics 2m;');
  const http = fs.readFileSync(path.join(prefix, 'conf.d', '00-http.conf'), 'utf8');
  expect(http).toMatch(/log_format beamline_json escape=json/);
  expect(http).toMatch(/access_log \S+ beamline_json;/);
  const server = fs.readFileSync(path.join(prefix, 'conf.d', '20-gateway.conf'), 'utf8');
  expect(server).toContain('log_by_lua_block { require("beamline.phases").log() }');
  expect(server).toContain('set $beamline_route decide;');
  expect(server).toMatch(/location = \/metrics \{/);
  // Key digests stay in the owner-only gateway.json.
  expect(renderedText(prefix)).not.toContain('b'.repeat(64));
  expect(testConfig(prefix).ok).toBe(true);
});
