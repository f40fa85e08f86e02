#!/usr/bin/env node
'use strict';
// Validate the config and render the nginx prefix, without compiling (the Docker entrypoint
// runs this at container start so environment overrides apply; the Lua is already built).
//   node scripts/render.js [--config FILE] [--prefix DIR] [--lua-dir DIR] [--runtime debian|openresty] [--check]
const { loadConfig, ConfigError } = require('./lib/config');
const { render } = require('./lib/render');
const { testConfig } = require('./lib/nginx');
const { parseArgs } = require('./lib/args');

try {
  const args = parseArgs(process.argv.slice(2), { string: ['config', 'prefix', 'lua-dir', 'runtime'], boolean: ['check'] });
  const { config, file } = loadConfig({ file: args.config });
  const out = render(config, { prefix: args.prefix, luaDir: args['lua-dir'], runtime: args.runtime });
  console.log(`config: ${file} -> ${out.prefix}/`);
  if (args.check) {
    const t = testConfig(out.prefix);
    if (!t.ok) {
      console.error(t.output);
      process.exit(1);
    }
  }
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : `render failed: ${err.message}`);
  process.exit(1);
}
