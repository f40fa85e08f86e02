'use strict';
// `make dev` (scripts/dev.js) on a copy of the repository: an edit goes live, a broken edit keeps
// the last good version serving, and Lua errors in the nginx log point at the TypeScript line.
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');
const { request } = require('../support/gateway');
const { freePort, tmpRoot } = require('../support/processes');

const ROOT = path.resolve(__dirname, '..', '..');
const HEALTH = 'src-ts/beamline/handlers/health.ts';

function copyRepo() {
  const dir = path.join(tmpRoot(), 'dev-copy');
  fs.mkdirSync(dir, { recursive: true });
  for (const f of [
    'src-ts',
    'scripts',
    'templates',
    'router',
    'docs',
    'tsconfig.json',
    'package.json',
    'package-lock.json',
    'gateway.yaml',
  ]) {
    fs.cpSync(path.join(ROOT, f), path.join(dir, f), { recursive: true });
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  // Reuse the compiled Lua so the first build is quick.
  if (fs.existsSync(path.join(ROOT, 'dist-lua'))) fs.cpSync(path.join(ROOT, 'dist-lua'), path.join(dir, 'dist-lua'), { recursive: true });
  return dir;
}

function edit(dir, file, from, to) {
  const p = path.join(dir, file);
  const text = fs.readFileSync(p, 'utf8');
  if (!text.includes(from)) throw new Error(`${file} does not contain ${from}`);
  fs.writeFileSync(p, text.replace(from, to));
}

test('an edit goes live, a broken edit keeps serving, and Lua errors map to TypeScript', async () => {
  const dir = copyRepo();
  const port = await freePort();
  const env = { ...process.env, GATEWAY_PORT: String(port), NATS_PORT: String(await freePort()) };
  delete env.NATS_URL;
  const child = spawn(process.execPath, [path.join(dir, 'scripts', 'dev.js')], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  let exitCode;
  const exited = new Promise((r) =>
    child.on('exit', (code) => {
      exitCode = code;
      r(code);
    }),
  );
  const waitFor = async (pattern, from, ms = 30000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = out.slice(from).match(pattern);
      if (m) return m;
      if (exitCode !== undefined) throw new Error(`dev exited (${exitCode}) while waiting for ${pattern}; output:\n${out}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; output:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const healthz = async () => (await request(`http://127.0.0.1:${port}`, { path: '/healthz' })).body;
  try {
    await waitFor(/watching src-ts\/, templates\/ and the config/, 0, 60000);
    expect(await healthz()).toBe('{"status":"ok"}');

    // 1. a good edit goes live
    let mark = out.length;
    edit(dir, HEALTH, `const HEALTHZ_BODY = '{"status":"ok"}';`, `const HEALTHZ_BODY = '{"status":"ok","v":2}';`);
    const live = await waitFor(/src-ts: live in (\d+) ms/, mark);
    console.log(`edit → live: ${live[1]} ms`);
    expect(await healthz()).toBe('{"status":"ok","v":2}');

    // 2. a broken edit is reported and the last good version keeps serving
    mark = out.length;
    edit(dir, HEALTH, `const HEALTHZ_BODY = '{"status":"ok","v":2}';`, `const HEALTHZ_BODY: number = '{"status":"broken"}';`);
    await waitFor(/TypeScript: 1 error\(s\):\n.*health\.ts\(\d+,\d+\): error TS2322[\s\S]*last good version keeps serving/, mark);
    expect(await healthz()).toBe('{"status":"ok","v":2}');

    // 3. a template that nginx rejects is reported, not loaded
    mark = out.length;
    edit(dir, 'templates/conf.d/00-http.conf.hbs', 'server_tokens off;', 'server_tokens maybe;');
    await waitFor(/nginx -t failed:[\s\S]*invalid value "maybe"[\s\S]*last good version keeps serving/, mark);
    expect(await healthz()).toBe('{"status":"ok","v":2}');
    edit(dir, 'templates/conf.d/00-http.conf.hbs', 'server_tokens maybe;', 'server_tokens off;');

    // 4. a Lua runtime error: the log line shown points at the TypeScript source
    mark = out.length;
    edit(dir, HEALTH, `const HEALTHZ_BODY: number = '{"status":"broken"}';`, `const HEALTHZ_BODY = '{"status":"ok"}';`);
    edit(dir, HEALTH, 'export function live(): void {', 'export function live(): void {\n    error("dev-test-boom");');
    await waitFor(/src-ts: live in \d+ ms/, mark);
    const r = await request(`http://127.0.0.1:${port}`, { path: '/health/live' });
    expect(r.status).toBe(500);
    expect(r.json.error.code).toBe('internal');
    const lines = fs.readFileSync(path.join(dir, HEALTH), 'utf8').split('\n');
    const tsLine = lines.findIndex((l) => l.includes('dev-test-boom')) + 1;
    await waitFor(new RegExp(`\\[nginx\\].*dev-test-boom.*|\\[nginx\\].*src-ts/beamline/handlers/health\\.ts:${tsLine}`), mark, 10000);
    expect(out.slice(mark)).toContain(`src-ts/beamline/handlers/health.ts:${tsLine} (dist-lua/beamline/handlers/health.lua:`);
  } finally {
    if (exitCode === undefined) child.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 20000))]);
    if (code === 'timeout') child.kill('SIGKILL');
  }
}, 120000);
