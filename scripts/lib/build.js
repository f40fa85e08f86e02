'use strict';
// Compiles src-ts/ to dist-lua/ with TypeScriptToLua when the sources changed since the
// last successful build (content hash, so fresh clones and touched files behave the same).
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { ROOT } = require('./config');

const SRC = path.join(ROOT, 'src-ts');
const OUT = path.join(ROOT, 'dist-lua');
const STAMP = path.join(OUT, '.build-stamp');
const TSTL = path.join(ROOT, 'node_modules', 'typescript-to-lua', 'dist', 'tstl.js');

function listFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? listFiles(p) : [p];
  });
}

function sourceHash() {
  const h = crypto.createHash('sha256');
  const files = [...listFiles(SRC), path.join(ROOT, 'tsconfig.json'), path.join(ROOT, 'package-lock.json')]
    .filter((f) => fs.existsSync(f))
    .sort();
  for (const f of files) h.update(path.relative(ROOT, f)).update('\0').update(fs.readFileSync(f)).update('\0');
  return h.digest('hex');
}

/** @returns {{built: boolean, ms: number}} throws with the compiler's diagnostics on failure */
function compileLua({ force = false, log = console.log } = {}) {
  const t0 = Date.now();
  const hash = sourceHash();
  if (!force && fs.existsSync(STAMP) && fs.readFileSync(STAMP, 'utf8') === hash) return { built: false, ms: 0 };
  if (!fs.existsSync(TSTL)) throw new Error('TypeScriptToLua is not installed: run `make setup` (npm ci)');
  log('compiling src-ts/ -> dist-lua/ (TypeScriptToLua)…');
  // Compile into a fresh directory and swap it in only on success: a failed build leaves the
  // last good dist-lua/ in place, and a deleted .ts file leaves no stale .lua behind.
  const next = `${OUT}.next-${process.pid}`;
  fs.rmSync(next, { recursive: true, force: true });
  const r = spawnSync(process.execPath, [TSTL, '-p', path.join(ROOT, 'tsconfig.json'), '--outDir', next], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) {
    fs.rmSync(next, { recursive: true, force: true });
    throw new Error(`TypeScript/TSTL compile failed:\n${(r.stdout || '') + (r.stderr || '')}`.trim());
  }
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.renameSync(next, OUT);
  fs.writeFileSync(STAMP, hash);
  return { built: true, ms: Date.now() - t0 };
}

module.exports = { compileLua, sourceHash, OUT };
