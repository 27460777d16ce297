#!/usr/bin/env node
// Times the tunnel sshd's key lookup (its AuthorizedKeysCommand) the way sshd runs it: exec'd directly as the
// AuthorizedKeysCommandUser with the login's user and the offered key's fingerprint.
//
//   node key-lookup-timer.mjs COMMAND UID GID TUNNEL_USER FINGERPRINT CONNS_DIR_OF_THE_POD COUNT
//
// The lookup names the connection after its parent ($PPID: sshd's monitor; here, this process), so:
//   first  — a connection's first call (sshd's query): no record of this parent yet, so it records one, counts
//            the pod's other live connections and prints the line; the record is removed after each call;
//   second — the same connection again (sshd's signature check): the record says admitted, the line is printed;
//   floor  — /bin/true exec'd the same way: what spawning costs by itself.
// Prints one JSON line: wall ms of every call per kind, and CPU ms per call (this process's cutime + cstime,
// /proc/self/stat, over the whole loop of that kind).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const [command, uidText, gidText, tunnelUser, fingerprint, connsDir, countText] = process.argv.slice(2);
const uid = Number(uidText);
const gid = Number(gidText);
const count = Number(countText);
const record = path.join(connsDir, String(process.pid));

function childTicks() {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[13]) + Number(f[14]);
}

function call(file, args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(file, args, { uid, gid, stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.error) throw r.error;
  return { ms, stdout: r.stdout ?? '', status: r.status };
}

const result = { first: [], second: [], floor: [], cpuMs: {}, printed: '' };
const loop = (kind, fn) => {
  const before = childTicks();
  for (let i = 0; i < count; i++) result[kind].push(fn());
  // USER_HZ is 100: ticks of 10 ms.
  result.cpuMs[kind] = ((childTicks() - before) * 10) / count;
};

// Warm the page cache and the dentry of the pod's index file like a busy server has it.
call(command, [tunnelUser, fingerprint]);
fs.rmSync(record, { force: true });

loop('first', () => {
  const r = call(command, [tunnelUser, fingerprint]);
  if (!r.stdout.includes('restrict,')) throw new Error(`the lookup printed no key line (exit ${r.status}): ${JSON.stringify(r.stdout)}`);
  result.printed = r.stdout.trim().slice(0, 80);
  fs.rmSync(record, { force: true });
  return r.ms;
});
call(command, [tunnelUser, fingerprint]);
loop('second', () => {
  const r = call(command, [tunnelUser, fingerprint]);
  if (!r.stdout.includes('restrict,')) throw new Error(`the second lookup printed no key line (exit ${r.status})`);
  return r.ms;
});
fs.rmSync(record, { force: true });
loop('floor', () => call('/bin/true', []).ms);
process.stdout.write(`${JSON.stringify(result)}\n`);
