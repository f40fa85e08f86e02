#!/usr/bin/env node
'use strict';
// `make check`: validate the config, render it, and run `nginx -t` on the result.
//   node scripts/check.js [--config FILE] [--prefix DIR]
// Renders into a temporary prefix (removed after a pass, kept and named after a failure) unless
// --prefix is given: a check must not rewrite the config of a gateway running from nginx/.
const { loadConfig, ConfigError } = require('./lib/config');
const { render } = require('./lib/render');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const { compileLua, OUT } = require('./lib/build');
const { testConfig } = require('./lib/nginx');
const { parseArgs } = require('./lib/args');

function checkLuaSyntax() {
  const files = [];
  const walk = (d) =>
    fs.readdirSync(d, { withFileTypes: true }).forEach((e) => {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.lua')) files.push(p);
    });
  walk(OUT);
  // Files come on stdin, one per line: loadfile parses without running anything.
  const script = 'for f in io.lines() do local ok, err = loadfile(f); if not ok then io.stderr:write(err, "\\n"); os.exit(1) end end';
  const r = spawnSync('luajit', ['-e', script], { encoding: 'utf8', input: files.join('\n') + '\n' });
  if (r.status !== 0) throw new Error(`compiled Lua does not load: ${r.error ? r.error.message : r.stderr.trim()}`);
  console.log(`lua: ${files.length} files load under LuaJIT`);
}

try {
  const args = parseArgs(process.argv.slice(2), { string: ['config', 'prefix'] });
  // `nginx -t` checks the nginx syntax only (it does not run init_by_lua), so the compiled Lua
  // is checked separately: every file must parse under LuaJIT.
  compileLua();
  checkLuaSyntax();
  const { config, file } = loadConfig({ file: args.config });
  const prefix = args.prefix || fs.mkdtempSync(path.join(os.tmpdir(), 'beamline-check-'));
  const out = render(config, { prefix });
  const t = testConfig(out.prefix);
  console.log(t.output);
  if (!t.ok) {
    console.error(`nginx -t failed for ${out.nginxConf} (rendered from ${file})`);
    process.exit(1);
  }
  if (!args.prefix) fs.rmSync(prefix, { recursive: true, force: true });
  console.log(`ok: ${file} renders to a config that passes nginx -t${args.prefix ? ` (${out.nginxConf})` : ''}`);
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : `check failed: ${err.message}`);
  process.exit(1);
}
