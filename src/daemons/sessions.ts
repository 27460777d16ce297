/**
 * Live pod connections on the tunnel sshd, from two kinds of records that name each connection by its
 * privileged sshd process (the *monitor*: it lives exactly as long as the connection, and killing it
 * ends the connection):
 *
 * - connection records, written by the key lookup (templates/sshd/pipe2me-keys.hbs) at every login that
 *   offers a pod's key, in `<run>/conns/NAME/MONITORPID`: "STARTTIME SHA256:FP admitted|pending". They
 *   cover every login, -N ones included, and say which key each connection used;
 * - session records, written by the session holder (templates/sshd/pipe2me-session.hbs) once a pod's
 *   session is open, in `<run>/sessions/NAME/MONITORPID`: "SESSIONPID MONITORPID STARTTIME CLIENT_IP
 *   CLIENT_PORT SERVER_IP SERVER_PORT". They say that the pod is online and where it connects from.
 *
 * A record counts only while its monitor runs with the recorded start time, so a record left behind
 * by a connection that ended (or a reused pid) never does; `sweepStaleRecords` removes those.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../util/exec.js';
import { MOVING_LINE } from '../ssh/session-lines.js';
import { listProcesses, processRunning, processStartTime, type ProcessInfo } from './process.js';
import { canonicalIp, procNetAddress } from '../net/address.js';

export interface SessionRecord {
  name: string;
  monitorPid: number;
  sessionPid: number;
  /** When the session opened (the record's time), unix seconds. */
  since: number;
  clientIp: string;
  clientPort: number;
  alive: boolean;
}

export interface ConnectionRecord {
  name: string;
  monitorPid: number;
  fingerprint: string;
  admitted: boolean;
  alive: boolean;
}

export interface SessionDirs {
  sessionsDir: string;
  connsDir: string;
}

export async function userUid(user: string): Promise<number | undefined> {
  // /etc/passwd first: the users `pipe2me-ctl init` creates are local ones, and reading the file costs
  // nothing next to spawning getent (~15 ms, on every remove). A user only NSS knows (LDAP, …) still resolves.
  const local = uidInPasswd(readText('/etc/passwd') ?? '', user);
  if (local !== undefined) return local;
  const r = await run('getent', ['passwd', user], { allowFailure: true, timeout: 10_000 });
  if (r.exitCode !== 0) return undefined;
  const uid = Number(r.stdout.split(':')[2]);
  return Number.isInteger(uid) ? uid : undefined;
}

/** The uid of USER in a passwd(5) text, if it has a line there. */
export function uidInPasswd(passwd: string, user: string): number | undefined {
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || f[0] !== user) continue;
    const uid = Number(f[2]);
    return f[2] !== '' && Number.isInteger(uid) && uid >= 0 ? uid : undefined;
  }
  return undefined;
}

const NAME_RE = /^[a-z0-9-]{1,63}$/;

