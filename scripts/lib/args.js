'use strict';
// Minimal `--flag` / `--key value` / `--key=value` parser for the project's scripts.
function parseArgs(argv, spec = {}) {
  const booleans = new Set(spec.boolean || []);
  const strings = new Set(spec.string || []);
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
    } else throw new Error(`unknown option --${key}`);
  }
  return out;
}
module.exports = { parseArgs };
