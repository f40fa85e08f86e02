'use strict';
// The configured HTTP → NATS routes (`nats_routes`, CONTRACT §12): the checks the JSON schema
// cannot express (config.js) and their nginx locations (render.js). A route's path is a template
// of `/`-separated segments, each a literal or a `{name}` parameter that matches one segment.

/** Segments of a path template: [{lit: 'api'} | {param: 'tenant_id'}]. */
function segments(template) {
  return template
    .split('/')
    .slice(1)
    .map((s) => (s.startsWith('{') ? { param: s.slice(1, -1) } : { lit: s }));
}

/** The shape of a template: parameters written `{}`, so `/a/{x}` and `/a/{y}` are the same path. */
function shape(template) {
  return segments(template)
    .map((s) => (s.param !== undefined ? '{}' : s.lit))
    .join('/');
}

/** Whether some request path matches both templates (a parameter matches any one segment). */
function overlap(a, b) {
  const x = segments(a);
  const y = segments(b);
  if (x.length !== y.length) return false;
  return x.every((s, i) => s.param !== undefined || y[i].param !== undefined || s.lit === y[i].lit);
}

/** A path in which every parameter of the template is the sample value `x`. */
function sample(template) {
  return segments(template)
    .map((s) => `/${s.param !== undefined ? 'x' : s.lit}`)
    .join('');
}

/** The path template of a fixed route (render.js ROUTES): its `path`, or an exact match's path. */
function fixedTemplate(r) {
  if (r.path) return r.path;
  if (r.match.startsWith('= ')) return r.match.slice(2);
  return undefined;
}

const METHOD_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];

/**
 * Problems of `nats_routes` (strings naming the field), given the fixed routes of render.js:
 * duplicate names, a parameter named twice in one path, internal paths, a path that collides
 * with a fixed route or with another NATS route (the same path with two methods is one route
 * with both; the same method twice, or paths that overlap without being the same, collide), and
 * a rate_limit_route that is not a configured route.
 */
function natsRouteProblems(routes, fixedRoutes, rateLimitRoutes) {
  const out = [];
  const names = new Map();
  routes.forEach((r, i) => {
    const at = `nats_routes[${i}]`;
    if (names.has(r.name)) out.push(`${at}.name: "${r.name}" is already the name of nats_routes[${names.get(r.name)}]`);
    else names.set(r.name, i);
    if (fixedRoutes.some((f) => f.name === r.name)) out.push(`${at}.name: "${r.name}" is the name of a built-in route`);
    const params = segments(r.path)
      .filter((s) => s.param !== undefined)
      .map((s) => s.param);
    const dup = params.find((p, k) => params.indexOf(p) !== k);
    if (dup) out.push(`${at}.path: parameter {${dup}} appears twice`);
    if (r.path.startsWith('/__')) out.push(`${at}.path: paths starting with /__ are reserved for the gateway`);
    if (!rateLimitRoutes.includes(r.rate_limit_route))
      out.push(`${at}.rate_limit_route: must be one of the routes section's keys (${rateLimitRoutes.join(', ')})`);
    for (const f of fixedRoutes) {
      if (f.name === 'not_found') continue;
      const t = fixedTemplate(f);
      const hit = t !== undefined ? overlap(r.path, t) : new RegExp(f.match.slice(2)).test(sample(r.path));
      if (hit) out.push(`${at}.path: ${r.path} collides with the built-in route ${f.name} (${t || f.match.slice(2)})`);
    }
    for (let k = 0; k < i; k++) {
      const o = routes[k];
      if (!overlap(r.path, o.path)) continue;
      if (shape(r.path) !== shape(o.path)) {
        out.push(`${at}.path: ${r.path} collides with nats_routes[${k}].path ${o.path}`);
      } else if (r.method === o.method) {
        out.push(`${at}.path: ${r.method} ${r.path} is already nats_routes[${k}]`);
      }
    }
  });
  return out;
}

const escapeRegex = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * The nginx locations of the NATS routes: one per path (routes on the same path with different
 * methods share it). `index` (1-based) is what the location passes to the Lua handler, which
 * reads the same grouping from the config (`nats_route.configure`). `path` is the template (for
 * collision checks of later routes), `allow` the methods (GET brings HEAD).
 */
function natsLocations(routes) {
  const groups = [];
  const byShape = new Map();
  for (const r of routes) {
    const k = shape(r.path);
    let g = byShape.get(k);
    if (!g) {
      g = { routes: [], path: r.path };
      byShape.set(k, g);
      groups.push(g);
    }
    g.routes.push(r);
  }
  return groups.map((g, i) => {
    const segs = segments(g.path);
    const regex = segs.some((s) => s.param !== undefined);
    const methods = new Set(g.routes.map((r) => r.method));
    if (methods.has('GET')) methods.add('HEAD');
    return {
      name: g.routes[0].name,
      index: i + 1,
      path: g.path,
      match: regex ? `~ ^${segs.map((s) => `/${s.param !== undefined ? '[^/]+' : escapeRegex(s.lit)}`).join('')}$` : `= ${g.path}`,
      allow: METHOD_ORDER.filter((m) => methods.has(m)).join(', '),
    };
  });
}

module.exports = { natsRouteProblems, natsLocations, segments, shape, overlap };
