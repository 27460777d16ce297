#!/usr/bin/env node
// Simulated services for the probe benchmark: listens on every port FIRST..LAST of ADDRESS and greets each
// connection with "SIM <port>", like a service that speaks first (ssh, smtp). Run it with a raised
// RLIMIT_NOFILE (prlimit): one socket per port. Prints "listening N" when all are up.
import net from 'node:net';

const [address, firstText, lastText] = process.argv.slice(2);
const first = Number(firstText);
const last = Number(lastText);
let up = 0;
for (let port = first; port <= last; port++) {
  const srv = net.createServer((sock) => {
    sock.on('error', () => {});
    sock.end(`SIM ${port}\n`);
  });
  srv.on('error', (e) => {
    console.error(`port ${port}: ${e.message}`);
    process.exit(1);
  });
  srv.listen({ port, host: address, backlog: 64 }, () => {
    if (++up === last - first + 1) console.log(`listening ${up}`);
  });
}
process.on('SIGTERM', () => process.exit(0));
