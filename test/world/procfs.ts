/**
 * Reading /proc directly: which processes live in which network namespace, who started them, and
 * whether a recorded owner is still the same process. Done in-process rather than by spawning
 * `ip netns pids`, because it is faster, needs no namespace mount (it also finds processes that keep a
 * namespace alive after `ip netns del`), and a zombie has no ns/net link, so it is never counted.
 */
import * as fs from 'node:fs';

export function listPids(): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (/^\d+$/.test(name)) pids.push(Number(name));
  }
  return pids;
}

/** Inode of the network namespace file (the same number `stat /run/netns/NAME` gives). */
export function netnsInodeOfPid(pid: number): number | undefined {
  try {
    return fs.statSync(`/proc/${pid}/ns/net`).ino;
  } catch {
    return undefined; // gone, a zombie, or not ours to read
  }
}

export function netnsInodeOfName(name: string): number | undefined {
  try {
    return fs.statSync(`/run/netns/${name}`).ino;
  } catch {
    return undefined;
  }
}

/**
 * Named namespaces (/run/netns) by inode. nsfs inode numbers are reused once a namespace is freed, so an
 * inode recorded earlier only identifies our namespace while it is still mounted under our name.
 */
export function mountedNetns(): Map<number, string> {
  const byInode = new Map<number, string>();
  let names: string[];
  try {
    names = fs.readdirSync('/run/netns');
  } catch {
    return byInode;
  }
  for (const name of names) {
    const ino = netnsInodeOfName(name);
    if (ino !== undefined) byInode.set(ino, name);
  }
  return byInode;
}

/** Every live (non-zombie) process whose network namespace is one of `inodes`. */
export function pidsInNetns(inodes: ReadonlySet<number>): number[] {
  if (inodes.size === 0) return [];
  return listPids().filter((pid) => {
    const ino = netnsInodeOfPid(pid);
    return ino !== undefined && inodes.has(ino);
  });
}

/** The process's start time in clock ticks since boot (field 22 of /proc/PID/stat): with the pid it names one process for good. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = rest[0];
    if (state === 'Z' || state === 'X') return undefined;
    return rest[19];
  } catch {
    return undefined;
  }
}

export function isProcessAlive(pid: number, startTime?: string): boolean {
  const now = processStartTime(pid);
  if (now === undefined) return false;
  return startTime === undefined || now === startTime;
}

export function parentPid(pid: number): number | undefined {
  try {
    const m = /^PPid:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export function commandLine(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}

/** The process's environment, or undefined if it is gone or unreadable (not root). */
export function environ(pid: number): Map<string, string> | undefined {
  let raw: string;
  try {
    raw = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch {
    return undefined;
  }
  const env = new Map<string, string>();
  for (const entry of raw.split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

/** Send a signal, ignoring "no such process" (it may have exited since we looked). */
export function signalPid(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
}
