'use strict';
// Offline validation of Kubernetes manifests for the deploy tests, with the kubernetes-models
// package (devDependency): the Kubernetes OpenAPI schemas of every built-in kind, precompiled
// into Ajv validators.
//
// 1. schema(): the object against its kind's JSON schema (types, required fields, enums,
//    formats), like the API server's validation of a well-formed object;
// 2. unknownFields(): the Kubernetes schemas allow unknown fields (the API server drops them,
//    or rejects them under `kubectl apply --validate=strict`), so a misspelt key (`readinesProbe`)
//    would pass 1. This check type-checks each manifest as an object literal against the
//    package's TypeScript interface of its kind, where an unknown key at any depth is an error.
const path = require('path');
const ts = require('typescript');

const ROOT = path.resolve(__dirname, '..', '..');

/** kubernetes-models module of an apiVersion: "v1" → core, "apps/v1" → apps/v1. */
function modulePath(apiVersion) {
  if (typeof apiVersion !== 'string' || !/^([a-z0-9.-]+\/)?v\d+((alpha|beta)\d+)?$/.test(apiVersion)) {
    throw new Error(`unsupported apiVersion ${JSON.stringify(apiVersion)}`);
  }
  return `kubernetes-models/${apiVersion}`;
}

/**
 * @param {object} obj  one manifest
 * @returns {string[]} schema errors ([] when valid)
 */
function schema(obj) {
  let Model;
  try {
    Model = require(modulePath(obj.apiVersion))[obj.kind];
  } catch (e) {
    return [`${obj.apiVersion}/${obj.kind}: ${e.message}`];
  }
  if (typeof Model !== 'function') return [`${obj.apiVersion}/${obj.kind}: unknown kind`];
  try {
    new Model(obj).validate();
    return [];
  } catch (e) {
    return String(e.message)
      .split(/,\s*(?=data)/)
      .map((m) => `${obj.kind}: ${m}`);
  }
}

/**
 * @param {Array<{name: string, obj: object}>} manifests
 * @returns {string[]} one message per unknown or mistyped field, with the manifest's name
 */
function unknownFields(manifests) {
  const file = path.join(ROOT, 'spec', 'deploy', '__k8s_manifests__.ts');
  const lines = [];
  const names = [];
  manifests.forEach(({ obj }, i) => {
    lines.push(`import type { I${obj.kind} as T${i} } from ${JSON.stringify(modulePath(obj.apiVersion))};`);
  });
  manifests.forEach(({ name, obj }, i) => {
    names.push({ line: lines.length, name });
    lines.push(`export const m${i}: T${i} = ${JSON.stringify(obj, null, 1)};`);
  });
  const source = lines.join('\n');
  const options = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.Preserve,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (f, lang, ...rest) =>
    path.resolve(f) === file ? ts.createSourceFile(f, source, lang, true) : getSourceFile.call(host, f, lang, ...rest);
  host.fileExists = (f) => path.resolve(f) === file || fileExists.call(host, f);
  host.readFile = (f) => (path.resolve(f) === file ? source : readFile.call(host, f));
  const program = ts.createProgram([file], options, host);
  const sf = program.getSourceFile(file);
  return ts.getPreEmitDiagnostics(program, sf).map((d) => {
    const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n').split('\n')[0];
    if (!d.file || d.start === undefined) return msg;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const owner = names.filter((n) => n.line <= line).pop();
    const text = source.split('\n')[line].trim();
    return `${owner ? owner.name : '?'}: ${msg} (at ${text})`;
  });
}

module.exports = { schema, unknownFields, modulePath };
