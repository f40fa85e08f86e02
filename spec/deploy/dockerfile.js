'use strict';
// A small Dockerfile parser for the deploy tests (no Docker engine here): enough of the syntax
// this repository uses — comments, `\` continuations, exec (JSON) and shell forms, stages,
// ARG/ENV substitution of ${VAR} / $VAR.

/**
 * @typedef {object} Instruction
 * @property {string} cmd     upper-case instruction (FROM, RUN, COPY, …)
 * @property {string} raw     the arguments as written (continuations joined)
 * @property {string[]|null} exec  the JSON array of an exec-form instruction, else null
 * @property {Object<string,string>} flags  --flag=value options (COPY --from, HEALTHCHECK --interval, …)
 * @property {string} rest    the arguments after the flags
 * @property {number} line    1-based line of the instruction's start
 */

/** @returns {Instruction[]} */
function parseInstructions(text) {
  const out = [];
  const lines = text.split('\n');
  let buf = null;
  let start = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const trimmed = line.trim();
    if (buf === null) {
      if (trimmed === '' || trimmed.startsWith('#')) continue;
      buf = '';
      start = i + 1;
    } else if (trimmed.startsWith('#')) {
      continue; // comment lines inside a continuation are removed by Docker
    }
    if (/\\\s*$/.test(line)) {
      buf += line.replace(/\\\s*$/, ' ');
      continue;
    }
    buf += line;
    out.push(toInstruction(buf.trim(), start));
    buf = null;
  }
  if (buf !== null) out.push(toInstruction(buf.trim(), start));
  return out;
}

function toInstruction(text, line) {
  const m = /^(\S+)\s*([\s\S]*)$/.exec(text);
  const cmd = m[1].toUpperCase();
  const raw = m[2].trim();
  const flags = {};
  let rest = raw;
  for (;;) {
    const f = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(rest);
    if (!f) break;
    flags[f[1]] = f[2] === undefined ? true : f[2];
    rest = rest.slice(f[0].length);
  }
  let exec = null;
  // HEALTHCHECK CMD [..] / exec-form RUN, CMD, ENTRYPOINT, VOLUME
  const jsonPart = cmd === 'HEALTHCHECK' ? rest.replace(/^CMD\s+/, '') : rest;
  if (jsonPart.startsWith('[')) {
    try {
      exec = JSON.parse(jsonPart);
    } catch (e) {
      exec = null;
    }
  }
  return { cmd, raw, flags, rest, exec, line };
}

/**
 * Splits the instructions into stages. ARGs before the first FROM are global.
 * @returns {{stages: Array<{name: string|null, base: string, index: number, instructions: Instruction[]}>, globalArgs: Object<string,string>}}
 */
function parseDockerfile(text) {
  const instructions = parseInstructions(text);
  const stages = [];
  const globalArgs = {};
  for (const ins of instructions) {
    if (ins.cmd === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.rest);
      stages.push({ name: m[2] ? m[2] : null, base: m[1], index: stages.length, instructions: [] });
    } else if (!stages.length) {
      if (ins.cmd === 'ARG') Object.assign(globalArgs, parseAssignments(ins.rest));
    } else {
      stages[stages.length - 1].instructions.push(ins);
    }
  }
  return { stages, globalArgs, instructions };
}

/** `A=1 B="two words"` or legacy `A 1` → {A: '1', …}. */
function parseAssignments(s) {
  const out = {};
  if (!s.includes('=')) {
    const m = /^(\S+)\s+([\s\S]*)$/.exec(s);
    if (m) out[m[1]] = m[2];
    else out[s] = '';
    return out;
  }
  const re = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g;
  let m;
  while ((m = re.exec(s))) out[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2]) : m[2];
  return out;
}

/** The ARG defaults and ENV values of one stage, in order (later wins). */
function stageVars(stage) {
  const vars = {};
  for (const ins of stage.instructions) {
    if (ins.cmd === 'ARG' || ins.cmd === 'ENV') Object.assign(vars, parseAssignments(ins.rest));
  }
  return vars;
}

/** Expands ${VAR} and $VAR from `vars` (unknown variables stay as written). */
function expand(s, vars) {
  return s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, a, b) => {
    const k = a || b;
    return Object.prototype.hasOwnProperty.call(vars, k) ? vars[k] : all;
  });
}

/** Shell-ish word split of a COPY's arguments (no quotes are used in this repository's COPYs). */
function copyArgs(ins) {
  if (ins.exec) return { sources: ins.exec.slice(0, -1), dest: ins.exec[ins.exec.length - 1] };
  const words = ins.rest.split(/\s+/).filter(Boolean);
  return { sources: words.slice(0, -1), dest: words[words.length - 1] };
}

module.exports = { parseDockerfile, parseInstructions, parseAssignments, stageVars, expand, copyArgs };
