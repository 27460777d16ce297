/**
 * Live pod sessions on the tunnel sshd. The session holder (templates/sshd/pipe2me-session.hbs) records
 * each pod's session; the kernel tells which sshd process listens on which port. Cutting a pod's
 * sessions kills the tunnel user's sshd processes that either recorded themselves for that pod or hold
 * one of its ports — the second catches a pod that connected with -N and never ran the holder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../util/exec.js';
import { processComm } from './process.js';

export interface SessionRecord {
  name: string;
  since: number;
  pid: number;
  clientIp: string;
  clientPort: number;
  alive: boolean;
}

function processUid(pid: number): number | undefined {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export async function userUid(user: string): Promise<number | undefined> {
  const r = await run('getent', ['passwd', user], { allowFailure: true, timeout: 10_000 });
  if (r.exitCode !== 0) return undefined;
  const uid = Number(r.stdout.split(':')[2]);
  return Number.isInteger(uid) ? uid : undefined;
}

function isTunnelSshd(pid: number, uid: number): boolean {
  return processComm(pid) === 'sshd' && processUid(pid) === uid;
}

/** One line per live session file: "<epoch> <sshd pid> <client ip> <client port> <server ip> <server port>". */
export function readSessions(sessionsDir: string, tunnelUid?: number): Map<string, SessionRecord> {
  const out = new Map<string, SessionRecord>();
  let names: string[];
  try {
    names = fs.readdirSync(sessionsDir);
  } catch {
    return out;
  }
  for (const name of names) {
    if (name.startsWith('.') || !/^[a-z0-9-]{1,63}$/.test(name)) continue;
    let text: string;
    try {
      text = fs.readFileSync(path.join(sessionsDir, name), 'utf8');
    } catch {
      continue;
    }
    const [since, pid, ip, port] = text.trim().split(/\s+/);
    const rec: SessionRecord = {
      name,
      since: Number(since),
      pid: Number(pid),
      clientIp: ip ?? '',
      clientPort: Number(port),
      alive: false,
    };
    rec.alive = Number.isInteger(rec.pid) && rec.pid > 0 && (tunnelUid === undefined ? processComm(rec.pid) === 'sshd' : isTunnelSshd(rec.pid, tunnelUid));
    out.set(name, rec);
  }
  return out;
}

/** pid → the TCP ports it listens on, for the tunnel user's sshd processes. */
export function listeningPorts(uid: number): Map<number, Set<number>> {
  const out = new Map<number, Set<number>>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (!isTunnelSshd(pid, uid)) continue;
    const inodes = new Set<string>();
    try {
      for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
        const link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m) inodes.add(m[1]!);
      }
    } catch {
      continue;
    }
    const ports = new Set<number>();
    for (const table of ['tcp', 'tcp6']) {
      let text = '';
      try {
        text = fs.readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
      } catch {
        continue;
      }
      for (const line of text.split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        // local_address is f[1] (HEXIP:HEXPORT), st is f[3] (0A = LISTEN), inode is f[9]
        if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9]!)) continue;
        ports.add(parseInt(f[1]!.split(':')[1]!, 16));
      }
    }
    if (ports.size) out.set(pid, ports);
  }
  return out;
}

/** Alive and not a zombie (a killed sshd stays a zombie until its parent reaps it). */
function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

async function killAndWait(pids: number[], graceMs = 2000): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  const deadline = Date.now() + graceMs;
  let left = pids;
  while (left.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 25));
    left = left.filter((p) => running(p) && processComm(p) === 'sshd');
  }
  for (const pid of left) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export interface CutResult {
  killed: number[];
}

/** Ends every live session of a pod (by name, and by any of its ports) and frees its ports. */
export async function cutSessions(opts: { sessionsDir: string; tunnelUser: string; name: string; ports: readonly number[] }): Promise<CutResult> {
  const uid = await userUid(opts.tunnelUser);
  if (uid === undefined) return { killed: [] };
  const pids = new Set<number>();
  const rec = readSessions(opts.sessionsDir, uid).get(opts.name);
  if (rec?.alive) pids.add(rec.pid);
  const wanted = new Set(opts.ports);
  for (const [pid, ports] of listeningPorts(uid)) if ([...ports].some((p) => wanted.has(p))) pids.add(pid);
  await killAndWait([...pids]);
  fs.rmSync(path.join(opts.sessionsDir, opts.name), { force: true });
  return { killed: [...pids] };
}
