'use strict';
// Loopback port helpers shared by the run script, the benchmarks and the test helpers.
const net = require('net');

const HOST = '127.0.0.1';

/** A free TCP port on 127.0.0.1 (bind :0, read the port, close). @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Whether a TCP connect to host:port succeeds right now. @returns {Promise<boolean>} */
function portOpen(port, host = HOST) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    sock.once('connect', () => {
      // Polling a free port of the ephemeral range can make the kernel pick that very port as
      // the source: TCP "self-connect" succeeds with nobody listening, and the socket then
      // holds the port the server was about to bind. Not open, then.
      const self = sock.localPort === sock.remotePort && sock.localAddress === sock.remoteAddress;
      sock.destroy();
      resolve(!self);
    });
    sock.once('error', () => {
      sock.destroy();
      resolve(false);
    });
  });
}

/** Resolves once host:port accepts connections; rejects after timeoutMs. */
async function waitForPort(port, timeoutMs = 10000, host = HOST) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await portOpen(port, host)) return;
    if (Date.now() >= deadline) throw new Error(`${host}:${port} not accepting connections after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Whether host:port can be bound right now: resolves null when it can, else the error code
 * (EADDRINUSE: another process listens there; EACCES: a privileged port). The probe binds
 * without SO_REUSEPORT, so even a listener that set it (another nginx) counts as taken.
 */
function bindProblem(port, host = HOST) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', (err) => resolve(err.code || err.message));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(null)));
  });
}

module.exports = { HOST, freePort, portOpen, waitForPort, bindProblem };
