#!/usr/bin/env node
'use strict';
// Rewrites Lua positions in an nginx error log (or any text) to the TypeScript source lines:
//   node scripts/lua-trace.js nginx/logs/error.log
//   tail -f nginx/logs/error.log | node scripts/lua-trace.js
const fs = require('fs');
const readline = require('readline');
const { mapText } = require('./lib/sourcemap');
const { ROOT } = require('./lib/config');

const input = process.argv[2] ? fs.createReadStream(process.argv[2]) : process.stdin;
const rl = readline.createInterface({ input, crlfDelay: Infinity });
rl.on('line', (line) => process.stdout.write(`${mapText(line, ROOT)}\n`));
