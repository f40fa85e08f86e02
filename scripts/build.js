#!/usr/bin/env node
'use strict';
// `make build`: compile the TypeScript to Lua (when changed) and render the nginx config.
//   node scripts/build.js [--force] [--config FILE] [--prefix DIR]
const { compileLua } = require('./lib/build');
const { loadConfig, ConfigError } = require('./lib/config');
const { render } = require('./lib/render');
const { parseArgs } = require('./lib/args');

function main() {
  const args = parseArgs(process.argv.slice(2), { boolean: ['force'], string: ['config', 'prefix'] });
  const c = compileLua({ force: args.force });
  console.log(c.built ? `lua: compiled in ${c.ms} ms` : 'lua: up to date');
  const { config, file } = loadConfig({ file: args.config });
  const out = render(config, { prefix: args.prefix });
  console.log(`config: ${file} -> ${out.prefix}/ (${out.files.length} files)`);
}

try {
  main();
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : `build failed: ${err.message}`);
  process.exit(1);
}
