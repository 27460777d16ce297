/**
 * Leak check: what a test suite created must be gone when it ends. A snapshot is taken at suite start
 * and at suite end; what is present at the end, was not at the start, and belongs to the suite is a
 * leak:
 *
 *  - namespaces named with one of the suite's world prefixes,
 *  - processes inside one of the suite's namespaces (by nsfs inode, so also ones that keep a deleted
 *    namespace alive — unless the inode now names another world's namespace: inode numbers are
 *    reused), carrying one of the suite's P2M_WORLD markers in their environment, or descended from
 *    the test process,
 *  - users the suite's worlds tracked,
 *  - mounts (/proc/self/mountinfo) of the suite's namespaces,
 *  - the worlds' root directories and records under /run/pipe2me-worlds.
 *
 * Ownership comes from the suite journal (registry.ts), never from guessing: other test runs on the
 * machine — other worktrees, other engineers — create and delete worlds at the same time, and are
 * never reported or touched.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { commandLine, environ, listPids, mountedNetns, netnsInodeOfPid, parentPid, processStartTime } from './procfs.js';
import { WORLDS_DIR, WORLD_ENV, readJournal } from './registry.js';
import { listNamespaces } from './topology.js';

const WORLD_NAMESPACE = /^(p2m-[0-9a-f]{6})-/;
/** The runner's own children (its worker pool, vite's esbuild service) are not the tests' processes. */
const TEST_RUNNER_ITSELF = /node_modules\/(?:@esbuild|esbuild|tinypool|vitest|vite)\//;

export interface ProcessInfo {
  pid: number;
  startTime: string;
  cmd: string;
  why: string;
}

export interface LeakSnapshot {
  namespaces: string[];
  processes: ProcessInfo[];
  users: string[];
  mounts: string[];
  /** Entries of /run/pipe2me-worlds (world roots and records). */
  worldFiles: string[];
}

/** What a suite owns, from its journal. */
export interface LeakScope {
  prefixes: Set<string>;
  inodes: Set<number>;
  users: Set<string>;
  /** Processes descended from this pid (the test runner) count as the suite's. */
  rootPid: number | undefined;
}

export interface Leak {
  kind: 'namespace' | 'process' | 'user' | 'mount' | 'directory' | 'record';
  what: string;
}

export function scopeFromJournal(suite: string, rootPid?: number): LeakScope {
  const scope: LeakScope = { prefixes: new Set(), inodes: new Set(), users: new Set(), rootPid };
  for (const e of readJournal(suite)) {
    scope.prefixes.add(e.prefix);
    if (e.event === 'inodes') e.inodes.forEach((i) => scope.inodes.add(i));
    if (e.event === 'user') scope.users.add(e.name);
  }
  return scope;
}

export function emptyScope(rootPid?: number): LeakScope {
  return { prefixes: new Set(), inodes: new Set(), users: new Set(), rootPid };
}

/** Take a snapshot. `scope` decides which processes are looked at closely (all world-marked ones are). */
export async function takeSnapshot(scope: LeakScope = emptyScope()): Promise<LeakSnapshot> {
  const namespaces = (await listNamespaces()).filter((n) => WORLD_NAMESPACE.test(n));
  const mounted = mountedNetns();
  const processes: ProcessInfo[] = [];
  for (const pid of listPids()) {
    if (pid === process.pid) continue;
    const why = whyOurs(pid, scope, mounted);
    if (!why) continue;
    const startTime = processStartTime(pid);
    if (startTime === undefined) continue; // exited or zombie
    processes.push({ pid, startTime, cmd: commandLine(pid).slice(0, 200), why });
  }
  return {
    namespaces,
    processes,
    users: passwdNames(),
    mounts: fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => l.includes('netns')),
    worldFiles: safeReaddir(WORLDS_DIR).filter((n) => n !== 'suites'),
  };
}

