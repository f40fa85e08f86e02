'use strict';
// The Dockerfile cannot be built here (no Docker engine), so its invariants are checked by
// parsing it: multi-stage with the tested Debian runtime last (docs/adr/0004), a non-root user, the
// /healthz health check, graceful stop, the entrypoint's render --check → exec nginx, and the
// paths the entrypoint uses are the ones the COPY instructions fill.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { parseDockerfile, parseAssignments, stageVars, expand, copyArgs } = require('./dockerfile');
const { loadConfig } = require('../../scripts/lib/config');
const { render } = require('../../scripts/lib/render');

const ROOT = path.resolve(__dirname, '..', '..');
const text = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const { stages } = parseDockerfile(text);
const runtime = stages[stages.length - 1];
const vars = stageVars(runtime);
const script = fs.readFileSync(path.join(ROOT, 'deploy', 'docker-entrypoint.sh'), 'utf8');

const all = (stage, cmd) => stage.instructions.filter((i) => i.cmd === cmd);
const last = (stage, cmd) => all(stage, cmd).pop();
const stageByName = (name) => stages.find((s) => s.name === name);

/** WORKDIR in force at instruction `ins` of `stage`. */
function workdirAt(stage, ins) {
  let wd = '/';
  for (const i of stage.instructions) {
    if (i === ins) break;
    if (i.cmd === 'WORKDIR') wd = path.posix.resolve(wd, expand(i.rest, stageVars(stage)));
  }
  return wd;
}

/** Every path a stage's COPY instructions create: [{dest, from, source}]. */
function copiedPaths(stage) {
  const out = [];
  for (const ins of all(stage, 'COPY')) {
    const { sources, dest } = copyArgs(ins);
    const base = path.posix.resolve(workdirAt(stage, ins), dest);
    const intoDir = dest.endsWith('/') || sources.length > 1;
    for (const s of sources) {
      out.push({ dest: intoDir ? path.posix.join(base, path.posix.basename(s)) : base, from: ins.flags.from || null, source: s });
    }
  }
  return out;
}

/** Whether `p` is a path the runtime image has from a COPY (the path itself or inside a copied dir). */
function provided(p) {
  return copiedPaths(runtime).some((c) => p === c.dest || p.startsWith(c.dest + '/'));
}

/** Default of `${NAME:-default}` in the entrypoint script. */
function scriptDefault(name) {
  const m = new RegExp(`^${name}="\\$\\{${name}:-([^}]*)\\}"`, 'm').exec(script);
  return m ? m[1] : undefined;
}

/** The image's environment as the gateway sees it (ENV of the runtime stage). */
function imageEnv() {
  const env = {};
  for (const ins of all(runtime, 'ENV')) Object.assign(env, parseAssignments(ins.rest));
  return env;
}

