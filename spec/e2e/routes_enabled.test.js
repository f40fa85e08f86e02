'use strict';
// routes.<name>.enabled (issue 18: the key was accepted and documented but read by nothing): a
// disabled route is not rendered and answers 404 like any path of no route.
const fs = require('fs');
const path = require('path');
const { startStack, request, waitDecideOk } = require('../support/gateway');
const { stopAll } = require('../support/processes');

afterEach(() => stopAll());

const decide = (gw, p, id) =>
  request(gw.url, {
    method: 'POST',
    path: p,
    headers: { 'content-type': 'application/json', 'x-tenant-id': 't-1' },
    body: JSON.stringify({ version: '1', request_id: id, task: { type: 'chat', payload: { text: 'hi' } } }),
  });

test('routes.messages.enabled: false → POST /api/v1/messages is 404 not_found, decide still answers', async () => {
  const { gateway } = await startStack({ configure: (raw) => (raw.routes = { messages: { enabled: false } }) });
  expect(fs.readFileSync(path.join(gateway.prefix, 'conf.d', '20-gateway.conf'), 'utf8')).not.toMatch(/\/api\/v1\/messages/);
  await waitDecideOk(gateway);
  const off = await decide(gateway, '/api/v1/messages', 'm-1');
  expect(off.status).toBe(404);
  expect(off.json.error.code).toBe('not_found');
  expect((await decide(gateway, '/api/v1/routes/decide', 'd-1')).status).toBe(200);
});

test('routes.decide.enabled: false → decide and the decision lookup are 404, messages still answers', async () => {
  const { gateway } = await startStack({ configure: (raw) => (raw.routes = { decide: { enabled: false } }) });
  const ok = await (async () => {
    for (let i = 0; i < 250; i++) {
      const r = await decide(gateway, '/api/v1/messages', `m-${i}`);
      if (r.status === 200) return r;
      await new Promise((res) => setTimeout(res, 20));
    }
    throw new Error('messages never answered 200');
  })();
  expect(ok.status).toBe(200);
  for (const [method, p] of [
    ['POST', '/api/v1/routes/decide'],
    ['GET', '/api/v1/routes/decide/m-0'],
  ]) {
    const r =
      method === 'POST' ? await decide(gateway, p, 'd-2') : await request(gateway.url, { path: p, headers: { 'x-tenant-id': 't-1' } });
    expect(r.status).toBe(404);
    expect(r.json.error.code).toBe('not_found');
  }
});

test('routes.admin.enabled: false → the NATS routes counted on `admin` are not rendered (404)', async () => {
  const { gateway } = await startStack({ configure: (raw) => (raw.routes = { admin: { enabled: false } }) });
  await waitDecideOk(gateway);
  const r = await request(gateway.url, { path: '/api/v1/extensions/health', headers: { 'x-tenant-id': 't-1' } });
  expect(r.status).toBe(404);
  expect(r.json.error.code).toBe('not_found');
});
