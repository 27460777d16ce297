#!/usr/bin/env node
// Finds the moment a path serves (again), run as a world daemon in the client's namespace:
//
//   poll.mjs HOST PORT INTERVAL_MS REQUEST_TIMEOUT_MS MAX_MS MODE
//
// Starts one request every INTERVAL_MS — without waiting for the previous one, so that a request stuck on
// a dead path (a stale session that accepts and never answers) does not hide the moment the path
// works again. A request is: connect, send "ping\n", get "ping\n" back (the peer echoes).
//   MODE first-success   report the first request that succeeds
//   MODE after-failure   ignore successes until a request has failed, then report the first success
//                        of a request started after the failed one: started before a fault, the poller
//                        then measures the fault, not the calm before it
// Prints "polling" once running, then one line "result {json}" and exits. Times are epoch ms with
// fractions (performance.timeOrigin + performance.now()), comparable with the caller's clock.
import net from 'node:net';

const [host, portText, intervalText, requestTimeoutText, maxText, mode = 'first-success'] = process.argv.slice(2);
const port = Number(portText);
const intervalMs = Number(intervalText ?? 100);
const requestTimeoutMs = Number(requestTimeoutText ?? 1000);
const maxMs = Number(maxText ?? 60_000);
const now = () => performance.timeOrigin + performance.now();

const startedAt = now();
let attempts = 0;
let failures = 0;
let firstAttemptAt = null;
let firstFailureAt = null;
let firstFailureStartedAt = null;
let firstFailure = null;
let finished = false;

function finish(result) {
  if (finished) return;
  finished = true;
  process.stdout.write(`result ${JSON.stringify({ startedAt, firstAttemptAt, attempts, failures, firstFailureAt, firstFailureStartedAt, firstFailure, ...result })}\n`);
  process.exit(0);
}

function request() {
  const t0 = now();
  return new Promise((resolve) => {
    let got = '';
    let settled = false;
    const sock = net.connect({ host, port });
    const end = (ok, why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ ok, why, startedAt: t0, at: now() });
    };
    const timer = setTimeout(() => end(false, 'timeout'), requestTimeoutMs);
    sock.setNoDelay(true);
    sock.on('connect', () => sock.write('ping\n'));
    sock.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('ping\n')) end(true);
    });
    sock.on('error', (e) => end(false, e.code ?? e.message));
    sock.on('close', () => end(false, 'closed'));
  });
}

async function tick() {
  if (finished) return;
  attempts++;
  firstAttemptAt ??= now();
  const r = await request();
  if (finished) return;
  if (!r.ok) {
    failures++;
    if (firstFailureAt === null) {
      firstFailureAt = r.at;
      firstFailureStartedAt = r.startedAt;
      firstFailure = r.why;
    }
    return;
  }
  // Measured from the start of the failed request, not its end: a failure by timeout is known only
  // requestTimeoutMs later, and requests started in between may already be the recovered ones.
  const counts = mode === 'first-success' || (firstFailureStartedAt !== null && r.startedAt > firstFailureStartedAt);
  if (counts) finish({ ok: true, successAt: r.at, successStartedAt: r.startedAt });
}

console.log(`polling ${host}:${port} every ${intervalMs} ms (${mode})`);
setInterval(() => void tick(), intervalMs);
void tick();
setTimeout(() => finish({ ok: false, error: `no success within ${maxMs} ms` }), maxMs);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => finish({ ok: false, error: `stopped by ${sig}` }));
