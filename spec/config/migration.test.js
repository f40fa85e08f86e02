'use strict';
// The traffic switch's config (migration.*): validation (the legacy URL cannot inject nginx
// syntax), rendering (nothing when off; upstream, proxy and shadow listeners when on; every
// *_by_lua_block a one-line call into beamline.phases; nginx -t), and the switch's in-place edit
// of the config file (comments and layout kept).
const fs = require('fs');
const path = require('path');
const { loadConfig } = require('../../scripts/lib/config');
const { render } = require('../../scripts/lib/render');
const { testConfig } = require('../../scripts/lib/nginx');
const { compileLua } = require('../../scripts/lib/build');
const { setScalar } = require('../../scripts/switch');
const { tmpRoot } = require('../support/processes');

let seq = 0;
const load = (migration, server = { listen: '127.0.0.1', port: 8080 }) => {
  const dir = fs.mkdtempSync(path.join(tmpRoot(), 'migcfg-'));
  const file = path.join(dir, 'gateway.yaml');
  fs.writeFileSync(file, JSON.stringify({ server, migration }));
  return loadConfig({ file, env: {} }).config;
};
const problems = (migration, server) => {
  try {
    load(migration, server);
    return [];
  } catch (err) {
    return err.problems;
  }
};
const conf = (config) => {
  const prefix = path.join(tmpRoot(), `migrender-${++seq}`);
  render(config, { prefix });
  return { prefix, text: fs.readFileSync(path.join(prefix, 'conf.d', '20-gateway.conf'), 'utf8') };
};

beforeAll(() => compileLua());

describe('migration.* validation', () => {
  test('defaults: off, share 0, override refused (issue 17), shadow off', () => {
    const m = load(undefined).migration;
    expect(m).toEqual({
      enabled: false,
      share_percent: 0,
      proxy_unknown_paths: true,
      allow_override: false,
      override_from: [],
      legacy_timeout_ms: 10000,
      legacy_keepalive: 32,
      shadow: {
        enabled: false,
        direction: 'other',
        sample_percent: 100,
        max_concurrency: 32,
        max_body_bytes: 65536,
        timeout_ms: 10000,
        ignore_fields: ['request_id', 'trace_id', 'message_id', 'timestamp'],
      },
    });
  });

  test.each([
    'http://10.0.0.5:3000',
    'http://nest-gateway.internal:3000',
    'http://nest-gateway',
    'http://[fd00::5]:8080',
    'http://10.0.0.5:3000/',
  ])('accepts %s', (url) => {
    expect(problems({ enabled: true, legacy_url: url })).toEqual([]);
  });

  test.each([
    ['http://a;b:1', 'must be http://host[:port]'],
    ['http://a b:1', 'must be http://host[:port]'],
    ['http://a:1/path', 'must be http://host[:port]'],
    ['http://user:pw@a:1', 'must be http://host[:port]'],
    ['https://a:1', 'must be http://host[:port]'],
    ['http://a:1;\nproxy_pass http://evil', 'control characters'],
    ['http://$host:1', 'must be http://host[:port]'],
    ['http://a:1}', 'must be http://host[:port]'],
    ['http://a:99999', 'port must be 1-65535'],
    ['http://300.1.1.1:80', 'not an IPv4 address'],
    ['http://127.0.0.1:8080', 'points at this gateway'],
    ['http://localhost:8080', 'points at this gateway'],
  ])('refuses %j (%s)', (url, rule) => {
    const p = problems({ enabled: true, legacy_url: url });
    expect(p.join('\n')).toContain('migration.legacy_url');
    expect(p.join('\n')).toContain(rule);
  });

  test('enabled needs a legacy_url; share is an integer 0-100; unknown keys are refused', () => {
    expect(problems({ enabled: true })).toEqual([
      'migration.legacy_url: required when migration.enabled is true (the old gateway: http://host:port)',
    ]);
    expect(problems({ share_percent: 150 })).toEqual(['migration.share_percent: must be <= 100']);
    expect(problems({ share_percent: -1 })).toEqual(['migration.share_percent: must be >= 0']);
    expect(problems({ share_percent: '30' })).toEqual(['migration.share_percent: must be integer']);
    expect(problems({ shares: 30 })).toEqual(['migration.shares: unknown key']);
    expect(problems({ shadow: { direction: 'both' } })).toEqual(['migration.shadow.direction: must be one of "other", "legacy", "new"']);
    // another host on the same port is not a loop
    expect(problems({ enabled: true, legacy_url: 'http://10.0.0.5:8080' }, { listen: '0.0.0.0', port: 8080 })).toEqual([]);
  });
});

