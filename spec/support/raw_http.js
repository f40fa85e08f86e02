'use strict';
// One raw HTTP/1.x exchange over a socket, for requests an HTTP client will not send (control
// bytes in header values, repeated headers, invalid UTF-8 in the path or the body).
const net = require('net');

/**
 * Sends `bytes` (string as latin1, or Buffer) to 127.0.0.1:`port` and reads until the server
 * closes. Resolves {status, headers (lower-case names, latin1), body: Buffer (chunked decoded)}.
 */
function rawExchange(port, bytes, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    const chunks = [];
    sock.on('data', (c) => chunks.push(c));
    sock.on('end', () => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      const head = all.subarray(0, end).toString('latin1').split('\r\n');
      const headers = {};
      for (const l of head.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
      let body = all.subarray(end + 4);
      if (/chunked/i.test(headers['transfer-encoding'] || '')) {
        const parts = [];
        for (let at = 0; ;) {
          const nl = body.indexOf('\r\n', at);
          const size = parseInt(body.subarray(at, nl).toString('latin1'), 16);
          if (!(size > 0)) break;
          parts.push(body.subarray(nl + 2, nl + 2 + size));
          at = nl + 2 + size + 2;
        }
        body = Buffer.concat(parts);
      }
      resolve({ status: Number(head[0].split(' ')[1]), headers, body });
    });
    sock.on('error', reject);
    sock.setTimeout(timeoutMs, () => sock.destroy(new Error('timeout')));
    sock.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  });
}

module.exports = { rawExchange };
