#!/usr/bin/env node
'use strict';
// Rewrites Lua positions in an nginx error log (or any text) to the TypeScript source lines:
//   node scripts/lua-trace.js nginx/logs/error.log
//   tail -f nginx/logs/error.log | node scripts/lua-trace.js
const fs = require('fs');
const readline = require('readline');
const { mapText } = require('./lib/sourcemap');
const { ROOT } = require('./lib/config');
const { exitWithUsageIfAsked } = require('./lib/args');

exitWithUsageIfAsked(process.argv.slice(2), __filename);
const input = process.argv[2] ? fs.createReadStream(process.argv[2]) : process.stdin;
input.on('error', (err) => {
  process.stderr.write(`lua-trace: cannot read ${process.argv[2]}: ${err.code || err.message}\n`);
  process.exit(2);
});
const rl = readline.createInterface({ input, crlfDelay: Infinity });
rl.on('line', (line) => process.stdout.write(`${mapText(line, ROOT)}\n`));
