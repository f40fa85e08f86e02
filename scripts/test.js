#!/usr/bin/env node
'use strict';
// `make test`: every test runner of the project, then one totals line for CI:
//   1. lint   (ESLint, Prettier check, luacheck over the compiled Lua, Redocly over docs/openapi.yaml)
//   2. busted (Lua unit specs under LuaJIT, against the compiled dist-lua/)
//   3. jest   (config/render, CLI and end-to-end tests that start real nginx, nats-server
//              and the reference Router)
// The last line is `N passed, M failed` over all runners. Exit code ≠ 0 when anything failed.
//   node scripts/test.js [--only lint|busted|jest] [jest args…]
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const { compileLua } = require('./lib/build');
const { ROOT } = require('./lib/config');
const { exitWithUsageIfAsked } = require('./lib/args');
const { mapText } = require('./lib/sourcemap');

// Runs a test runner, streaming its output. With `onLine`, stdout is handled line by line and
// Lua positions in it are mapped to the TypeScript source (dist-lua/x.lua:N → src-ts/x.ts:M).
function run(cmd, args, { onLine, env } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let buf = '';
    const emit = (line) => {
      process.stdout.write(`${mapText(line, ROOT)}\n`);
      onLine(line);
    };
    child.stdout.on('data', (d) => {
      if (!onLine) {
        process.stdout.write(d);
        return;
      }
      buf += d.toString('utf8');
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        emit(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    child.stderr.on('data', (d) => process.stderr.write(d));
    child.on('error', (err) => {
      console.error(`cannot run ${cmd}: ${err.message}`);
      resolve(127);
    });
    child.on('exit', (code) => {
      if (onLine && buf) emit(buf);
      resolve(code === null ? 1 : code);
    });
  });
}

async function busted() {
  // TAP output: one `ok`/`not ok` line per test, counted here.
  const r = { passed: 0, failed: 0, skipped: 0 };
  const code = await run('luajit', ['/usr/bin/busted', '-o', 'TAP'], {
    onLine: (l) => {
      if (/^ok \d+/.test(l)) {
        if (/# SKIP/.test(l)) r.skipped++;
        else r.passed++;
      } else if (/^not ok \d+/.test(l)) r.failed++;
    },
  });
  if (code !== 0 && r.failed === 0) r.failed = 1; // crashed before reporting
  return r;
}

// Linters: each counts as one check (passed or failed). ESLint (typescript-eslint strict, no
// `any`, on src-ts/; recommended rules on the JavaScript), Prettier's format check, and
// luacheck over the compiled Lua for what TypeScript cannot see (globals, unused values), and
// Redocly over docs/openapi.yaml (redocly.yaml: recommended-strict, so a warning fails too; no
// telemetry, no update check over the network).
const NODE_BIN = path.join(ROOT, 'node_modules', '.bin');
const LINTERS = [
  ['eslint', path.join(NODE_BIN, 'eslint'), ['.']],
  ['prettier', path.join(NODE_BIN, 'prettier'), ['--check', '--log-level', 'warn', '.']],
  ['luacheck', 'luacheck', ['dist-lua', '--no-color', '-q']],
  [
    'redocly',
    path.join(NODE_BIN, 'redocly'),
    ['lint', 'docs/openapi.yaml', '--format=stylish'],
    { REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
  ],
];

async function lint() {
  const r = { passed: 0, failed: 0, skipped: 0 };
  for (const [name, cmd, args, env] of LINTERS) {
    const code = await run(cmd, args, { env });
    console.log(`${name}: ${code === 0 ? 'ok' : 'FAILED'}`);
    if (code === 0) r.passed++;
    else r.failed++;
  }
  return r;
}

async function jest(extra) {
  const out = path.join(os.tmpdir(), `beamline-jest-${process.pid}.json`);
  const code = await run(process.execPath, [
    path.join(ROOT, 'node_modules', 'jest', 'bin', 'jest.js'),
    '--json',
    `--outputFile=${out}`,
    ...extra,
  ]);
  const r = { passed: 0, failed: 0, skipped: 0 };
  try {
    const j = JSON.parse(fs.readFileSync(out, 'utf8'));
    r.passed = j.numPassedTests;
    r.failed = j.numFailedTests + j.numRuntimeErrorTestSuites;
    r.skipped = j.numPendingTests + j.numTodoTests;
  } catch (err) {
    r.failed = 1;
  }
  fs.rmSync(out, { force: true });
  if (code !== 0 && r.failed === 0) r.failed = 1;
  return r;
}

async function main() {
  const argv = process.argv.slice(2);
  exitWithUsageIfAsked(argv, __filename);
  let only = null;
  const i = argv.indexOf('--only');
  if (i >= 0) {
    only = argv[i + 1];
    argv.splice(i, 2);
  }
  try {
    const c = compileLua();
    console.log(c.built ? `lua: compiled in ${c.ms} ms` : 'lua: up to date');
  } catch (err) {
    console.error(err.message);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  const results = [];
  if (!only || only === 'lint') {
    console.log('\n== lint ==');
    results.push(['lint', await lint()]);
  }
  if (!only || only === 'busted') {
    console.log('\n== busted (Lua unit specs, LuaJIT) ==');
    results.push(['busted', await busted()]);
  }
  if (!only || only === 'jest') {
    console.log('\n== jest (config, rendering, end-to-end) ==');
    results.push(['jest', await jest(argv)]);
  }
  const total = { passed: 0, failed: 0, skipped: 0 };
  console.log('');
  for (const [name, r] of results) {
    console.log(`${name}: ${r.passed} passed, ${r.failed} failed${r.skipped ? `, ${r.skipped} skipped` : ''}`);
    total.passed += r.passed;
    total.failed += r.failed;
    total.skipped += r.skipped;
  }
  // A skipped test is not a passing one: CI treats it as a failure to look at.
  if (total.skipped) console.log(`${total.skipped} skipped test(s) counted as failed`);
  const failed = total.failed + total.skipped;
  console.log(`${total.passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main();