function whyOurs(pid: number, scope: LeakScope, mounted: Map<number, string>): string | undefined {
  const marker = environ(pid)?.get(WORLD_ENV);
  // A marker names its world for sure; findLeaks keeps only the suite's.
  if (marker !== undefined) return `${WORLD_ENV}=${marker}`;
  const ino = netnsInodeOfPid(pid);
  if (ino !== undefined && scope.inodes.has(ino)) {
    const name = mounted.get(ino);
    const prefix = name === undefined ? undefined : WORLD_NAMESPACE.exec(name)?.[1];
    if (name === undefined || (prefix !== undefined && scope.prefixes.has(prefix))) return `in a world namespace (netns inode ${ino}${name ? `, ${name}` : ''})`;
  }
  if (scope.rootPid !== undefined && descendsFrom(pid, scope.rootPid) && !TEST_RUNNER_ITSELF.test(commandLine(pid))) {
    return `descendant of the test process ${scope.rootPid}`;
  }
  return undefined;
}

/** The processes that still belong to one world (by its marker, or inside its namespaces). */
export function worldProcesses(prefix: string, inodes: Iterable<number>): ProcessInfo[] {
  const scope: LeakScope = { prefixes: new Set([prefix]), inodes: new Set(inodes), users: new Set(), rootPid: undefined };
  const mounted = mountedNetns();
  const found: ProcessInfo[] = [];
  for (const pid of listPids()) {
    if (pid === process.pid) continue;
    const why = whyOurs(pid, scope, mounted);
    if (!why || (why.startsWith(`${WORLD_ENV}=`) && why !== `${WORLD_ENV}=${prefix}`)) continue;
    const startTime = processStartTime(pid);
    if (startTime !== undefined) found.push({ pid, startTime, cmd: commandLine(pid).slice(0, 200), why });
  }
  return found;
}

function descendsFrom(pid: number, ancestor: number): boolean {
  let p: number | undefined = pid;
  for (let depth = 0; p !== undefined && p > 1 && depth < 64; depth++) {
    p = parentPid(p);
    if (p === ancestor) return true;
  }
  return false;
}

/** What is in `after`, not in `before`, and the suite's. */
export function findLeaks(before: LeakSnapshot, after: LeakSnapshot, scope: LeakScope): Leak[] {
  const leaks: Leak[] = [];
  const ours = (prefix: string | undefined) => prefix !== undefined && scope.prefixes.has(prefix);
  const beforeNs = new Set(before.namespaces);
  for (const n of after.namespaces) {
    if (!beforeNs.has(n) && ours(WORLD_NAMESPACE.exec(n)?.[1])) leaks.push({ kind: 'namespace', what: n });
  }
  const beforeProcs = new Set(before.processes.map((p) => `${p.pid}/${p.startTime}`));
  for (const p of after.processes) {
    if (beforeProcs.has(`${p.pid}/${p.startTime}`)) continue;
    const marker = /^P2M_WORLD=(.*)$/.exec(p.why)?.[1];
    if (marker === undefined || ours(marker)) leaks.push({ kind: 'process', what: `pid ${p.pid} (${p.why}): ${p.cmd}` });
  }
  const beforeUsers = new Set(before.users);
  for (const u of after.users) if (!beforeUsers.has(u) && scope.users.has(u)) leaks.push({ kind: 'user', what: u });
  for (const u of scope.users) if (beforeUsers.has(u) && after.users.includes(u)) leaks.push({ kind: 'user', what: `${u} (existed before the suite, but a world tracked it for removal)` });
  const beforeMounts = new Set(before.mounts);
  for (const m of after.mounts) {
    const prefix = /\/run\/netns\/(p2m-[0-9a-f]{6})-/.exec(m)?.[1];
    if (!beforeMounts.has(m) && ours(prefix)) leaks.push({ kind: 'mount', what: m });
  }
  const beforeFiles = new Set(before.worldFiles);
  for (const f of after.worldFiles) {
    const prefix = /^(p2m-[0-9a-f]{6})(\.json.*)?$/.exec(f);
    if (beforeFiles.has(f) || !ours(prefix?.[1])) continue;
    leaks.push({ kind: prefix?.[2] ? 'record' : 'directory', what: path.join(WORLDS_DIR, f) });
  }
  return leaks;
}

export function formatLeaks(leaks: readonly Leak[]): string {
  return leaks.map((l) => `  ${l.kind.padEnd(9)} ${l.what}`).join('\n');
}

function passwdNames(): string[] {
  try {
    return fs
      .readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .map((l) => l.split(':')[0] ?? '')
      .filter(Boolean);
  } catch {
    return [];
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
