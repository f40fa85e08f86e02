'use strict';
// The OpenResty typings (src-ts/types): spec/types/usage.ts must type-check with the project's
// settings (its @ts-expect-error lines must really be errors), and TypeScriptToLua must emit
// the right call syntax: `.` for free functions, `:` for socket/semaphore/shared-dict methods.
const path = require('path');
const fs = require('fs');
const ts = require('typescript');
const tstl = require('typescript-to-lua');

const ROOT = path.resolve(__dirname, '..', '..');

let result;
beforeAll(() => {
  const emitted = {};
  const { config } = ts.readConfigFile(path.join(ROOT, 'tsconfig.json'), ts.sys.readFile);
  const typings = fs
    .readdirSync(path.join(ROOT, 'src-ts', 'types'))
    .filter((f) => f.endsWith('.d.ts'))
    .map((f) => path.join(ROOT, 'src-ts', 'types', f));
  const files = [path.join(__dirname, 'usage.ts'), ...typings];
  const parsed = ts.parseJsonConfigFileContent({ ...config, include: undefined, files }, ts.sys, ROOT);
  const options = { ...parsed.options, ...config.tstl, rootDir: ROOT, outDir: '/virtual-out', sourceMap: false };
  const host = ts.createCompilerHost(options);
  const program = ts.createProgram(files, options, host);
  const r = new tstl.Transpiler().emit({
    program,
    writeFile: (name, text) => {
      emitted[path.basename(name)] = text;
    },
  });
  result = { diagnostics: [...ts.getPreEmitDiagnostics(program), ...r.diagnostics], lua: emitted['usage.lua'] };
});

test('usage.ts type-checks and every @ts-expect-error line is a real error', () => {
  const messages = result.diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  expect(messages).toEqual([]);
});

test('free functions compile to `.` calls', () => {
  for (const call of [
    'ngx.say(',
    'ngx.log(',
    'ngx.req.get_headers(',
    'ngx.socket.tcp()',
    'ngx.timer.at(',
    'ngx.thread.spawn(',
    'ngx.re.match(',
    'ngx.worker.exiting()',
    'semaphore.new(',
    'cjson.encode(',
    'cjsonSafe.decode(',
    'tableNew(',
  ]) {
    expect(result.lua).toContain(call);
  }
  expect(result.lua).not.toMatch(/ngx:|ngx\.\w+:|cjson:|cjsonSafe:|semaphore:/);
});

test('socket, semaphore and shared-dict methods compile to `:` calls', () => {
  for (const call of [
    'sock:settimeouts(',
    'sock:connect(',
    'sock:send(',
    'sock:receive(',
    'sock:receiveany(',
    'sock:close(',
    'sema:post(',
    'sema:wait(',
    'dict:incr(',
    'dict:get(',
  ]) {
    expect(result.lua).toContain(call);
  }
});

test('multi-return APIs destructure into several Lua locals', () => {
  expect(result.lua).toMatch(/local ok, cerr = sock:connect\("127\.0\.0\.1", 4222\)/);
  expect(result.lua).toMatch(/local data, rerr, partial = sock:receive\("\*l"\)/);
});