describe('Dockerfile', () => {
  test('is multi-stage: node build stage(s), the Debian runtime the tests run on as the default (last) stage', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages[0].base).toMatch(/^node:\d+/);
    // the release the tests run on (Debian 12), never :latest
    expect(runtime.base).toBe('debian:bookworm-slim');
    expect(stages[0].base).toMatch(/-bookworm-slim$/);
    expect(runtime.name).toBe('runtime');
    const names = stages.map((s) => s.name).filter(Boolean);
    expect(new Set(names).size).toBe(names.length);
  });

  test('the runtime stage installs deploy/runtime-packages.txt, the list scripts/setup.sh installs for the tests', () => {
    const list = fs
      .readFileSync(path.join(ROOT, 'deploy', 'runtime-packages.txt'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.trim().startsWith('#'));
    expect(list).toEqual(expect.arrayContaining(['nginx', 'libnginx-mod-http-lua', 'lua-resty-core', 'lua-cjson', 'lua-nginx-redis']));
    expect(copiedPaths(runtime).map((c) => c.source)).toContain('deploy/runtime-packages.txt');
    const runs = all(runtime, 'RUN')
      .map((r) => r.rest)
      .join('\n');
    expect(runs).toMatch(/grep -Ev[^\n]*\/tmp\/runtime-packages\.txt[\s\S]*xargs apt-get install -y --no-install-recommends/);
    const setup = fs.readFileSync(path.join(ROOT, 'scripts', 'setup.sh'), 'utf8');
    expect(setup).toMatch(/deploy\/runtime-packages\.txt/);
    // and every one of them is what this machine runs the tests on
    const { spawnSync } = require('child_process');
    for (const p of list) {
      const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', p], { encoding: 'utf8' });
      expect({ p, status: r.stdout }).toEqual({ p, status: 'install ok installed' });
    }
  });

  test('COPY --from names an earlier stage; build-context sources exist and are not docker-ignored', () => {
    const ignore = fs
      .readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    stages.forEach((stage, idx) => {
      for (const ins of all(stage, 'COPY')) {
        const { sources } = copyArgs(ins);
        if (ins.flags.from) {
          const from = stages.findIndex((s) => s.name === ins.flags.from);
          expect({ line: ins.line, from: from >= 0 && from < idx }).toEqual({ line: ins.line, from: true });
          continue;
        }
        for (const s of sources) {
          expect({ line: ins.line, source: s, exists: fs.existsSync(path.join(ROOT, s)) }).toEqual({
            line: ins.line,
            source: s,
            exists: true,
          });
          const top = s.split('/')[0];
          expect({ source: s, ignored: ignore.includes(top) || ignore.includes(s) }).toEqual({ source: s, ignored: false });
        }
      }
    });
    // build output and local state never enter the build context
    for (const p of ['node_modules', 'dist-lua', 'nginx', '.git']) expect(ignore).toContain(p);
  });

  test('the build stage copies every input of `scripts/build.js` and builds the Lua', () => {
    const build = stageByName('build');
    const sources = copiedPaths(build).map((c) => c.source);
    for (const s of ['package.json', 'package-lock.json', 'tsconfig.json', 'gateway.yaml', 'src-ts', 'scripts', 'templates']) {
      expect(sources).toContain(s);
    }
    expect(
      all(build, 'RUN')
        .map((r) => r.rest)
        .join('\n'),
    ).toMatch(/npm ci[\s\S]*node scripts\/build\.js --force/);
    // the runtime gets production dependencies only
    const nm = copiedPaths(runtime).find((c) => c.dest === '/opt/beamline/node_modules');
    expect(nm.from).toBe('prod-deps');
    expect(
      all(stageByName('prod-deps'), 'RUN')
        .map((r) => r.rest)
        .join('\n'),
    ).toMatch(/npm prune --omit=dev/);
  });

  test('runs as a dedicated non-root user (numeric uid, so Kubernetes runAsNonRoot can verify it)', () => {
    const user = last(runtime, 'USER');
    expect(user).toBeDefined();
    // nothing after USER switches back to root
    expect(runtime.instructions.indexOf(user)).toBeGreaterThan(
      Math.max(...all(runtime, 'RUN').map((r) => runtime.instructions.indexOf(r))),
    );
    const [uid, gid] = expand(user.rest, vars).split(':');
    expect(uid).toMatch(/^\d+$/);
    expect(gid).toMatch(/^\d+$/);
    expect(Number(uid)).toBeGreaterThanOrEqual(1000);
    expect(Number(gid)).toBeGreaterThan(0);
    expect(['root', '0']).not.toContain(uid);
    // the same uid/gid is created in the image (no shell, no home)
    const runs = all(runtime, 'RUN')
      .map((r) => expand(r.rest, vars))
      .join('\n');
    expect(runs).toContain(`useradd --system --uid "${uid}"`);
    expect(runs).toContain(`groupadd --system --gid "${gid}"`);
    expect(runs).toMatch(/--shell \/usr\/sbin\/nologin/);
  });

  test('the master runs as that user, so the rendered config has no `user` directive', () => {
    const { config } = loadConfig({ file: path.join(ROOT, 'gateway.yaml'), env: imageEnv() });
    expect(config.server.user).toBeUndefined();
    const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'beamline-dockerfile-'));
    try {
      render(config, { prefix, luaDir: '/opt/beamline/dist-lua', runtime: 'debian' });
      expect(fs.readFileSync(path.join(prefix, 'nginx.conf'), 'utf8')).not.toMatch(/^\s*user\s/m);
    } finally {
      fs.rmSync(prefix, { recursive: true, force: true });
    }
  });

  test('read-only root filesystem: the prefix is the one writable path, and the rendered config writes nowhere else', () => {
    const prefix = vars.GATEWAY_PREFIX;
    expect(prefix).toBe('/var/run/beamline');
    expect(all(runtime, 'VOLUME').flatMap((v) => v.exec || v.rest.split(/\s+/))).toEqual([prefix]);
    const runs = all(runtime, 'RUN')
      .map((r) => expand(r.rest, vars))
      .join('\n');
    expect(runs).toContain(`mkdir -p ${prefix}`);
    expect(runs).toContain(`chown beamline:beamline ${prefix}`);
    // code stays root-owned: no COPY --chown, no chown of /opt/beamline
    for (const c of all(runtime, 'COPY')) expect(c.flags.chown).toBeUndefined();
    expect(runs).not.toMatch(/chown[^\n]*\/opt\/beamline/);

    // Render the image's config the way the entrypoint does (prefix on a temp dir standing in
    // for the volume) and collect every absolute path in the result.
    const { config } = loadConfig({ file: path.join(ROOT, 'gateway.yaml'), env: imageEnv() });
    expect(config.log.access_log).toBe('stdout');
    expect(config.log.error_log).toBe('stderr');
    expect(config.server.listen).toBe('0.0.0.0');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'beamline-dockerfile-'));
    try {
      const luaDir = `${vars.BEAMLINE_HOME}/dist-lua`;
      const out = render(config, { prefix: tmp, luaDir, runtime: vars.GATEWAY_RUNTIME });
      const texts = out.files.filter((f) => f.endsWith('.conf')).map((f) => fs.readFileSync(f, 'utf8'));
      // Every directive that makes nginx open or create a file: where it points.
      const FILE_DIRECTIVES =
        /^\s*(pid|error_log|access_log|client_body_temp_path|proxy_temp_path|fastcgi_temp_path|uwsgi_temp_path|scgi_temp_path)\s+(\S+?);?(\s|$)/;
      const targets = texts
        .join('\n')
        .split('\n')
        .map((l) => FILE_DIRECTIVES.exec(l))
        .filter(Boolean)
        .map((m) => [m[1], m[2]]);
      expect(targets.map(([d]) => d)).toEqual(expect.arrayContaining(['pid', 'error_log', 'access_log', 'client_body_temp_path']));
      const outside = targets.filter(([, p]) => p !== 'off' && !p.startsWith(`${tmp}/`) && !['/dev/stdout', 'stderr'].includes(p));
      expect(outside).toEqual([]);
      // the Lua is read from the image's dist-lua (and, on OpenResty, its built-in lualib)
      expect(texts.join('\n')).toContain(`${luaDir}/?.lua`);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('HEALTHCHECK runs node deploy/healthcheck.js against /healthz of the rendered config', () => {
    const hc = last(runtime, 'HEALTHCHECK');
    expect(hc).toBeDefined();
    expect(hc.exec).not.toBeNull();
    const [bin, file, ...args] = hc.exec;
    expect(bin).toBe('node');
    expect(provided(file)).toBe(true);
    expect(file).toBe(`${vars.BEAMLINE_HOME}/deploy/healthcheck.js`);
    expect(args[args.indexOf('--path') + 1]).toBe('/healthz');
    expect(args[args.indexOf('--prefix') + 1]).toBe(vars.GATEWAY_PREFIX);
    for (const f of ['interval', 'timeout', 'start-period', 'retries']) expect(hc.flags[f]).toBeDefined();
    // node itself is in the image
    expect(copiedPaths(runtime).map((c) => c.dest)).toContain('/usr/local/bin/node');
  });

  test('graceful stop (SIGQUIT) and a non-privileged port that matches the config', () => {
    expect(last(runtime, 'STOPSIGNAL').rest).toBe('SIGQUIT');
    const ports = all(runtime, 'EXPOSE')
      .flatMap((e) => e.rest.split(/\s+/))
      .map((p) => Number(p.replace(/\/tcp$/, '')));
    const { config } = loadConfig({ file: path.join(ROOT, 'gateway.yaml'), env: imageEnv() });
    expect(ports).toEqual([config.server.port]);
    expect(config.server.port).toBeGreaterThanOrEqual(1024);
  });

  test('ENTRYPOINT is the entrypoint script (exec form): render, `nginx -t` on the result, then exec nginx', () => {
    const ep = last(runtime, 'ENTRYPOINT');
    expect(ep.exec).toEqual([`${vars.BEAMLINE_HOME}/deploy/docker-entrypoint.sh`]);
    expect(provided(ep.exec[0])).toBe(true);
    expect(
      all(runtime, 'RUN')
        .map((r) => r.rest)
        .join('\n'),
    ).toContain(`chmod 0755 ${ep.exec[0]}`);
    expect(last(runtime, 'CMD').exec).toEqual([]);

    expect(script.startsWith('#!/bin/sh\n')).toBe(true);
    expect(script).toMatch(/^set -eu$/m); // a failed render or check stops the script
    const code = script
      .split('\n')
      .filter((l) => !l.trim().startsWith('#'))
      .join('\n')
      .replace(/\\\n\s*/g, ' ');
    const nginxArgs = '-p "$GATEWAY_PREFIX/" -c "$GATEWAY_PREFIX/nginx.conf" -e stderr';
    const renderAt = code.search(/^"\$NODE_BIN" "\$BEAMLINE_HOME\/scripts\/render\.js" /m);
    const checkAt = code.indexOf(`"$NGINX_BIN" -t ${nginxArgs}\n`);
    const execAt = code.indexOf(`exec "$NGINX_BIN" ${nginxArgs}`);
    expect(renderAt).toBeGreaterThan(-1);
    expect(checkAt).toBeGreaterThan(renderAt); // the check is `nginx -t` of exactly what runs next
    expect(execAt).toBeGreaterThan(checkAt);
    const renderLine = code.slice(renderAt).split('\n')[0];
    expect(renderLine).toContain('--runtime "$GATEWAY_RUNTIME"');
    expect(renderLine).toContain('--prefix "$GATEWAY_PREFIX"');
    expect(renderLine).toContain('--lua-dir "$BEAMLINE_HOME/dist-lua"');
    // nothing is backgrounded, nothing runs after the exec
    expect(code).not.toMatch(/&\s*$/m);
    expect(code.slice(execAt).trim().split('\n')).toHaveLength(1);
    // the build checks the same render on the image's own nginx (render.js --check)
    expect(
      all(runtime, 'RUN')
        .map((r) => r.rest)
        .join('\n'),
    ).toMatch(/node scripts\/render\.js --runtime debian --prefix \S+\s+--lua-dir \/opt\/beamline\/dist-lua --check/);
  });

  test('paths in the entrypoint are the COPY destinations and the image ENV', () => {
    // The script's defaults are the image's values (so it also works without the ENV)
    for (const k of ['BEAMLINE_HOME', 'GATEWAY_PREFIX', 'GATEWAY_RUNTIME', 'NGINX_BIN']) {
      expect({ [k]: scriptDefault(k) }).toEqual({ [k]: vars[k] });
    }
    expect(workdirAt(runtime, last(runtime, 'USER'))).toBe(vars.BEAMLINE_HOME);
    expect(vars.NGINX_BIN).toBe('/usr/sbin/nginx');
    expect(vars.GATEWAY_RUNTIME).toBe('debian');
    // every $BEAMLINE_HOME/... the script uses is copied into the image
    const used = [...script.matchAll(/\$BEAMLINE_HOME\/([\w./-]+)/g)].map((m) => `${vars.BEAMLINE_HOME}/${m[1]}`);
    expect(used).toEqual(expect.arrayContaining([`${vars.BEAMLINE_HOME}/scripts/render.js`, `${vars.BEAMLINE_HOME}/dist-lua`]));
    for (const p of used) expect({ p, provided: provided(p) }).toEqual({ p, provided: true });
    // and what render.js needs at run time: templates, package.json (version), the default
    // config, production node_modules
    for (const p of ['templates', 'package.json', 'gateway.yaml', 'node_modules', 'scripts/lib/render.js']) {
      expect({ p, provided: provided(`${vars.BEAMLINE_HOME}/${p}`) }).toEqual({ p, provided: true });
    }
    // the Lua the config points at is the build stage's output, at the same path
    const lua = copiedPaths(runtime).find((c) => c.dest === `${vars.BEAMLINE_HOME}/dist-lua`);
    expect(lua).toEqual({ dest: '/opt/beamline/dist-lua', from: 'build', source: '/opt/beamline/dist-lua' });
    expect(workdirAt(stageByName('build'), last(stageByName('build'), 'RUN'))).toBe(vars.BEAMLINE_HOME);
  });

  test('the reference-router stage is a node image running router/reference-router.js as a non-root user', () => {
    const r = stageByName('reference-router');
    expect(r.base).toMatch(/^node:\d+/);
    expect(last(r, 'ENTRYPOINT').exec).toEqual(['node', '/opt/beamline/router/reference-router.js']);
    expect(last(r, 'USER').rest).toBe('node');
    expect(last(r, 'HEALTHCHECK').exec).toEqual(['node', '/opt/beamline/deploy/router-healthcheck.js']);
    const dests = copiedPaths(r).map((c) => c.dest);
    expect(dests).toEqual(
      expect.arrayContaining(['/opt/beamline/router', '/opt/beamline/node_modules', '/opt/beamline/deploy/router-healthcheck.js']),
    );
    expect(stageVars(r).NATS_URL).toMatch(/^nats:\/\//);
    // it is not the default target
    expect(stages.indexOf(r)).toBeLessThan(stages.length - 1);
  });
});
