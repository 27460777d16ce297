#!/usr/bin/env node
// The pod's own services in the test world: an http and an https server (with the certificate pipe2me
// got for the pod), both answering who they are and whom they see, so a test can tell the direct route
// (the pod sees the client's address) from the tunnel (it sees a loopback address).
// Usage: pod-service.mjs NAME HTTP_PORT [HTTPS_PORT KEY CERT] [BIND]
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';

const [name, httpPort, httpsPort, key, cert, bind = '0.0.0.0'] = process.argv.slice(2);
const handler = (scheme) => (req, res) => {
  const body = `hello from ${name} over ${scheme}; path ${req.url}; peer ${req.socket.remoteAddress}\n`;
  res.writeHead(200, { 'content-type': 'text/plain', server: `pod-service/${name}`, 'content-length': Buffer.byteLength(body) });
  res.end(body);
};
http.createServer(handler('http')).listen(Number(httpPort), bind, () => console.log(`http on ${bind}:${httpPort}`));
if (httpsPort) {
  const opts = () => ({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) });
  const srv = https.createServer(opts(), handler('https'));
  srv.listen(Number(httpsPort), bind, () => console.log(`https on ${bind}:${httpsPort}`));
  // pipe2me renew replaces the certificate: pick it up.
  process.on('SIGHUP', () => srv.setSecureContext(opts()));
}
process.on('SIGTERM', () => process.exit(0));
