'use strict';
// The benchmark-only locations (/__bench/*) exist only when render() is asked for them.
const fs = require('fs');
const path = require('path');
const { loadConfig } = require('../../scripts/lib/config');
const { render } = require('../../scripts/lib/render');
const { compileLua } = require('../../scripts/lib/build');
const { testConfig } = require('../../scripts/lib/nginx');
const { tmpRoot } = require('../support/processes');

const ROOT = path.resolve(__dirname, '..', '..');
let seq = 0;
const freshPrefix = () => path.join(tmpRoot(), `render-bench-${++seq}`);
const cfg = () => loadConfig({ file: path.join(ROOT, 'gateway.yaml'), env: {} }).config;
const gatewayConf = (prefix) => fs.readFileSync(path.join(prefix, 'conf.d', '20-gateway.conf'), 'utf8');

beforeAll(() => compileLua());

test('a default render has no benchmark endpoint', () => {
  for (const opts of [{}, { bench: false }]) {
    const prefix = freshPrefix();
    render(cfg(), { prefix, ...opts });
    const text = gatewayConf(prefix);
    expect(text).not.toContain('/__bench');
    expect(text).not.toContain('beamline.bench');
  }
});

test('render(config, {bench: true}) adds /__bench/bare (+ info, profile) and passes nginx -t', () => {
  const prefix = freshPrefix();
  render(cfg(), { prefix, bench: true });
  const text = gatewayConf(prefix);
  expect(text).toMatch(/location = \/__bench\/bare \{\n\s+content_by_lua_block \{ require\("beamline\.bench"\)\.bare\(\) \}/);
  expect(text).toContain('require("beamline.bench").info()');
  expect(text).toContain('require("beamline.bench").profile()');
  // The gateway's own routes are all still there.
  expect(text).toContain('location = /api/v1/routes/decide');
  const t = testConfig(prefix);
  expect(t.output).toMatch(/syntax is ok/);
  expect(t.ok).toBe(true);
});

test('a truthy non-boolean bench option does not enable the endpoints', () => {
  const prefix = freshPrefix();
  render(cfg(), { prefix, bench: 'yes' });
  expect(gatewayConf(prefix)).not.toContain('/__bench');
});