describe('migration.* rendering', () => {
  test('off: nothing of the switch is rendered', () => {
    const { text } = conf(load(undefined));
    expect(text).not.toMatch(/beamline_legacy|beamline_side|beamline_shadow|body_filter|unix:/);
  });

  test('on: the legacy upstream and its proxy location; nginx -t passes', () => {
    const { prefix, text } = conf(
      load({ enabled: true, legacy_url: 'http://10.0.0.5:3000', share_percent: 30, legacy_keepalive: 8, legacy_timeout_ms: 2500 }),
    );
    expect(text).toMatch(/upstream beamline_legacy \{\n\s+server 10\.0\.0\.5:3000;\n\s+keepalive 8;\n\}/);
    expect(text).toMatch(
      /location @beamline_legacy \{[^}]*proxy_pass http:\/\/beamline_legacy;[^}]*proxy_set_header Host 10\.0\.0\.5:3000;[^}]*proxy_read_timeout 2500ms;[^}]*proxy_next_upstream off;/,
    );
    expect(text).toContain('set $beamline_side "";');
    expect(text).not.toMatch(/body_filter|unix:/); // shadow off
    const json = JSON.parse(fs.readFileSync(path.join(prefix, 'gateway.json'), 'utf8'));
    expect(json.migration.share_percent).toBe(30);
    expect(testConfig(prefix)).toMatchObject({ ok: true });
  });

  test('shadow: body filters on the API routes only, two unix listeners in the prefix; one-line Lua calls', () => {
    const { prefix, text } = conf(load({ enabled: true, legacy_url: 'http://localhost:80', shadow: { enabled: true } }));
    expect(text).toContain('proxy_set_header Host localhost;'); // port 80 implied
    expect(text).toContain(`listen unix:${prefix}/shadow-new.sock;`);
    expect(text).toContain(`listen unix:${prefix}/shadow-legacy.sock;`);
    const filters = text.split('\n').filter((l) => l.includes('body_filter_by_lua_block'));
    expect(filters).toHaveLength(4); // decide, messages, decision_lookup, @beamline_legacy
    for (const line of text.split('\n').filter((l) => /_by_lua_block/.test(l))) {
      expect(line).toMatch(/^\s*\w+_by_lua_block \{ require\("beamline\.phases"\)\.\w+\([^;{}]*\) \}$/);
    }
    const healthz = text.slice(text.indexOf('location = /healthz'), text.indexOf('location = /health {'));
    expect(healthz).not.toContain('body_filter');
    expect(testConfig(prefix)).toMatchObject({ ok: true });
  });

  test('a prefix too long for a unix socket path is refused with a clear error', () => {
    const config = load({ enabled: true, legacy_url: 'http://10.0.0.5:3000', shadow: { enabled: true } });
    expect(() => render(config, { prefix: path.join(tmpRoot(), 'x'.repeat(100)) })).toThrow(/too long for the shadow socket/);
  });
});

describe('make switch: in-place edit of the config file', () => {
  const text = `# top comment
server:
  port: 8080   # the port
migration:
  enabled: true
  legacy_url: http://10.0.0.5:3000
  share_percent: 30   # moved by make switch
  shadow: { enabled: false }   # flow style kept
routes:
  decide: { rate_limit: { limit: 5 } }
`;
  test('only the value changes', () => {
    expect(setScalar(text, ['migration', 'share_percent'], 50)).toBe(text.replace('share_percent: 30', 'share_percent: 50'));
    expect(setScalar(text, ['migration', 'shadow', 'enabled'], true)).toBe(text.replace('{ enabled: false }', '{ enabled: true }'));
  });

  test('a missing key is added, comments kept', () => {
    const out = setScalar(text.replace('  share_percent: 30   # moved by make switch\n', ''), ['migration', 'share_percent'], 10);
    expect(out).toContain('# top comment');
    expect(out).toContain('# the port');
    const YAML = require('yaml');
    expect(YAML.parse(out).migration.share_percent).toBe(10);
  });
});
