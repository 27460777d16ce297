#!/usr/bin/env node
// TCP client run inside a namespace by the harness (process.execPath test/world/bin/tcp-client.mjs ...).
// Prints exactly one JSON object on stdout, so the caller never has to parse free text.
//
//   connect ADDR PORT TIMEOUT_MS [PAYLOAD_B64] [IDLE_MS] [UNTIL_B64]
//       Connect, send the payload (if any), read until the peer closes, nothing arrives for IDLE_MS,
//       or what arrived contains UNTIL.
//   cost ADDR PORT COUNT PAYLOAD_B64 TIMEOUT_MS
//       COUNT back-to-back connections: connect, send the payload, wait for the first byte back, close.
//       Reports the connect time and the first round trip of each: the cost of a new connection.
//   ticker ADDR PORT INTERVAL_MS
//       Run as a daemon: one long-lived connection that writes "tick N" every INTERVAL_MS and logs one
//       line per event ("connected <local>", "reply ...", "error <code>", "closed"). Shows what an
//       established connection (an ssh tunnel, say) experiences when the network changes under it.
//   hold ADDR PORT COUNT
//       Run as a daemon: open COUNT connections at once and keep them open, sending nothing (a flood of
//       idle connections, as an attacker without a key makes them). Logs "open N" once COUNT connected
//       or ended, and "closed N" every second while the peer closes some of them.
//   dnsburst ADDR NAME COUNT
//       Send COUNT identical UDP queries (type A) for NAME within about a second; print how many got an
//       answer, how many of those were truncated (the slip of response-rate limiting), and how many got none.
import dgram from 'node:dgram';
import net from 'node:net';

const [mode, ...args] = process.argv.slice(2);

function now() {
  return performance.now();
}

/** One connection; resolves with what happened, never rejects. */
function exchange({ host, port, timeoutMs, payload, idleMs, firstByteOnly, until }) {
  return new Promise((resolve) => {
    const t0 = now();
    const chunks = [];
    let connectMs;
    let firstByteMs;
    let done = false;
    const sock = net.connect({ host, port });
    sock.setNoDelay(true);
    const finish = (extra) => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      const local = { localAddress: sock.localAddress ?? null, localPort: sock.localPort ?? null };
      sock.destroy();
      resolve({
        connected: connectMs !== undefined,
        connectMs: connectMs ?? null,
        firstByteMs: firstByteMs ?? null,
        elapsedMs: now() - t0,
        received: Buffer.concat(chunks).toString('base64'),
        ...local,
        ...extra,
      });
    };
    const deadline = setTimeout(() => finish({ error: 'timed out', code: 'ETIMEDOUT' }), timeoutMs);
    let idle;
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => finish({ closedBy: 'idle' }), idleMs);
    };
    sock.on('connect', () => {
      connectMs = now() - t0;
      if (payload.length > 0) sock.write(payload);
      armIdle();
    });
    sock.on('data', (d) => {
      if (firstByteMs === undefined) firstByteMs = now() - t0 - connectMs;
      chunks.push(d);
      if (firstByteOnly) return finish({ closedBy: 'client' });
      if (until && Buffer.concat(chunks).includes(until)) return finish({ closedBy: 'client' });
      armIdle();
    });
    sock.on('end', () => finish({ closedBy: 'peer' }));
    sock.on('error', (e) => finish({ error: e.message, code: e.code ?? null }));
    sock.on('close', () => {
      clearTimeout(idle);
      finish({ closedBy: 'peer' });
    });
  });
}

async function main() {
  if (mode === 'connect') {
    const [host, port, timeoutMs, payloadB64 = '', idleMs = '300', untilB64 = ''] = args;
    const r = await exchange({
      host,
      port: Number(port),
      timeoutMs: Number(timeoutMs),
      payload: Buffer.from(payloadB64, 'base64'),
      idleMs: Number(idleMs),
      firstByteOnly: false,
      until: untilB64 ? Buffer.from(untilB64, 'base64') : undefined,
    });
    process.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  if (mode === 'cost') {
    const [host, port, count, payloadB64, timeoutMs] = args;
    const samples = [];
    for (let i = 0; i < Number(count); i++) {
      const r = await exchange({
        host,
        port: Number(port),
        timeoutMs: Number(timeoutMs),
        payload: Buffer.from(payloadB64, 'base64'),
        idleMs: Number(timeoutMs),
        firstByteOnly: true,
      });
      samples.push({ connected: r.connected, connectMs: r.connectMs, firstByteMs: r.firstByteMs, error: r.error ?? null });
    }
    process.stdout.write(JSON.stringify({ samples }) + '\n');
    return;
  }
  if (mode === 'ticker') {
    const [host, port, intervalMs] = args;
    const sock = net.connect({ host, port: Number(port) });
    sock.setNoDelay(true);
    let n = 0;
    let timer;
    sock.on('connect', () => {
      console.log(`connected ${sock.localAddress}:${sock.localPort}`);
      timer = setInterval(() => sock.write(`tick ${++n}\n`), Number(intervalMs));
    });
    sock.on('data', (d) => console.log(`reply ${JSON.stringify(d.toString())}`));
    sock.on('error', (e) => console.log(`error ${e.code ?? e.message}`));
    sock.on('close', () => {
      clearInterval(timer);
      console.log('closed');
      process.exit(0);
    });
    process.on('SIGTERM', () => process.exit(0));
    return;
  }
  if (mode === 'hold') {
    const [host, port, count] = args;
    let settled = 0;
    let closed = 0;
    const socks = [];
    for (let i = 0; i < Number(count); i++) {
      const sock = net.connect({ host, port: Number(port) });
      socks.push(sock);
      let counted = false;
      const settle = () => {
        if (counted) return;
        counted = true;
        if (++settled === Number(count)) console.log(`open ${socks.filter((s) => !s.destroyed).length}`);
      };
      sock.on('connect', settle);
      sock.on('data', () => {}); // the server's banner: read and ignored
      sock.on('error', settle);
      sock.on('close', () => {
        settle();
        closed++;
      });
    }
    setInterval(() => console.log(`closed ${closed}`), 1000);
    process.on('SIGTERM', () => process.exit(0));
    return;
  }
  if (mode === 'dnsburst') {
    const [host, name, count] = args;
    const n = Number(count);
    const query = (id) => {
      const header = Buffer.alloc(12);
      header.writeUInt16BE(id, 0);
      header.writeUInt16BE(0x0000, 2); // a plain query, no recursion
      header.writeUInt16BE(1, 4);
      const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
      return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
    };
    const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const seen = new Map();
    sock.on('message', (m) => {
      if (m.length < 4) return;
      const id = m.readUInt16BE(0);
      if (!seen.has(id)) seen.set(id, (m.readUInt16BE(2) & 0x0200) !== 0);
    });
    await new Promise((r) => sock.bind(0, r));
    for (let i = 0; i < n; i++) {
      sock.send(query(i + 1), 53, host);
      if (i % 20 === 19) await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 1500));
    sock.close();
    const truncated = [...seen.values()].filter(Boolean).length;
    process.stdout.write(JSON.stringify({ sent: n, answered: seen.size, truncated, full: seen.size - truncated, none: n - seen.size }) + '\n');
    return;
  }
  process.stderr.write(`usage: tcp-client.mjs connect|cost|ticker|hold|dnsburst ...\n`);
  process.exit(2);
}

await main();
