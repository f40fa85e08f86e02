'use strict';
// Minimal `--flag` / `--key value` / `--key=value` parser for the project's scripts, and their
// `--help`: the comment block at the top of the script.
const fs = require('fs');

/** The leading `//` comment of a script (after the shebang and 'use strict'), unprefixed. */
function usageOf(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  let i = 0;
  while (i < lines.length && (lines[i].startsWith('#!') || lines[i].trim() === "'use strict';" || lines[i].trim() === '')) i++;
  const out = [];
  for (; i < lines.length && lines[i].startsWith('//'); i++) out.push(lines[i].replace(/^\/\/ ?/, ''));
  return out.join('\n') + '\n';
}

/** `--help` / `-h` anywhere in argv: prints the calling script's usage and exits 0. */
function exitWithUsageIfAsked(argv, file = require.main && require.main.filename) {
  if (!file || !argv.some((a) => a === '--help' || a === '-h')) return;
  process.stdout.write(usageOf(file));
  process.exit(0);
}

function parseArgs(argv, spec = {}) {
  const booleans = new Set(spec.boolean || []);
  const strings = new Set(spec.string || []);
  // A script that declares `help` itself prints its own; every other one gets its header.
  if (!booleans.has('help')) exitWithUsageIfAsked(argv);
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      out._.push(a);
      continue;
    }
    const [key, inline] = a.slice(2).split(/=(.*)/s, 2);
    if (booleans.has(key)) out[key] = inline === undefined ? true : inline !== 'false';
    else if (strings.has(key)) {
      const v = inline !== undefined ? inline : argv[++i];
      if (v === undefined) throw new Error(`--${key} needs a value`);
      out[key] = v;
    } else throw new Error(`unknown option --${key} (see --help)`);
  }
  return out;
}
module.exports = { parseArgs, usageOf, exitWithUsageIfAsked };
