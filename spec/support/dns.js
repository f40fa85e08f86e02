'use strict';
// A tiny authoritative DNS responder on a loopback UDP port, for the tests of name resolution
// (nginx's `resolver`). Answers A queries for the names in `records` (changeable while it runs),
// NXDOMAIN for other names, an empty answer for other types; counts the queries per name.
const dgram = require('dgram');

/** Reads the question's name and type; undefined for a malformed packet. */
function parseQuestion(msg) {
  if (msg.length < 12) return undefined;
  const labels = [];
  let i = 12;
  while (i < msg.length) {
    const len = msg[i];
    if (len === 0) break;
    if (len > 63 || i + 1 + len > msg.length) return undefined;
    labels.push(msg.toString('ascii', i + 1, i + 1 + len));
    i += 1 + len;
  }
  if (i + 5 > msg.length) return undefined;
  return { name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(i + 1), end: i + 5 };
}

function answer(msg, q, addr) {
  const header = Buffer.alloc(12);
  msg.copy(header, 0, 0, 2); // id
  // QR, opcode 0, AA, RD copied; RA; rcode 0 or 3 (NXDOMAIN)
  header.writeUInt16BE(0x8400 | (msg.readUInt16BE(2) & 0x0100) | 0x0080 | (addr === null ? 3 : 0), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(addr ? 1 : 0, 6);
  const question = msg.subarray(12, q.end);
  if (!addr) return Buffer.concat([header, question]);
  const rr = Buffer.alloc(16);
  rr.writeUInt16BE(0xc00c, 0); // name: pointer to the question
  rr.writeUInt16BE(1, 2); // A
  rr.writeUInt16BE(1, 4); // IN
  rr.writeUInt32BE(1, 6); // TTL 1 s
  rr.writeUInt16BE(4, 10);
  addr.split('.').forEach((o, k) => rr.writeUInt8(Number(o), 12 + k));
  return Buffer.concat([header, question, rr]);
}

/**
 * @param {{[name: string]: string}} records name → IPv4 address
 * @returns {Promise<{port: number, records: object, queries: {[name: string]: number}, stop: () => Promise<void>}>}
 */
function startDns(records) {
  const sock = dgram.createSocket('udp4');
  const handle = { records: { ...records }, queries: {}, port: 0 };
  sock.on('message', (msg, rinfo) => {
    const q = parseQuestion(msg);
    if (!q) return;
    handle.queries[q.name] = (handle.queries[q.name] || 0) + 1;
    const known = Object.prototype.hasOwnProperty.call(handle.records, q.name) ? handle.records[q.name] : null;
    // A for a known name; for another type of a known name: no records, no error.
    const addr = known === null ? null : q.type === 1 ? known : undefined;
    sock.send(answer(msg, q, addr), rinfo.port, rinfo.address);
  });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => {
      handle.port = sock.address().port;
      handle.stop = () => new Promise((r) => sock.close(r));
      resolve(handle);
    });
  });
}

module.exports = { startDns };
