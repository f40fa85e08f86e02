'use strict';
// Every script under scripts/ answers --help with its usage (the comment block at its top) and
// exit 0, without doing its work; a wrong option is one clear line and a non-zero exit.
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const SCRIPTS = path.join(__dirname, '..', '..', 'scripts');
const scripts = fs.readdirSync(SCRIPTS).filter((f) => f.endsWith('.js'));
const run = (file, args) => spawnSync(process.execPath, [path.join(SCRIPTS, file), ...args], { encoding: 'utf8', timeout: 20000 });

test('there are scripts to check', () => {
  expect(scripts).toEqual(expect.arrayContaining(['bench.js', 'build.js', 'run.js', 'test.js', 'lua-trace.js', 'switch.js']));
});

test.each(scripts)('%s --help prints its usage and exits 0 without running', (file) => {
  const header = fs
    .readFileSync(path.join(SCRIPTS, file), 'utf8')
    .split('\n')
    .find((l) => l.startsWith('// '))
    .slice(3);
  const t0 = Date.now();
  const r = run(file, ['--help']);
  expect(r.status).toBe(0);
  expect(r.stdout.split('\n')[0]).toBe(header);
  expect(r.stdout).not.toMatch(/^\/\//m);
  // test.js/run.js/bench.js would take seconds or minutes if they started their work.
  expect(Date.now() - t0).toBeLessThan(5000);
});

test.each(['build.js', 'check.js', 'render.js', 'reliability.js', 'switch.js', 'k8s-configmap.js'])(
  '%s --no-such-option fails with one line that points to --help',
  (file) => {
    const r = run(file, ['--no-such-option']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/unknown option --no-such-option \(see --help\)/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  },
);

test('lua-trace.js names a file it cannot read', () => {
  const r = run('lua-trace.js', ['/nonexistent/error.log']);
  expect(r.status).toBe(2);
  expect(r.stderr.trim()).toBe('lua-trace: cannot read /nonexistent/error.log: ENOENT');
});
