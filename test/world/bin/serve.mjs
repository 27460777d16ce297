#!/usr/bin/env node
// Small servers the harness runs inside namespaces as daemons (stdout goes to the daemon's log).
// Prints "listening ADDR:PORT" once the socket is bound: that is the readiness signal.
//
//   whoami ADDR PORT          TCP: writes "peer <address> <port>\n", then echoes what it gets.
//   echo ADDR PORT            TCP: echoes what it gets.
//   http-redirect ADDR PORT LOCATION
//                             HTTP: every request gets 302 with that Location and a short body.
//   http-hello ADDR PORT TEXT HTTP: every request gets 200 with TEXT as body.
//   stubborn                  ignores SIGTERM, and starts a grandchild in a session of its own that
//                             ignores SIGTERM too: the worst case for a teardown (only SIGKILL and the
//                             namespace sweep get rid of them). Prints "stubborn <pid> <grandchild pid>".
import net from 'node:net';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const [mode, host, portText, extra] = process.argv.slice(2);

if (mode === 'stubborn' || mode === 'stubborn-grandchild') {
  process.on('SIGTERM', () => console.log(`${process.pid} ignores SIGTERM`));
  setInterval(() => undefined, 1 << 30);
  if (mode === 'stubborn') {
    const gc = spawn(process.execPath, [fileURLToPath(import.meta.url), 'stubborn-grandchild'], { detached: true, stdio: 'ignore' });
    gc.unref();
    console.log(`stubborn ${process.pid} ${gc.pid}`);
  }
}
const port = Number(portText);

function announce(server) {
  const a = server.address();
  console.log(`listening ${a.address}:${a.port}`);
}

let server;
if (mode === 'whoami' || mode === 'echo') {
  server = net.createServer((sock) => {
    sock.setNoDelay(true);
    sock.on('error', () => {});
    console.log(`connection from ${sock.remoteAddress}:${sock.remotePort}`);
    if (mode === 'whoami') sock.write(`peer ${sock.remoteAddress} ${sock.remotePort}\n`);
    sock.pipe(sock);
  });
} else if (mode === 'http-redirect' || mode === 'http-hello') {
  server = http.createServer((req, res) => {
    console.log(`${req.socket.remoteAddress} ${req.method} ${req.url} host=${req.headers.host ?? ''}`);
    if (mode === 'http-redirect') {
      res.writeHead(302, { location: extra, 'content-type': 'text/plain' });
      res.end(`moved to ${extra}\n`);
    } else {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-peer': String(req.socket.remoteAddress) });
      res.end(`${extra}\n`);
    }
  });
} else if (mode === 'stubborn' || mode === 'stubborn-grandchild') {
  server = undefined;
} else {
  console.error('usage: serve.mjs whoami|echo|http-redirect|http-hello ADDR PORT [ARG]');
  process.exit(2);
}
if (server) {
  server.on('error', (e) => {
    console.error(`serve: ${e.message}`);
    process.exit(1);
  });
  server.listen(port, host, () => announce(server));
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
}
