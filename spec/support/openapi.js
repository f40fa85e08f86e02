'use strict';
/**
 * Validates gateway responses against docs/openapi.yaml: the status must be documented for the
 * operation (method + path template), every header the response object marks `required` must be
 * there, every documented header that is there must match its schema, the Content-Type must be
 * one of the response's media types (none: no body), and a JSON body must match the media
 * type's schema (Ajv, JSON Schema 2020-12 as OpenAPI 3.1 uses).
 *
 * Requests the document's paths do not list are checked against its `x-beamline-unlisted`
 * responses: `paths` for a path it does not list, `methods` for a method a listed path does not
 * answer. `HEAD` is checked as `GET` without a body.
 *
 * spec/contract/support.js installs `validateResponse` as a response hook of every request the
 * contract suite makes (spec/support/gateway.js `onResponse`), so the document cannot drift
 * from the gateway.
 */
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');
const Ajv2020 = require('ajv/dist/2020');
const addFormats = require('ajv-formats');

const DOC_PATH = path.join(__dirname, '..', '..', 'docs', 'openapi.yaml');
const DOC_ID = 'https://beamline.dev/openapi.json';

let cached;

/** A path template (`/a/{id}`) as a regex: each `{name}` matches one segment. */
const templateRegex = (template) => new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+')}$`);

/** The parsed document, its Ajv instance and the path templates as regexes. */
function load() {
  if (cached) return cached;
  const doc = YAML.parse(fs.readFileSync(DOC_PATH, 'utf8'));
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  addFormats(ajv);
  ajv.addSchema({ ...doc, $id: DOC_ID });
  const paths = Object.keys(doc.paths).map((template) => ({
    template,
    literal: !template.includes('{'),
    regex: templateRegex(template),
  }));
  // Literal paths first: /api/v1/messages/stream is not an instance of another template.
  paths.sort((a, b) => Number(b.literal) - Number(a.literal));
  cached = { doc, ajv, paths, validators: new Map(), configured: [] };
  return cached;
}

/**
 * The gateway under test serves these configured HTTP→NATS routes (`nats_routes`, §12) too: a
 * request to one the document does not list is checked against `x-beamline-nats-route`.
 * @param {{method: string, path: string}[]} routes
 */
function addConfiguredRoutes(routes = []) {
  const c = load();
  for (const r of routes) {
    if (c.doc.paths[r.path]) continue;
    const regex = templateRegex(r.path);
    if (!c.configured.some((x) => x.method === r.method && x.regex.source === regex.source)) c.configured.push({ method: r.method, regex });
  }
}

