'use strict';
// Several gateway instances that behave as one (CONTRACT §13): each its own prefix and port
// from this one checkout, all on one nats-server and one redis-server (a free loopback port,
// stopped by PID), plus a Router responder inside the test process that counts its calls.
//
//   const redis = await startRedis();
//   const router = await startCountingRouter({ servers: nats.url });
//   const gws = await startInstances({ count: 3, natsUrl: nats.url, redis });
//   … router.calls.get(key) is how often the Router saw requests with metadata.count_key = key
const http = require('http');
const fs = require('fs');
const { startGateway } = require('./gateway');
const { startProcess, freePort, track, HOST } = require('./processes');
const { send } = require('./load');

const REDIS_SERVER_BIN = '/usr/bin/redis-server';
let instanceSets = 0;

/**
 * redis-server on a free loopback port, nothing persisted: a restart loses every key.
 * @param {{port?: number, password?: string}} [opts]
 */
async function startRedis(opts = {}) {
  const port = opts.port || (await freePort());
  const args = ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no'];
  if (opts.password) args.push('--requirepass', opts.password);
  const h = await startProcess({ name: `redis-${port}`, command: REDIS_SERVER_BIN, args, readyPort: port });
  return Object.assign(h, {
    port,
    url: `redis://${HOST}:${port}`,
    /** CPU time (user + system, clock ticks) the server used so far, from /proc/<pid>/stat. */
    cpuTicks() {
      const stat = fs.readFileSync(`/proc/${h.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return Number(fields[11]) + Number(fields[12]);
    },
  });
}

/** `state.redis` of a config that uses `redis` (shared `keyPrefix` = one shared state). */
function redisState(redis, keyPrefix, extra = {}) {
  return {
    backend: 'redis',
    redis: { host: HOST, port: redis.port, key_prefix: keyPrefix, retry_after_ms: 200, timeout_ms: 200, ...extra },
  };
}

/**
 * `count` gateway instances on one NATS and one Redis, sharing their state (one key prefix).
 * @param {{count?: number, natsUrl: string, redis: object, keyPrefix?: string, workers?: number,
 *   redisOptions?: object, configure?: (raw: object) => void, expectErrorLog?: RegExp|RegExp[]}} o
 */
async function startInstances(o) {
  const keyPrefix = o.keyPrefix || `t${process.pid}-${Date.now()}-${++instanceSets}:`;
  const out = [];
  out.keyPrefix = keyPrefix;
  for (let i = 0; i < (o.count || 3); i++) {
    out.push(
      await startGateway({
        natsUrl: o.natsUrl,
        workers: o.workers || 1,
        expectErrorLog: o.expectErrorLog,
        configure: (raw) => {
          raw.state = redisState(o.redis, keyPrefix, o.redisOptions);
          if (o.configure) o.configure(raw);
        },
      }),
    );
  }
  return out;
}

/**
 * An ioredis client on `redis` for looking at the gateway's keys (stopped by stopAll). It
 * reconnects by itself after a Redis restart.
 */
function redisClient(redis) {
  const Redis = require('ioredis');
  const c = new Redis({ host: HOST, port: redis.port, maxRetriesPerRequest: 1, retryStrategy: () => 100, lazyConnect: false });
  c.on('error', () => {});
  return track({ name: 'ioredis', client: c, stop: async () => c.disconnect() });
}

/** The Redis key of an Idempotency-Key entry (beamline.idempotency's layout). */
function idemKey(keyPrefix, tenant, route, key) {
  return `${keyPrefix}idem:{${tenant}}|${route}|${key}`;
}

/**
 * The reference Router's handler on a `nats` connection in this process, counting its calls:
 * `calls` maps `metadata.count_key` (or the request_id) to the number of requests received.
 */
async function startCountingRouter(o) {
  const { connect } = require('nats');
  const { createHandler, compilePolicies, DEFAULT_POLICIES } = require('../../router/reference-router');
  const nc = await connect({ servers: o.servers, name: 'counting-router', maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  const handle = createHandler({ policies: compilePolicies(DEFAULT_POLICIES), defaultMode: null });
  const calls = new Map();
  let total = 0;
  nc.subscribe(o.subject || 'beamline.router.v1.decide', {
    queue: 'beamline-router',
    callback: (err, m) => {
      if (err) return;
      total++;
      let key;
      try {
        const req = JSON.parse(Buffer.from(m.data).toString('utf8'));
        key = (req.metadata && req.metadata.count_key) || req.request_id;
      } catch (e) {
        key = '(not JSON)';
      }
      calls.set(key, (calls.get(key) || 0) + 1);
      handle(m.data, m.headers, { subject: m.subject, reply: m.reply }, (buf) => m.respond(buf));
    },
  });
  await nc.flush();
  return track({
    name: 'counting-router',
    calls,
    get total() {
      return total;
    },
    stop: async () => {
      if (!nc.isClosed()) await nc.close();
    },
  });
}

/**
 * Sends `count` requests with `concurrency` loops, each to a random instance (keep-alive, one
 * agent per instance). `request(i)` builds request i; returns the responses in request order.
 */
async function spread(urls, { count, concurrency = 16, request, timeoutMs = 10000 }) {
  const agents = urls.map(() => new http.Agent({ keepAlive: true, maxFreeSockets: concurrency }));
  const results = new Array(count);
  let next = 0;
  const loop = async () => {
    while (next < count) {
      const i = next++;
      const k = Math.floor(Math.random() * urls.length);
      results[i] = { instance: k, ...(await send(agents[k], urls[k], request(i), timeoutMs)) };
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  agents.forEach((a) => a.destroy());
  return results;
}

/**
 * nginx's own [error] line for a cosocket whose peer died mid-request (Redis killed under load):
 * expected in the tests that kill Redis (spec/support/gateway.js's error-log rule).
 */
const PEER_RESET = /\[error\].*(recv|send|writev)\(\) failed \((104: Connection reset by peer|32: Broken pipe)\)/;

module.exports = {
  PEER_RESET,
  startRedis,
  redisState,
  startInstances,
  startCountingRouter,
  redisClient,
  idemKey,
  spread,
  REDIS_SERVER_BIN,
};
