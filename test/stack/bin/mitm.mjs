#!/usr/bin/env node
// An on-path attacker at a pod's first contact, for the security tests: it answers http://SERVER/ca.pem
// with the genuine CA followed by its own, and https://SERVER/ with a certificate of its own CA. It logs
// one JSON line per request it receives (method, path, body), so a test can see whether a token reached it.
// Usage: mitm.mjs ADDR CA_BUNDLE CERT KEY
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

const [addr, bundle, cert, key] = process.argv.slice(2);
const log = (scheme, req, body) => console.log(JSON.stringify({ scheme, method: req.method, path: req.url, body }));
const collect = (req, done) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => done(Buffer.concat(chunks).toString('utf8')));
};
http.createServer((req, res) => collect(req, (body) => {
  log('http', req, body);
  res.writeHead(200, { 'content-type': 'application/x-pem-file' });
  res.end(fs.readFileSync(bundle));
})).listen(80, addr, () => console.log(`listening ${addr}:80`));
https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => collect(req, (body) => {
  log('https', req, body);
  res.writeHead(502, { 'content-type': 'application/json' });
  res.end('{"error":{"code":"relay","message":"the attacker has what it wanted"}}');
})).listen(443, addr, () => console.log(`listening ${addr}:443`));
process.on('SIGTERM', () => process.exit(0));