function monitorAlive(pid: number, start: string): boolean {
  return Number.isInteger(pid) && pid > 0 && processStartTime(pid) === start && processRunning(pid);
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** The records in one pod's directory: files named by a monitor pid, each one line of fields. */
function recordFiles(dir: string): { file: string; monitorPid: number; fields: string[] }[] {
  let files: string[];
  try {
    files = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: { file: string; monitorPid: number; fields: string[] }[] = [];
  for (const f of files) {
    if (!/^\d+$/.test(f)) continue;
    const text = readText(path.join(dir, f));
    if (text) out.push({ file: path.join(dir, f), monitorPid: Number(f), fields: text.trim().split(/\s+/) });
  }
  return out;
}

/** One session record's fields as a record (null: not one), its monitor looked up in /proc. */
function sessionOf(name: string, monitorPidOfFile: number, fields: string[], mtimeMs: number): SessionRecord | null {
  const [sessionPid, monitorPid, start, ip, port] = fields;
  if (!start || Number(monitorPid) !== monitorPidOfFile) return null;
  return { name, monitorPid: monitorPidOfFile, sessionPid: Number(sessionPid), since: Math.floor(mtimeMs / 1000), clientIp: ip ?? '', clientPort: Number(port), alive: monitorAlive(monitorPidOfFile, start) };
}

const newestFirst = (a: SessionRecord, b: SessionRecord) => b.since - a.since || b.monitorPid - a.monitorPid;

function readSessionDir(sessionsDir: string, name: string): SessionRecord[] {
  const out: SessionRecord[] = [];
  for (const r of recordFiles(path.join(sessionsDir, name))) {
    let mtimeMs: number;
    try {
      mtimeMs = fs.statSync(r.file).mtimeMs;
    } catch {
      continue;
    }
    const rec = sessionOf(name, r.monitorPid, r.fields, mtimeMs);
    if (rec) out.push(rec);
  }
  return out.sort(newestFirst);
}

/**
 * readSessions without holding the event loop: the API answers other requests while a scrape or the
 * status page counts a large fleet (about 0.1 ms of file reads per online pod).
 */
export async function readSessionsAsync(sessionsDir: string, concurrency = 32): Promise<Map<string, SessionRecord>> {
  const out = new Map<string, SessionRecord>();
  const names = (await fs.promises.readdir(sessionsDir).catch(() => [] as string[])).filter((n) => NAME_RE.test(n));
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const name = names[next++]!;
      const dir = path.join(sessionsDir, name);
      const files = (await fs.promises.readdir(dir).catch(() => [] as string[])).filter((f) => /^\d+$/.test(f));
      const list: SessionRecord[] = [];
      for (const f of files) {
        const file = path.join(dir, f);
        const [text, st] = await Promise.all([fs.promises.readFile(file, 'utf8').catch(() => ''), fs.promises.stat(file).catch(() => null)]);
        const rec = text && st ? sessionOf(name, Number(f), text.trim().split(/\s+/), st.mtimeMs) : null;
        if (rec) list.push(rec);
      }
      const live = list.sort(newestFirst).find((r) => r.alive);
      if (live) out.set(name, live);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, names.length) }, worker));
  return out;
}

/** One pod's session records, newest first (dead ones too, marked): one small directory, whatever the fleet. */
export function sessionsOf(sessionsDir: string, name: string): SessionRecord[] {
  return NAME_RE.test(name) ? readSessionDir(sessionsDir, name) : [];
}

/** The newest live session of one pod, if it has one. */
export function liveSession(sessionsDir: string, name: string): SessionRecord | undefined {
  return sessionsOf(sessionsDir, name).find((r) => r.alive);
}

/** Every pod's session records, grouped by pod name, newest first (dead ones too, marked). */
export function readSessionRecords(sessionsDir: string): Map<string, SessionRecord[]> {
  const out = new Map<string, SessionRecord[]>();
  let names: string[];
  try {
    names = fs.readdirSync(sessionsDir).filter((n) => NAME_RE.test(n));
  } catch {
    return out;
  }
  for (const name of names) {
    const list = readSessionDir(sessionsDir, name);
    if (list.length) out.set(name, list);
  }
  return out;
}

/** The newest live session of every pod that has one: whether it is online, and from where. */
export function readSessions(sessionsDir: string): Map<string, SessionRecord> {
  const out = new Map<string, SessionRecord>();
  for (const [name, list] of readSessionRecords(sessionsDir)) {
    const live = list.find((r) => r.alive);
    if (live) out.set(name, live);
  }
  return out;
}

/** A pod's connection records (every login that offered its key and was admitted or is being checked). */
export function readConnections(connsDir: string, name: string): ConnectionRecord[] {
  if (!NAME_RE.test(name)) return [];
  const out: ConnectionRecord[] = [];
  for (const r of recordFiles(path.join(connsDir, name))) {
    const [start, fingerprint, state] = r.fields;
    if (!start || !fingerprint) continue;
    out.push({ name, monitorPid: r.monitorPid, fingerprint, admitted: state === 'admitted', alive: monitorAlive(r.monitorPid, start) });
  }
  return out;
}

