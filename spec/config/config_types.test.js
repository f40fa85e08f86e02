'use strict';
// The TypeScript config types (src-ts/beamline/config.ts) must say exactly what the schema
// (scripts/lib/config-schema.js) says: every key, optional where the schema has no default and
// does not require it, and the same kind of value. Checked with the TypeScript compiler's own
// type checker, so the Lua side can never read a key the schema does not give it (issue 18:
// GatewayConfig.server listed three of its keys).
const path = require('path');
const ts = require('typescript');
const { schema } = require('../../scripts/lib/config-schema');

const ROOT = path.resolve(__dirname, '..', '..');
const FILE = path.join(ROOT, 'src-ts', 'beamline', 'config.ts');
// Keys the renderer adds to gateway.json beside the validated config.
const RENDER_ADDED = new Set(['version', 'dns_hosts']);

function checker() {
  const program = ts.createProgram([FILE], { strict: true, noEmit: true, skipLibCheck: true, types: [] });
  const tc = program.getTypeChecker();
  const sf = program.getSourceFile(FILE);
  let iface;
  ts.forEachChild(sf, (n) => {
    if (ts.isInterfaceDeclaration(n) && n.name.text === 'GatewayConfig') iface = n;
  });
  return { tc, type: tc.getTypeAtLocation(iface) };
}

/** What kind of value a schema node describes: object | array | number | string | boolean | any. */
function schemaKind(node) {
  if (node.enum) return typeof node.enum[0];
  if (node.const !== undefined) return typeof node.const;
  if (node.oneOf || node.anyOf) return 'any';
  return (
    { integer: 'number', number: 'number', string: 'string', boolean: 'boolean', object: 'object', array: 'array' }[node.type] || 'any'
  );
}

function tsKind(tc, type) {
  const t = tc.getNonNullableType(type);
  if (t.isUnion()) {
    const kinds = new Set(t.types.map((u) => tsKind(tc, u)));
    return kinds.size === 1 ? [...kinds][0] : 'any';
  }
  if (t.flags & ts.TypeFlags.NumberLike) return 'number';
  if (t.flags & ts.TypeFlags.StringLike) return 'string';
  if (t.flags & ts.TypeFlags.BooleanLike) return 'boolean';
  if (tc.isArrayType(t)) return 'array';
  if (t.flags & ts.TypeFlags.Object) return 'object';
  return 'any';
}

function compare(tc, type, node, at, out) {
  const props = node.properties || {};
  const required = new Set(node.required || []);
  const tsProps = new Map(tc.getPropertiesOfType(tc.getNonNullableType(type)).map((p) => [p.name, p]));
  for (const [key, sub] of Object.entries(props)) {
    const where = at ? `${at}.${key}` : key;
    const p = tsProps.get(key);
    if (!p) {
      out.push(`${where}: in the schema, missing from the TypeScript type`);
      continue;
    }
    const optional = (p.flags & ts.SymbolFlags.Optional) !== 0;
    const always = sub.default !== undefined || required.has(key);
    if (always && optional) out.push(`${where}: always present (schema default or required) but optional in TypeScript`);
    if (!always && !optional) out.push(`${where}: may be absent (no default) but not optional in TypeScript`);
    const ptype = tc.getTypeOfSymbol(p);
    const want = schemaKind(sub);
    const have = tsKind(tc, ptype);
    if (want !== 'any' && have !== 'any' && want !== have) out.push(`${where}: schema ${want}, TypeScript ${have}`);
    if (want === 'object' && sub.properties) compare(tc, ptype, sub, where, out);
    if (want === 'array' && sub.items && sub.items.properties) {
      const el = tc.getIndexTypeOfType(tc.getNonNullableType(ptype), ts.IndexKind.Number);
      if (el) compare(tc, el, sub.items, `${where}[]`, out);
    }
  }
  for (const key of tsProps.keys()) {
    const where = at ? `${at}.${key}` : key;
    if (!(key in props) && !(at === '' && RENDER_ADDED.has(key))) out.push(`${where}: in the TypeScript type, not in the schema`);
  }
}

test('GatewayConfig in src-ts/beamline/config.ts matches the JSON schema key for key', () => {
  const { tc, type } = checker();
  const problems = [];
  compare(tc, type, schema, '', problems);
  expect(problems).toEqual([]);
});

test('the check sees a drift: a schema key the type lacks is reported', () => {
  const { tc, type } = checker();
  const problems = [];
  const drifted = { ...schema, properties: { ...schema.properties, extra_section: { type: 'object', default: {}, properties: {} } } };
  compare(tc, type, drifted, '', problems);
  expect(problems).toContain('extra_section: in the schema, missing from the TypeScript type');
});
