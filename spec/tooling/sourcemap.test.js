'use strict';
// Lua positions → TypeScript lines, with the source maps TypeScriptToLua writes.
const fs = require('fs');
const path = require('path');
const { decodeSegment, mapText } = require('../../scripts/lib/sourcemap');
const { compileLua } = require('../../scripts/lib/build');

const ROOT = path.resolve(__dirname, '..', '..');
beforeAll(() => compileLua());

const lineOf = (file, needle) =>
  fs
    .readFileSync(path.join(ROOT, file), 'utf8')
    .split('\n')
    .findIndex((l) => l.includes(needle)) + 1;

test('base64 VLQ segments decode', () => {
  expect(decodeSegment('AAAA')).toEqual([0, 0, 0, 0]);
  expect(decodeSegment('AACA')).toEqual([0, 0, 1, 0]);
  expect(decodeSegment('gBAAD')).toEqual([16, 0, 0, -1]);
  expect(() => decodeSegment('A*')).toThrow(/bad VLQ/);
});

test('a compiled line maps to the TypeScript line it came from', () => {
  const luaLine = lineOf('dist-lua/beamline/phases.lua', 'function ____exports.init_worker(');
  const tsLine = lineOf('src-ts/beamline/phases.ts', 'export function init_worker(');
  expect(luaLine).toBeGreaterThan(0);
  expect(mapText(`error at ${ROOT}/dist-lua/beamline/phases.lua:${luaLine}: boom`, ROOT)).toBe(
    `error at src-ts/beamline/phases.ts:${tsLine} (dist-lua/beamline/phases.lua:${luaLine}): boom`,
  );
});

test('chunk names Lua shortened from the front still map', () => {
  const luaLine = lineOf('dist-lua/beamline/phases.lua', 'function ____exports.init_worker(');
  const tsLine = lineOf('src-ts/beamline/phases.ts', 'export function init_worker(');
  expect(mapText(`runtime error: ...k/copy/dist-lua/beamline/phases.lua:${luaLine}: x`, ROOT)).toBe(
    `runtime error: src-ts/beamline/phases.ts:${tsLine} (dist-lua/beamline/phases.lua:${luaLine}): x`,
  );
});

test('text without a known Lua file is left alone', () => {
  const text = 'dist-lua/no/such/module.lua:3: x and plain.lua:4';
  expect(mapText(text, ROOT)).toBe(text);
});