/** pid → the TCP ports it listens on, for the given processes (the tunnel user's sshd children). */
/** Each process's listening sockets as "address port" (the address in its canonical text). */
function listeningPorts(procs: readonly ProcessInfo[]): Map<number, Set<string>> {
  const out = new Map<number, Set<string>>();
  for (const p of procs) {
    const inodes = new Set<string>();
    try {
      for (const fd of fs.readdirSync(`/proc/${p.pid}/fd`)) {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${p.pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      }
    } catch {
      continue;
    }
    const ports = new Set<string>();
    for (const table of ['tcp', 'tcp6']) {
      const text = readText(`/proc/${p.pid}/net/${table}`) ?? '';
      for (const line of text.split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        // local_address is f[1] (HEXIP:HEXPORT), st is f[3] (0A = LISTEN), inode is f[9]
        if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9]!)) continue;
        const [hexIp, hexPort] = f[1]!.split(':');
        ports.add(`${procNetAddress(hexIp ?? '') ?? '?'} ${parseInt(hexPort ?? '', 16)}`);
      }
    }
    if (ports.size) out.set(p.pid, ports);
  }
  return out;
}

async function killAndWait(pids: number[], graceMs = 2000): Promise<void> {
  // Each pid with its start time: a pid the kernel hands to a new process meanwhile is never signalled.
  const targets = pids.map((pid) => ({ pid, start: processStartTime(pid) })).filter((t) => t.start !== undefined);
  const same = (t: { pid: number; start: string | undefined }) => processRunning(t.pid) && processStartTime(t.pid) === t.start;
  for (const t of targets) {
    try {
      process.kill(t.pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  const deadline = Date.now() + graceMs;
  let left = targets;
  while (left.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 25));
    left = left.filter(same);
  }
  for (const t of left.filter(same)) {
    try {
      process.kill(t.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export interface CutOptions extends SessionDirs {
  tunnelUser: string;
  name: string;
  ports: readonly number[];
  /**
   * With address slots, the addresses the pod's ports are on (its slot's here): a tunnel process is cut
   * for holding one of those ports only on one of these addresses — another slot's pod may hold the
   * same port number on its own address. Without: a port on any address.
   */
  addresses?: readonly string[];
  /**
   * Cut only the connections that logged in with this key (SHA256:…): a replaced key's sessions go,
   * a session of the new key stays. Without it, every connection of the pod goes, and every tunnel
   * process that holds one of its ports.
   */
  onlyFingerprint?: string;
}

export interface CutResult {
  killed: number[];
}

/** Ends a pod's live connections (and with them its ports). */
export async function cutSessions(o: CutOptions): Promise<CutResult> {
  const uid = await userUid(o.tunnelUser);
  const monitors = new Set<number>();
  for (const c of readConnections(o.connsDir, o.name)) {
    if (c.alive && (o.onlyFingerprint === undefined || c.fingerprint === o.onlyFingerprint)) monitors.add(c.monitorPid);
  }
  if (o.onlyFingerprint === undefined) {
    for (const s of sessionsOf(o.sessionsDir, o.name)) if (s.alive) monitors.add(s.monitorPid);
  }
  const procs = listProcesses();
  const pids = new Set<number>(monitors);
  // The unprivileged child of each monitor goes with it; killing both makes the end immediate.
  for (const p of procs) if (monitors.has(p.ppid) && p.comm === 'sshd') pids.add(p.pid);
  if (o.onlyFingerprint === undefined && uid !== undefined) {
    // A session from before the records existed, or one whose record is gone: found by the ports it holds.
    const wanted = new Set(o.ports);
    const at = o.addresses ? new Set(o.addresses.map(canonicalIp)) : null;
    const holds = (socket: string) => {
      const [address, port] = socket.split(' ');
      return wanted.has(Number(port)) && (at === null || at.has(address!));
    };
    const tunnel = procs.filter((p) => p.comm === 'sshd' && p.uid === uid);
    for (const [pid, sockets] of listeningPorts(tunnel)) if ([...sockets].some(holds)) pids.add(pid);
  }
  await killAndWait([...pids]);
  return { killed: [...monitors].length ? [...monitors] : [...pids] };
}

/**
 * Forgets a retired pod's records once its connections are cut: its key is already out of the index, so
 * no new login can make them again, and a removed name must leave nothing behind that could be read as online.
 */
export function forgetRecords(d: SessionDirs, name: string): void {
  if (!NAME_RE.test(name)) return;
  fs.rmSync(path.join(d.sessionsDir, name), { recursive: true, force: true });
  fs.rmSync(path.join(d.connsDir, name), { recursive: true, force: true });
}

/**
 * Removes a pod's record directory if nothing is in it: a login that wrote a record after the sweep
 * listed the directory keeps it (and its record), where removing the whole tree would lose that record.
 */
function removeIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    /* not empty (a record arrived), or already gone */
  }
}

/** Pods swept between two yields to the event loop: a slice of a few tens of milliseconds at most. */
const SWEEP_SLICE = 256;

/**
 * Removes records whose connection has ended (the holder and the lookup never outlive theirs to do it).
 * It runs in the API every few seconds over every pod with records: slice by slice, giving the event loop
 * back in between, so that at tens of thousands of online pods the API goes on answering meanwhile.
 */
export async function sweepStaleRecords(d: SessionDirs): Promise<number> {
  let removed = 0;
  const names = (dir: string) => {
    try {
      return fs.readdirSync(dir).filter((n) => NAME_RE.test(n));
    } catch {
      return [];
    }
  };
  const yieldNow = () => new Promise<void>((r) => setImmediate(r));
  let n = 0;
  for (const name of names(d.sessionsDir)) {
    if (++n % SWEEP_SLICE === 0) await yieldNow();
    const list = readSessionDir(d.sessionsDir, name);
    // No record (yet): the holder may have just made the directory and be about to write into it.
    if (list.length === 0) continue;
    for (const r of list) {
      if (r.alive) continue;
      fs.rmSync(path.join(d.sessionsDir, name, String(r.monitorPid)), { force: true });
      removed++;
    }
    // The directory stays while its pod is online; the holder makes it again when it is not there.
    if (list.every((r) => !r.alive)) removeIfEmpty(path.join(d.sessionsDir, name));
  }
  for (const name of names(d.connsDir)) {
    if (++n % SWEEP_SLICE === 0) await yieldNow();
    const records = readConnections(d.connsDir, name);
    for (const c of records) {
      if (c.alive) continue;
      fs.rmSync(path.join(d.connsDir, name, String(c.monitorPid)), { force: true });
      removed++;
    }
    if (records.every((c) => !c.alive)) removeIfEmpty(path.join(d.connsDir, name));
  }
  // The lookup appends a line per refused login; a key hammering the relay must not fill its disk.
  const refused = path.join(d.connsDir, '.refused');
  try {
    if (fs.statSync(refused).size > 1024 * 1024) fs.truncateSync(refused, 0);
  } catch {
    /* none yet */
  }
  return removed;
}

/**
 * Tells the pods of these sessions that they are about to be cut to move to another relay (a drain): one
 * line on each session's stderr, written to its session holder's stderr (the `cat` the session script
 * became, running as the tunnel user, a child of the session's sshd). The pod then reconnects at once
 * instead of after its backoff. Written only into a pipe or socket, appended, never blocking (a process
 * that merely looks like a holder — a reused pid — is never given a file to truncate). Best effort: a
 * session whose holder cannot be found is cut all the same.
 */
export function announceMove(records: readonly Pick<SessionRecord, 'sessionPid'>[], tunnelUid: number | undefined, why: string): number {
  if (tunnelUid === undefined) return 0;
  const parents = new Set(records.map((r) => r.sessionPid));
  const procs = listProcesses();
  const sshd = new Set(procs.filter((p) => p.comm === 'sshd' && parents.has(p.pid)).map((p) => p.pid));
  const line = Buffer.from(`${MOVING_LINE}: ${why.replace(/[^\x20-\x7e]/g, '?')}\n`);
  let told = 0;
  for (const p of procs) {
    if (p.comm !== 'cat' || p.uid !== tunnelUid || !sshd.has(p.ppid)) continue;
    let fd: number | undefined;
    try {
      fd = fs.openSync(`/proc/${p.pid}/fd/2`, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
      const st = fs.fstatSync(fd);
      if (st.isFIFO() || st.isSocket()) {
        fs.writeSync(fd, line);
        told++;
      }
    } catch {
      /* gone meanwhile, or its pipe is full: it is cut all the same */
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  }
  return told;
}
