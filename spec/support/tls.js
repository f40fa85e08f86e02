'use strict';
/**
 * Test certificates made with the `openssl` CLI (no fixtures in the repo): a CA, a server
 * certificate for 127.0.0.1/localhost signed by it, a client certificate signed by it, and a
 * second, unrelated CA (the "wrong CA" case).
 *
 *   const certs = makeCerts(path.join(tmpRoot(), 'tls'));
 *   certs.ca, certs.serverCert, certs.serverKey, certs.clientCert, certs.clientKey, certs.otherCa
 *
 * Files are world-readable except the keys (0600): the nginx workers never read them (the
 * gateway loads the client key in the master, and the CA through lua_ssl_trusted_certificate).
 */
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A CA (key + self-signed certificate). */
function makeCa(dir, name, cn) {
  const key = path.join(dir, `${name}-key.pem`);
  const cert = path.join(dir, `${name}.pem`);
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      key,
      '-out',
      cert,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  return { key, cert };
}

/** A leaf certificate signed by `ca` with the given extensions. */
function makeLeaf(dir, name, cn, ca, ext) {
  const key = path.join(dir, `${name}-key.pem`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.pem`);
  const extFile = path.join(dir, `${name}.ext`);
  fs.writeFileSync(extFile, ext);
  openssl(
    ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`, '-keyout', key, '-out', csr],
    dir,
  );
  openssl(
    ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-extfile', extFile, '-out', cert],
    dir,
  );
  fs.chmodSync(key, 0o600);
  return { key, cert };
}

/**
 * @param {string} dir  created if missing
 * @returns {{dir: string, ca: string, serverCert: string, serverKey: string, clientCert: string,
 *   clientKey: string, otherCa: string}}
 */
function makeCerts(dir) {
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, 0o755);
  const ca = makeCa(dir, 'ca', 'Beamline Test CA');
  const other = makeCa(dir, 'other-ca', 'Unrelated Test CA');
  const server = makeLeaf(
    dir,
    'server',
    'localhost',
    ca,
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n',
  );
  const client = makeLeaf(
    dir,
    'client',
    'beamline-gateway',
    ca,
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n',
  );
  return {
    dir,
    ca: ca.cert,
    serverCert: server.cert,
    serverKey: server.key,
    clientCert: client.cert,
    clientKey: client.key,
    otherCa: other.cert,
  };
}

/** nats-server config text for a TLS listener (client certificates required when `verify`). */
function natsTlsConfig(certs, { verify = false, timeout = 2 } = {}) {
  return [
    'tls {',
    `  cert_file: "${certs.serverCert}"`,
    `  key_file: "${certs.serverKey}"`,
    `  ca_file: "${certs.ca}"`,
    `  verify: ${verify ? 'true' : 'false'}`,
    `  timeout: ${timeout}`,
    '}',
    '',
  ].join('\n');
}

module.exports = { makeCerts, natsTlsConfig };