const pointer = (parts) => '#/' + parts.map((p) => String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

/** Follows a local $ref (responses, headers) to the object and its JSON pointer. */
function deref(doc, obj, ptr) {
  let o = obj;
  let p = ptr;
  while (o && o.$ref) {
    p = o.$ref;
    o = p
      .slice(2)
      .split('/')
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
      .reduce((acc, k) => (acc === undefined ? undefined : acc[k]), doc);
  }
  return { obj: o, ptr: p };
}

/** An Ajv validator for the schema at a JSON pointer into the document. */
function validatorAt(ptr) {
  const { ajv, validators } = load();
  if (!validators.has(ptr)) validators.set(ptr, ajv.compile({ $ref: DOC_ID + ptr }));
  return validators.get(ptr);
}

function errorsText(v) {
  return (v.errors || [])
    .slice(0, 5)
    .map(
      (e) =>
        `${e.instancePath || '(root)'} ${e.message}${e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : ''}`,
    )
    .join('; ');
}

/** Header value as the schema sees it: integers for integer schemas. */
function headerValue(value, schema) {
  const v = Array.isArray(value) ? value.join(', ') : String(value);
  if (schema && schema.type === 'integer' && /^-?\d+$/.test(v)) return Number(v);
  return v;
}

/**
 * The documented response object for (method, path, status): {response, ptr, where} or a
 * problem string.
 */
function findResponse(method, urlPath, status) {
  const { doc, paths } = load();
  const m = method.toUpperCase() === 'HEAD' ? 'get' : method.toLowerCase();
  const p = urlPath.split('?')[0];
  const match = paths.find((x) => x.regex.test(p));
  let responses;
  let base;
  let where;
  const configured = match ? [] : load().configured.filter((x) => x.regex.test(p));
  if (configured.length) {
    const own = configured.some((x) => x.method === (m === 'get' && method.toUpperCase() === 'HEAD' ? 'GET' : method.toUpperCase()));
    // CORS preflight and other methods answer as on every API route.
    responses = own ? doc['x-beamline-nats-route'].responses : doc['x-beamline-unlisted'].methods;
    base = own ? ['x-beamline-nats-route', 'responses'] : ['x-beamline-unlisted', 'methods'];
    where = `${method} ${p} (configured NATS route${own ? '' : ', method not listed'})`;
  } else if (!match) {
    responses = doc['x-beamline-unlisted'].paths;
    base = ['x-beamline-unlisted', 'paths'];
    where = `unlisted path ${p}`;
  } else if (!doc.paths[match.template][m]) {
    responses = doc['x-beamline-unlisted'].methods;
    base = ['x-beamline-unlisted', 'methods'];
    where = `${method} ${match.template} (method not listed)`;
  } else {
    responses = doc.paths[match.template][m].responses;
    base = ['paths', match.template, m, 'responses'];
    where = `${method} ${match.template}`;
  }
  const key = [String(status), `${String(status)[0]}XX`, 'default'].find((k) => responses[k] !== undefined);
  if (key === undefined) return { problem: `${where}: status ${status} is not documented` };
  const { obj, ptr } = deref(doc, responses[key], pointer([...base, key]));
  return { response: obj, ptr, where: `${where} → ${status}` };
}

/**
 * Problems of one response (empty when it matches the document).
 * @param {{method?: string, path?: string}} req
 * @param {{status: number, headers: object, body: string}} res
 */
function checkResponse(req, res) {
  const { doc } = load();
  const method = (req.method || 'GET').toUpperCase();
  const found = findResponse(method, req.path || '/', res.status);
  if (found.problem) return [found.problem];
  const { response, ptr, where } = found;
  const problems = [];
  const headers = res.headers || {};
  for (const [name, h0] of Object.entries(response.headers || {})) {
    const { obj: h, ptr: hptr } = deref(doc, h0, `${ptr}/headers/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`);
    const value = headers[name.toLowerCase()];
    if (value === undefined) {
      if (h.required) problems.push(`${where}: required header ${name} missing`);
      continue;
    }
    const v = validatorAt(`${hptr}/schema`);
    if (!v(headerValue(value, h.schema))) problems.push(`${where}: header ${name}: ${JSON.stringify(value)} ${errorsText(v)}`);
  }
  const content = response.content || {};
  const types = Object.keys(content);
  const body = res.body === undefined ? '' : String(res.body);
  const ct = String(headers['content-type'] || '')
    .split(';')[0]
    .trim()
    .toLowerCase();
  if (types.length === 0) {
    if (body !== '') problems.push(`${where}: no body documented, got ${body.slice(0, 80)}`);
    return problems;
  }
  if (!types.includes(ct)) {
    problems.push(`${where}: Content-Type ${JSON.stringify(headers['content-type'])} is not one of ${types.join(', ')}`);
    return problems;
  }
  // HEAD has no body; a stream's body is not a JSON document.
  if (method === 'HEAD' || ct !== 'application/json') return problems;
  let json;
  try {
    json = JSON.parse(body);
  } catch (e) {
    problems.push(`${where}: body is not JSON: ${body.slice(0, 80)}`);
    return problems;
  }
  const v = validatorAt(`${ptr}/content/${ct.replace(/\//g, '~1')}/schema`);
  if (!v(json)) problems.push(`${where}: body ${errorsText(v)}: ${body.slice(0, 200)}`);
  return problems;
}

/** Throws when the response does not match the document. */
function validateResponse(req, res) {
  const problems = checkResponse(req, res);
  if (problems.length) {
    const err = new Error(`response does not match docs/openapi.yaml:\n  ${problems.join('\n  ')}`);
    err.openapi = problems;
    throw err;
  }
}

module.exports = { load, addConfiguredRoutes, findResponse, checkResponse, validateResponse, DOC_PATH };
