'use strict';
// Maps positions in the compiled Lua (dist-lua/**/*.lua) back to the TypeScript source, using
// the .lua.map files TypeScriptToLua writes next to each module. Done offline (on log lines and
// test output), so the request path in nginx pays nothing for it.
const fs = require('fs');
const path = require('path');

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = Object.fromEntries([...B64].map((c, i) => [c, i]));

/** Decodes one base64-VLQ segment into its numbers. */
function decodeSegment(seg) {
  const out = [];
  let value = 0;
  let shift = 0;
  for (const ch of seg) {
    const digit = B64_INDEX[ch];
    if (digit === undefined) throw new Error(`bad VLQ character ${JSON.stringify(ch)}`);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
    } else {
      out.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return out;
}

/**
 * Parses a source map into a lookup: generated line (1-based) → {source, line} of the first
 * mapping on that line (Lua errors carry line numbers only).
 */
function parseMap(map, mapFile) {
  const lines = map.mappings.split(';');
  const byLine = new Array(lines.length + 1);
  let src = 0;
  let origLine = 0;
  lines.forEach((segments, i) => {
    if (!segments) return;
    for (const seg of segments.split(',')) {
      const f = decodeSegment(seg);
      if (f.length < 4) continue;
      src += f[1];
      origLine += f[2];
      if (byLine[i + 1] === undefined) {
        byLine[i + 1] = { source: path.resolve(path.dirname(mapFile), map.sourceRoot || '', map.sources[src]), line: origLine + 1 };
      }
    }
  });
  return byLine;
}

const cache = new Map();

/** The TypeScript position of `luaFile:line`, or undefined when there is no mapping. */
function lookup(luaFile, line) {
  const mapFile = `${luaFile}.map`;
  let byLine = cache.get(mapFile);
  if (byLine === undefined) {
    try {
      byLine = parseMap(JSON.parse(fs.readFileSync(mapFile, 'utf8')), mapFile);
    } catch (err) {
      byLine = null;
    }
    cache.set(mapFile, byLine);
  }
  if (!byLine) return undefined;
  // A line without its own mapping (a generated helper line): use the closest one above.
  for (let l = line; l > 0; l--) if (byLine[l]) return byLine[l];
  return undefined;
}

/**
 * Rewrites every `…dist-lua/x/y.lua:N` in a text to `src-ts/x/y.ts:M (dist-lua/x/y.lua:N)`.
 * Only the part from `dist-lua/` on is used: Lua shortens long chunk names from the front
 * (`...ec-wlAFek/dev-copy/dist-lua/…`), so the module path is resolved against `root`.
 * @param {string} text
 * @param {string} root repository root (paths in the output are relative to it)
 */
function mapText(text, root) {
  return text.replace(/[^\s:'"()]*?(dist-lua\/[\w./-]+\.lua):(\d+)/g, (all, file, line) => {
    const hit = lookup(path.join(root, file), Number(line));
    if (!hit) return all;
    return `${path.relative(root, hit.source)}:${hit.line} (${file}:${line})`;
  });
}

/** Forgets parsed maps (after a rebuild). */
function clearCache() {
  cache.clear();
}

module.exports = { decodeSegment, parseMap, lookup, mapText, clearCache };
