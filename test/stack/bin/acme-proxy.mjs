#!/usr/bin/env node
// A fault injector in front of the test world's ACME CA (Pebble has no rate limits and cannot be made
// unreachable on its own). It forwards everything to Pebble, passing the Host header through so that the
// directory's and the orders' URLs point back here, unless the control file says otherwise:
//
//   {"mode": "pass"}                                   forward everything
//   {"mode": "reset"}                                  every connection is dropped at once (the CA is down)
//   {"mode": "ratelimit", "count": N, "retryAfter": S} the next N new orders get 429 + Retry-After: S and
//                                                      a urn:ietf:params:acme:error:rateLimited problem
//
// The file is read at every connection. Every request is logged as one JSON line.
// Usage: acme-proxy.mjs LISTEN_ADDR LISTEN_PORT UPSTREAM_PORT CERT KEY CA CONTROL_FILE
import * as fs from 'node:fs';
import * as https from 'node:https';

const [addr, port, upstreamPort, cert, key, ca, control] = process.argv.slice(2);
const upstream = { host: addr, port: Number(upstreamPort), ca: fs.readFileSync(ca) };
const read = () => {
  try {
    return JSON.parse(fs.readFileSync(control, 'utf8'));
  } catch {
    return { mode: 'pass' };
  }
};
const log = (o) => console.log(JSON.stringify({ t: new Date().toISOString(), ...o }));

const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  const c = read();
  if (c.mode === 'ratelimit' && c.count > 0 && req.method === 'POST' && /order/.test(req.url)) {
    fs.writeFileSync(control, JSON.stringify({ ...c, count: c.count - 1 }));
    log({ inject: 429, url: req.url, retryAfter: c.retryAfter });
    res.writeHead(429, { 'content-type': 'application/problem+json', 'retry-after': String(c.retryAfter ?? 2) });
    res.end(JSON.stringify({ type: 'urn:ietf:params:acme:error:rateLimited', detail: 'too many new orders (injected by the test)', status: 429 }));
    return;
  }
  const body = [];
  req.on('data', (d) => body.push(d));
  req.on('end', () => {
    const up = https.request({ ...upstream, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      log({ pass: ur.statusCode, method: req.method, url: req.url });
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', (e) => {
      res.writeHead(502);
      res.end(String(e));
    });
    up.end(Buffer.concat(body));
  });
});
server.on('connection', (sock) => {
  if (read().mode === 'reset') {
    log({ inject: 'reset' });
    sock.destroy();
  }
});
server.listen(Number(port), addr, () => console.log(`listening ${addr}:${port}`));
process.on('SIGTERM', () => process.exit(0));
