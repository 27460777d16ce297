#!/usr/bin/env node
// Request/response latency over one TCP connection, run inside a namespace by the benchmarks:
//
//   pingpong.mjs HOST PORT WARMUP COUNT TIMEOUT_MS
//
// Connects (TCP_NODELAY), then sends 1 byte and waits for 1 byte back, WARMUP times unrecorded and COUNT
// times recorded, one round trip at a time. The peer must echo (test/world/bin/serve.mjs echo).
// Prints exactly one JSON object: round-trip times in µs (median, p90, p99, min, max) or an error.
import net from 'node:net';

const [host, portText, warmupText, countText, timeoutText] = process.argv.slice(2);
const port = Number(portText);
const warmup = Number(warmupText ?? 200);
const count = Number(countText ?? 1000);
const timeoutMs = Number(timeoutText ?? 30_000);

function done(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

// The whole run has one deadline: a path that stalls must end in a result, not hang the benchmark.
setTimeout(() => done({ ok: false, error: `no result within ${timeoutMs} ms` }), timeoutMs).unref();

const sock = net.connect({ host, port });
sock.setNoDelay(true);
sock.on('error', (e) => done({ ok: false, error: e.message, code: e.code ?? null }));
sock.on('close', () => done({ ok: false, error: 'the peer closed the connection' }));

let waiting;
let pending = 0;
sock.on('data', (d) => {
  pending -= d.length;
  if (pending <= 0 && waiting) {
    const w = waiting;
    waiting = undefined;
    w();
  }
});

const one = Buffer.from('x');
function roundTrip() {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    waiting = () => resolve(Number(process.hrtime.bigint() - t0) / 1000);
    pending = 1;
    sock.write(one);
  });
}

sock.once('connect', async () => {
  for (let i = 0; i < warmup; i++) await roundTrip();
  const us = [];
  for (let i = 0; i < count; i++) us.push(await roundTrip());
  us.sort((a, b) => a - b);
  const q = (p) => us[Math.min(us.length - 1, Math.floor(p * (us.length - 1) + 0.5))];
  sock.removeAllListeners('close');
  sock.destroy();
  done({ ok: true, n: us.length, medianUs: q(0.5), p90Us: q(0.9), p99Us: q(0.99), minUs: us[0], maxUs: us[us.length - 1] });
});
